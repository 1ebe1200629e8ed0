"""optuna-dashboard over a running sweep's study, opened in a real browser (headless Chromium).

The sweep is the product's own search stage (its searcher, ASHA and record) over fake learning-curve
trials that take a second an epoch, so the dashboard is read while trials are still running. The
dashboard is the user's command (``optuna-dashboard sqlite:///RUN_DIR/study.db``) on 127.0.0.1; the
page is rendered by Chromium and read back as its DOM, and a screenshot stays in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sweep_fakes
from ray_helpers import free_ports, local_ray

from sweep.layout import STAGE1, STUDY_FILE
from sweep.space import to_distributions
from sweep.stages import search
from sweep.study import study_name

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DASHBOARD = str(Path(sys.executable).parent / "optuna-dashboard")
WAIT_S = 120
EPOCHS, TRIALS = 4, 4


@pytest.fixture(scope="module")
def ray_for_module():
    import ray

    ray.cloudpickle.register_pickle_by_value(sweep_fakes)
    with local_ray(num_cpus=2, logging_level="ERROR"):
        yield


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def browser(url: str, *args: str) -> str:
    """Chromium's rendering of ``url`` (its DOM, or what ``args`` ask for), bounded in time."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout


def watch(url: str, shot: Path, sweep_done: threading.Event, seen: dict) -> None:
    """While the sweep runs: once a trial has ended and another runs, the trials page as a user sees it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not sweep_done.is_set():
        try:
            trials = get_json(f"{url}/api/studies/1?after=0")["trials"]
        except OSError:  # not up yet, or the study not created yet
            trials = []
        states = [t["state"] for t in trials]
        if "Complete" in states and "Running" in states:
            seen["dom"] = browser(f"{url}/dashboard/studies/1/trials", "--dump-dom")
            browser(f"{url}/dashboard/studies/1", f"--screenshot={shot}", "--window-size=1400,1000")
            seen["while_running"] = not sweep_done.is_set()
            return
        time.sleep(0.5)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt install chromium)")
def test_the_dashboard_shows_the_running_sweeps_trials_with_their_labels(ray_for_module, tmp_path):
    run_dir = tmp_path / "sweep"
    cfg = sweep_fakes.new_run_dir(run_dir, EPOCHS, f"sweep.num_samples={TRIALS}", "sweep.max_concurrent=1",
                                  "sweep.startup_trials=2")
    dists = to_distributions({"training.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}}, cfg)
    stop_file = run_dir / "no-stop"
    stop_file.touch()  # the fake's SIGTERM is not wanted here
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    server = subprocess.Popen([DASHBOARD, f"sqlite:///{run_dir / STUDY_FILE}", "--host", "127.0.0.1",
                               "--port", url.rsplit(":", 1)[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(url, tmp_path / "dashboard.png", done, seen))
    try:
        watcher.start()
        search(cfg, str(run_dir), dists, sweep_fakes.curve_trainable(EPOCHS, str(stop_file), os.getpid(), 1.0),
               concurrency=1)
        done.set()
        watcher.join(timeout=WAIT_S)
        ended = get_json(f"{url}/api/studies/1?after=0")["trials"]
    finally:
        done.set()
        server.kill()
        server.wait(timeout=30)
    assert seen.get("while_running"), "the dashboard never showed an ended and a running trial during the sweep"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", "", seen["dom"],
                                                                 flags=re.S)))
    assert study_name(str(run_dir), STAGE1) in text and "Trial 0" in text
    assert re.search(r"stop_reason (finished|asha|early_stop)", text) and "stage search" in text, text[:2000]
    assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    study = optuna.load_study(study_name=study_name(str(run_dir), STAGE1), storage=f"sqlite:///{run_dir / STUDY_FILE}")
    assert study.metric_names == ["validation f1"]  # the dashboard's axis, not "Objective 0"
    labels = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in ended]
    assert len(ended) == TRIALS and all(lab["stop_reason"] in ("finished", "asha") for lab in labels)
