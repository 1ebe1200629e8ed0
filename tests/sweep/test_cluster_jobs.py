"""The README's cluster path on this machine: a Ray head started the way a cluster node starts it
(``ray start --head``, own ports and temp dir, token authentication on), sweeps submitted to it with
``ray job submit --working-dir .``, one stopped mid-trial with ``ray job stop`` and resumed by a
second job. The sweep runs its two trials one after the other (sweep.max_concurrent=1) and is
stopped once the first one has checkpointed an epoch, so the second job resumes that trial and the
searcher proposes the other one from its saved state.

The head runs in its own session and is SIGKILLed by process group at the end: exactly its
processes, never a broad ``ray stop``. Every wait is bounded.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_helpers import RAY, Head, local_head
from ray_helpers import wait_for as poll
from sweep_fakes import read_results
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.layout import DONE_FILE

REPO = Path(__file__).resolve().parents[2]
JOB_S = 420  # a whole demo sweep as a job on a loaded 2-core machine
STOP_WAIT_S = "60"  # the head lets a stopped job's driver save its state this long before SIGKILL (default 3)
EPOCHS = 3  # the stop lands in the first trial's last two epochs, or in the second trial (its CLI is slow under load)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    with local_head(env={"RAY_JOB_STOP_WAIT_TIME_S": STOP_WAIT_S}) as h:
        yield h


def ray_job(head: Head, command: str, *args: str, timeout: float = 120) -> str:
    out = subprocess.run([RAY, "job", command, "--address", head.url, *args], env=head.env, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def submit(head: Head, *sweep_args: str) -> str:
    """``ray job submit --working-dir . --no-wait -- python -m sweep.run ...`` (README); the job id."""
    text = ray_job(head, "submit", "--working-dir", ".", "--no-wait", "--", "python", "-m", "sweep.run", *sweep_args)
    return re.search(r"raysubmit_\w+", text).group(0)


def status(head: Head, job: str) -> str:
    text = ray_job(head, "status", job)
    found = re.search(r"\b(PENDING|RUNNING|STOPPED|SUCCEEDED|FAILED)\b", text, re.IGNORECASE)
    assert found, text
    return found.group(1).upper()


def wait_for(condition, head: Head, job: str, what: str, timeout: float = JOB_S):
    """``ray_helpers.wait_for`` while the job runs (its status, a CLI call, read every 20th poll)."""
    polls = iter(range(1, 10**9))

    def ended() -> str | None:
        if next(polls) % 20 or status(head, job) not in ("FAILED", "STOPPED", "SUCCEEDED"):
            return None
        return f"job {job} ended:\n{ray_job(head, 'logs', job)[-4000:]}"

    return poll(condition, what, timeout, ended=ended, on_timeout=lambda: ray_job(head, "logs", job)[-4000:])


def wait_status(head: Head, job: str, wanted: str) -> None:
    deadline = time.monotonic() + JOB_S
    while (state := status(head, job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"job {job} still {state} after {JOB_S} s"
        time.sleep(2)
    assert state == wanted, ray_job(head, "logs", job)[-4000:]


def trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("search/*/params.json"))


@pytest.mark.slow
def test_sweep_submitted_as_a_job_survives_ray_job_stop_and_resumes(head, tmp_path):
    run_dir = tmp_path / "run"
    args = ["task=pair", f"out_dir={run_dir}", f"cache_dir={tmp_path / 'cache'}", "data.demo_posts=120",
            f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=16", "sweep.num_samples=2",
            "sweep.max_concurrent=1", "sweep.scheduler=fifo", "sweep.final_test=false",
            "sweep.space.training.batch_size=null"]
    first = submit(head, *args)

    def first_trial_mid_way():  # the first trial has checkpointed its first epoch and goes on
        trial = next(iter(run_dir.glob("search/trial_0000_*")), None)
        if trial is not None and (trial / DONE_FILE).is_file():
            pytest.fail("the first trial finished before its first checkpoint was seen: too short to stop")
        return trial if trial is not None and any(trial.glob("train/checkpoint_*")) else None

    stopped = wait_for(first_trial_mid_way, head, first, "the first trial's first checkpoint")
    ray_job(head, "stop", first, timeout=180)  # SIGTERM to the driver: Tune saves the experiment
    wait_status(head, first, "STOPPED")
    logs = ray_job(head, "logs", first)
    assert "state saved" in logs, logs[-3000:]

    second = submit(head, f"resume={run_dir}")
    wait_status(head, second, "SUCCEEDED")
    assert "resuming" in ray_job(head, "logs", second)
    summary = json.loads((run_dir / "summary.json").read_text())
    trials = trial_dirs(run_dir)
    assert summary["num_trials"] == 2 and len(trials) == 2  # the searcher went on from its saved state
    assert len({t["trial_id"] for t in summary["trials"]}) == 2
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
