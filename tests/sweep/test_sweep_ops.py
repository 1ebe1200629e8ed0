"""Operating sweeps: one driver per run directory, relative paths, SIGTERM, a dead RAY_ADDRESS.

Everything runs as real processes (``python -m sweep.run`` / ``sweep.report``, a lock holder that
is SIGKILLed); every wait is bounded. The SIGTERM sweep starts its own local Ray (RAY_ADDRESS=local,
never an unrelated running one) in its own process group, which is SIGKILLed if a test leaves it
running.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray_helpers import process_ended, wait_for

from plumbing.run_lock import LOCK_FILE

START_S = 240  # a sweep's first trial directory on a loaded 2-core machine (seen: 35 s)
STOP_S = 120  # Tune's graceful stop and Ray's shutdown after SIGTERM (seen: 21 s)
REFUSE_S = 45  # python start-up and imports, then the refusal


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**base, "HF_HUB_OFFLINE": "1", **extra}


def sweep_cmd(run_dir: Path | str, cache: str, *extra: str) -> list[str]:
    """The smallest real sweep: 2 pair trials of 2 epochs on 60 demo posts, one feature variant."""
    return [sys.executable, "-m", "sweep.run", "task=pair", f"out_dir={run_dir}", f"cache_dir={cache}",
            "data.demo_posts=60", "training.epochs=2", "training.patience=0", "training.batch_size=16",
            "sweep.num_samples=2", "sweep.scheduler=fifo", "sweep.verbose=0", "sweep.final_test=false",
            "sweep.space.training.lr=[3e-3,5e-3]", "sweep.space.training.batch_size=null",
            "sweep.space.features.max_length=[96]", *extra]


def run(cmd: list[str], timeout: float, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    return done, time.monotonic() - started


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    return wait_for(condition, what, timeout, ended=process_ended(proc) if proc else None, interval_s=0.2)


# ---------------------------------------------------------------- the run-dir lock

HOLDER = "import sys, time; from plumbing.run_lock import hold_run_dir; hold_run_dir(sys.argv[1]); time.sleep(600)"


def lock_is_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor releases the lock taken here


def holder_pid(lock: Path) -> int | None:
    try:
        return json.loads(lock.read_text()).get("pid")
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_a_second_driver_on_a_held_run_dir_exits_2_naming_the_holder(tmp_path, demo_cache):
    run_dir, lock = tmp_path / "run", tmp_path / "run" / LOCK_FILE
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=env())
    try:
        wait_until(lambda: holder_pid(lock) == holder.pid, 30, "the holder's lock", holder)
        assert not lock_is_free(lock)
        for extra in ([], [f"resume={run_dir}"]):
            done, elapsed = run(sweep_cmd(run_dir, demo_cache, *extra), timeout=REFUSE_S * 2, env=env())
            assert done.returncode == 2, done.stderr[-3000:]
            assert f"pid {holder.pid} on host {socket.gethostname()}" in done.stderr
            assert "Traceback" not in done.stderr and "Ray at" not in done.stdout
            assert elapsed < REFUSE_S, elapsed
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing read or written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert lock_is_free(lock)  # the kernel released it with the killed process


# ---------------------------------------------------------------- SIGTERM, and a relative report


@pytest.fixture(scope="module")
def terminated(tmp_path_factory, demo_cache):
    """A real sweep sent SIGTERM once its first trial directory exists."""
    tmp = tmp_path_factory.mktemp("sigterm")
    run_dir = tmp / "run"
    log = tmp / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen(sweep_cmd(run_dir, demo_cache), env=env(RAY_ADDRESS="local"), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: any(run_dir.glob("search/trial_*/params.json")), START_S, "a trial", proc)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=STOP_S)
        yield SimpleNamespace(code=code, stop_s=time.monotonic() - started, log=log.read_text(), run_dir=run_dir)
    finally:
        if proc.poll() is None:  # the driver and the Ray it started (same process group)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_sigterm_stops_a_sweep_like_ctrl_c_with_its_state_saved(terminated):
    from ray import tune

    log = terminated.log
    assert terminated.code == 143, log[-4000:]
    assert "*** SIGTERM received" not in log
    assert "state saved" in log and f"python -m sweep.run resume={terminated.run_dir}" in log
    assert tune.Tuner.can_restore(str(terminated.run_dir / "search"))


@pytest.mark.slow
def test_report_accepts_a_relative_run_dir(terminated):
    done, _ = run([sys.executable, "-m", "sweep.report", terminated.run_dir.name], timeout=120,
                  cwd=terminated.run_dir.parent, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 trials" in done.stdout
    summary = json.loads((terminated.run_dir / "summary.json").read_text())
    assert summary["num_trials"] == 2


# ---------------------------------------------------------------- a dead RAY_ADDRESS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_dead_ray_address_fails_within_a_minute_naming_it(tmp_path, demo_cache):
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    done, elapsed = run(sweep_cmd(tmp_path / "run", demo_cache), timeout=90, env=env(RAY_ADDRESS=address))
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"RAY_ADDRESS={address}" in done.stderr and "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 60, elapsed


def test_a_local_ray_that_cannot_start_is_one_message(tmp_path, demo_cache):
    """Ray's own start-up error (here: its temp dir cannot be made) becomes one line naming what to do."""
    done, _ = run(sweep_cmd(tmp_path / "run", demo_cache), timeout=90, env=env(RAY_TMPDIR="/proc/forbidden"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "the local Ray did not start: " in done.stderr and "/proc/forbidden" in done.stderr
    assert "Traceback" not in done.stderr
