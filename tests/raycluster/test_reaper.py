"""The local Ray of a sweep driver ends with it, ``kill -9`` included (raycluster/reaper.py).

Fast tests play the driver with a small script whose children look like a Ray session's processes
(a raylet naming the session dir, a worker with a log file open in it, a helper that only the
process tree ties to the driver), and a bystander of another session that must survive. The slow
test SIGKILLs a real ``python -m sweep.run`` mid-trial, on the local Ray it started itself, and
then resumes it. Every wait is bounded; every process started here is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ray_helpers import SWEEP_WAIT_S, tune_committed_checkpoint, wait_for_sweep
from sweep_fakes import read_results
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from raycluster.reaper import _psutil, session_processes

psutil = _psutil()
REPO = Path(__file__).resolve().parents[2]
GONE_S = 30  # the bound: every process of the session gone this long after the driver's death
WAIT_S = SWEEP_WAIT_S

FAKE_DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from raycluster.reaper import guard_local_ray
    session = sys.argv[1]
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    subprocess.Popen([*sleep, f"--session_dir={session}"])  # the raylet: names the session
    with open(f"{session}/logs/worker.out", "w") as log:  # a worker: a log file in it, a plain name
        subprocess.Popen(sleep, stdout=log)
    subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "  # tied by the tree only
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"])
    time.sleep(1)  # the grandchild exists
    watchdog = guard_local_ray()
    print(watchdog.pid, flush=True)
    if sys.argv[2] == "exit":  # a clean end: Ray has stopped its processes before the driver exits
        for child in __import__("psutil").Process().children(recursive=True):
            if child.pid != watchdog.pid:
                child.kill()
                child.wait()
        sys.exit(0)
    time.sleep(600)
""")


def python_env() -> dict[str, str]:
    """The repo and the psutil used here (Ray's bundled copy) on the fake driver's path."""
    path = os.path.dirname(os.path.dirname(psutil.__file__))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), path])}


def start_fake_driver(session: Path, mode: str) -> tuple[subprocess.Popen, int]:
    (session / "logs").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER, str(session), mode], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    return proc, int(proc.stdout.readline())


def tree(pid: int) -> list:
    return psutil.Process(pid).children(recursive=True)


def wait_gone(procs: list, timeout: float) -> list:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:  # the test's own clean-up
        p.kill()
    return alive


