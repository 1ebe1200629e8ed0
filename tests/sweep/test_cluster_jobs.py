"""The README's cluster path on this machine: a Ray head started the way a cluster node starts it
(``ray start --head``, own ports and temp dir, token authentication on), sweeps submitted to it with
``ray job submit --working-dir .``, one stopped mid-trial with ``ray job stop`` and resumed by a
second job.

The head runs in its own session and is SIGKILLed by process group at the end: exactly its
processes, never a broad ``ray stop``. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray_helpers import free_ports
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.trials import DONE_FILE, read_results

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
HEAD_START_S = 120
JOB_S = 420  # a whole demo sweep as a job on a loaded 2-core machine
STOP_WAIT_S = "60"  # the head lets a stopped job's driver save its state this long before SIGKILL (default 3)
EPOCHS = 3


def client_env() -> dict[str, str]:
    """What a user's shell needs to talk to a token-authenticated head (see RAY-NOTES)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


@pytest.fixture(scope="module")
def head():
    temp = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    gcs, dashboard, client, agent = free_ports(4)
    env = {**client_env(), "RAY_JOB_STOP_WAIT_TIME_S": STOP_WAIT_S}
    log = Path(temp) / "head.log"
    proc = subprocess.Popen(
        [RAY, "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}", "--num-cpus=2",
         f"--temp-dir={temp}", "--block"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + HEAD_START_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=5)
                break
            except urllib.error.HTTPError:  # it answers (401 without the token): up
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the head did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the head and every process it started (same session)
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def ray_job(url: str, command: str, *args: str, timeout: float = 120) -> str:
    out = subprocess.run([RAY, "job", command, "--address", url, *args], env=client_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def submit(url: str, *sweep_args: str) -> str:
    """``ray job submit --working-dir . --no-wait -- python -m sweep.run ...`` (README); the job id."""
    text = ray_job(url, "submit", "--working-dir", ".", "--no-wait", "--", "python", "-m", "sweep.run", *sweep_args)
    return re.search(r"raysubmit_\w+", text).group(0)


def status(url: str, job: str) -> str:
    text = ray_job(url, "status", job)
    found = re.search(r"\b(PENDING|RUNNING|STOPPED|SUCCEEDED|FAILED)\b", text, re.IGNORECASE)
    assert found, text
    return found.group(1).upper()


def wait_for(condition, url: str, job: str, what: str, timeout: float = JOB_S):
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        polls += 1
        if polls % 20 == 0 and status(url, job) in ("FAILED", "STOPPED", "SUCCEEDED"):
            pytest.fail(f"job {job} ended before {what}:\n{ray_job(url, 'logs', job)[-4000:]}")
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}:\n{ray_job(url, 'logs', job)[-4000:]}")


def wait_status(url: str, job: str, wanted: str) -> None:
    deadline = time.monotonic() + JOB_S
    while (state := status(url, job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"job {job} still {state} after {JOB_S} s"
        time.sleep(2)
    assert state == wanted, ray_job(url, "logs", job)[-4000:]


def trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("search/*/params.json"))


@pytest.mark.slow
def test_sweep_submitted_as_a_job_survives_ray_job_stop_and_resumes(head, tmp_path):
    run_dir = tmp_path / "run"
    args = ["task=pair", f"out_dir={run_dir}", f"cache_dir={tmp_path / 'cache'}", "data.demo_posts=120",
            f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=16", "sweep.num_samples=3",
            "sweep.scheduler=fifo", "sweep.final_test=false", "sweep.space.training.batch_size=null",
            "sweep.space.training.epochs=null"]
    first = submit(head, *args)

    def third_trial_mid_way():  # the last trial has checkpointed its first epoch and goes on
        trial = next(iter(run_dir.glob("search/trial_0002_*")), None)
        if trial is not None and (trial / DONE_FILE).is_file():
            pytest.fail("the third trial finished before its first checkpoint was seen: too short to stop")
        return trial if trial is not None and any(trial.glob("train/checkpoint_*")) else None

    stopped = wait_for(third_trial_mid_way, head, first, "the third trial's first checkpoint")
    ray_job(head, "stop", first, timeout=180)  # SIGTERM to the driver: Tune saves the experiment
    wait_status(head, first, "STOPPED")
    logs = ray_job(head, "logs", first)
    assert "state saved" in logs, logs[-3000:]

    second = submit(head, f"resume={run_dir}")
    wait_status(head, second, "SUCCEEDED")
    assert "resuming" in ray_job(head, "logs", second)
    summary = json.loads((run_dir / "summary.json").read_text())
    trials = trial_dirs(run_dir)
    assert summary["num_trials"] == 3 and len(trials) == 3  # the searcher went on from its saved state
    assert len({t["trial_id"] for t in summary["trials"]}) == 3
    for t in summary["trials"]:
        assert t["stop_reason"] == "finished" and t["epochs_run"] == EPOCHS, t
    assert stopped in trials
    for t in trials:  # each trial's record holds every epoch once, the stopped one's included
        assert [r["epoch"] for r in read_results(t)] == list(range(1, EPOCHS + 1)), t.name
    # and the stopped trial went on from its checkpoint (it had one of epoch 1 or later): epoch 1 was
    # evaluated once. Epochs after its last checkpoint run again, by design (a checkpoint is kept only
    # when the metric improves).
    events = EventAccumulator(str(stopped / "tb"), purge_orphaned_data=False)
    events.Reload()
    steps = [e.step for e in events.Scalars("val/f1")]
    assert steps.count(1) == 1 and set(steps) == set(range(1, EPOCHS + 1)), steps
    assert (run_dir / "best_checkpoint").is_dir()