@pytest.mark.slow  # about 8 s: Python start-ups and the watchdog's one-second looks
def test_the_watchdog_ends_the_session_of_a_killed_driver_and_nothing_else(tmp_path):
    session = tmp_path / "session_1"
    bystander_dir = tmp_path / "session_12"  # another session, whose name extends ours
    (bystander_dir / "logs").mkdir(parents=True)
    with open(bystander_dir / "logs" / "worker.out", "w") as log:
        bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                      f"--session_dir={bystander_dir}"], stdout=log)
    driver, watchdog = start_fake_driver(session, "kill")
    processes = [p for p in tree(driver.pid) if p.pid != watchdog]
    try:
        assert len(processes) == 4, processes  # raylet, worker, helper, the helper's child
        w = psutil.Process(watchdog)
        time.sleep(2)  # the watchdog has recorded the driver's descendants (at once, then every 3 s)
        driver.kill()
        driver.wait(timeout=10)
        assert not wait_gone(processes, GONE_S)
        w.wait(timeout=GONE_S)  # and then it exits
        assert bystander.poll() is None  # not ours: untouched
        assert "stopped 4 leftover process(es)" in driver.stderr.read()  # its stderr is the driver's
    finally:
        wait_gone(processes, 0)
        for p in (driver, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow  # about 8 s: Python start-ups and the watchdog's one-second looks
def test_after_a_clean_exit_the_watchdog_finds_nothing_and_exits(tmp_path):
    driver, watchdog = start_fake_driver(tmp_path / "session_1", "exit")
    w = psutil.Process(watchdog)
    assert driver.wait(timeout=30) == 0
    w.wait(timeout=15)  # one poll to see the driver gone, two empty looks, and it exits
    assert "raycluster.reaper" not in driver.stderr.read()  # it had nothing to stop


def test_no_watchdog_without_a_local_ray_of_our_own():
    code = "from raycluster.reaper import guard_local_ray; print(guard_local_ray())"
    out = subprocess.run([sys.executable, "-c", code], env=python_env(), cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "None", out.stderr


# ---------------------------------------------------------------- a real sweep


def sweep_cmd(tmp: Path, cache: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweep.run", "task=span", f"out_dir={tmp / 'run'}", f"cache_dir={cache}",
            "data.demo_posts=120", "training.epochs=2", "training.patience=0", "training.batch_size=16",
            "sweep.num_samples=1", "sweep.scheduler=fifo", "sweep.verbose=1", "sweep.final_test=false",
            "sweep.space.training.lr=[3e-3]", "sweep.space.training.batch_size=null",
            "sweep.space.training.grad_accum=null", "sweep.space.training.epochs=null",
            "sweep.space.features.doc_stride=null", "sweep.space.features.max_length=[96]", *extra]


def local_env() -> dict[str, str]:
    """No RAY_ADDRESS: the sweep starts a Ray of its own, as on a laptop."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "HF_HUB_OFFLINE": "1"}


def session_of(driver: subprocess.Popen) -> str | None:
    """The session dir of the local Ray the driver started (its raylet's --session_dir)."""
    for child in psutil.Process(driver.pid).children():
        args = child.cmdline()
        if "raylet" in child.name():
            return next(a.split("=", 1)[1] for a in args if a.startswith("--session_dir="))
    return None


@pytest.mark.slow
def test_kill_9_of_a_driver_leaves_nothing_of_its_local_ray_and_resume_completes(tmp_path, demo_cache):
    log = tmp_path / "first.log"
    driver = subprocess.Popen(sweep_cmd(tmp_path, demo_cache), env=local_env(), stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_for_sweep(lambda: tune_committed_checkpoint(tmp_path / "run" / "search"), driver, log,
                 "the first committed checkpoint")
        session = session_of(driver)
        assert session, "the sweep did not start a local Ray of its own"
        processes = tree(driver.pid)  # the local Ray's processes and the watchdog
        assert any("raycluster.reaper" in " ".join(p.cmdline()) for p in processes), processes
        names = sorted({p.name() for p in processes})
        assert any(n.startswith("ray::") for n in names), names
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        killed_at = time.monotonic()
        left = wait_gone(processes, GONE_S)
        assert not left, f"alive {GONE_S} s after the driver's SIGKILL: {[p.name() for p in left]}"
        assert not session_processes(session)  # nor anything else that points into the session dir
        print(f"session processes all gone {time.monotonic() - killed_at:.1f} s after kill -9 ({len(processes)}: "
              f"{', '.join(names)})")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert "raycluster.reaper: " in log.read_text()

    log2 = tmp_path / "resume.log"
    resumed = subprocess.Popen(sweep_cmd(tmp_path, demo_cache, "resume=true"), env=local_env(), stdout=log2.open("w"),
                               stderr=subprocess.STDOUT)
    try:
        assert resumed.wait(timeout=WAIT_S) == 0, log2.read_text()[-4000:]
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    text = log2.read_text()
    assert "resuming" in text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["num_trials"] == 1 and summary["trials"][0]["stop_reason"] == "finished", summary["trials"]
    # the trial went on from the checkpoint of the epoch it had reported: that epoch was evaluated once
    trial = Path(summary["trials"][0]["path"])
    events = EventAccumulator(str(trial / "tb"), purge_orphaned_data=False)  # both drivers' event files
    events.Reload()
    steps = [e.step for e in events.Scalars("val/f1")]
    assert steps.count(1) == 1 and set(steps) == {1, 2}, steps
    assert [r["epoch"] for r in read_results(str(trial))] == [1, 2]
