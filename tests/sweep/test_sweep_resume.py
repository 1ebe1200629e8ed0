"""Faults: a killed training worker retried from its checkpoint (a SIGKILLed driver resumed with
resume=true is in test_reaper, test_cluster_jobs and test_node_loss).

The sweep runs as a real ``python -m sweep.run`` subprocess attached (RAY_ADDRESS) to a local Ray
cluster that this module starts, so the test can kill a Train worker process and look at the
cluster's own record of its actors (Ray's State API).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ray.util.state import list_actors
from ray_helpers import SWEEP_WAIT_S, local_cluster, tune_committed_checkpoint, wait_for_sweep
from sweep_fakes import read_results

EPOCHS = 3
WAIT_S = SWEEP_WAIT_S


def sweep_cmd(tmp: Path, cache: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweep.run", "task=span", f"out_dir={tmp / 'run'}", f"cache_dir={cache}",
            "data.demo_posts=120", f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=16",
            "sweep.scheduler=fifo", "sweep.verbose=0", "sweep.final_test=false",
            "sweep.space.training.lr=[3e-3,5e-3]", "sweep.space.training.batch_size=null",
            "sweep.space.training.grad_accum=null", "sweep.space.training.epochs=null",
            "sweep.space.features.doc_stride=null", "sweep.space.features.max_length=[96]", *extra]


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(num_cpus=2) as (c, _):
        yield c


def start(cluster, cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path) -> None:
    try:
        code = proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert code == 0, log.read_text()[-4000:]


def trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("search/*/params.json"))


def tb_files(trial: Path) -> set[tuple[str, int]]:
    return {(p.name, p.stat().st_size) for p in (trial / "tb").glob("events.out.tfevents.*")}


def actors_of(cluster, class_name: str) -> dict:
    """The cluster's actors of one class, alive or dead, by actor id (Ray's State API)."""
    actors = list_actors(address=cluster.address, filters=[("class_name", "=", class_name)], detail=True,
                         raise_on_missing_output=False, timeout=30)
    return {a.actor_id: a for a in actors}


def train_workers(cluster) -> dict:
    """Ray Train's worker actors."""
    return actors_of(cluster, "RayTrainWorker")


@pytest.mark.slow
def test_a_killed_training_worker_is_retried_from_its_checkpoint(cluster, tmp_path, demo_cache):
    run_dir = tmp_path / "run"
    log = tmp_path / "sweep.log"
    earlier = set(train_workers(cluster))  # the other test's sweeps ran on this cluster too
    cmd = sweep_cmd(tmp_path, demo_cache, "sweep.num_samples=1", "sweep.max_failures=2", "sweep.verbose=1")
    proc = start(cluster, cmd, log)

    def first_epoch_reported():
        trials = trial_dirs(run_dir)
        return trials[0] if trials and read_results(trials[0]) else None

    trial = wait_for_sweep(first_epoch_reported, proc, log, "the first epoch")

    def worker_pid():  # the sweep's one trial has one worker
        alive = [a for i, a in train_workers(cluster).items() if i not in earlier and a.state == "ALIVE"]
        return alive[0].pid if alive else None

    pid = wait_for_sweep(worker_pid, proc, log, "the trial's worker in Ray's actor table")
    os.kill(pid, signal.SIGKILL)
    finish(proc, log)

    summary = json.loads((run_dir / "summary.json").read_text())
    (t,) = summary["trials"]
    assert t["state"] == "TERMINATED" and t["stop_reason"] == "finished" and t["error"] is None
    assert [r["epoch"] for r in read_results(trial)] == list(range(1, EPOCHS + 1))
    workers = [a for i, a in train_workers(cluster).items() if i not in earlier]
    assert len(workers) >= 2 and len({a.pid for a in workers}) == len(workers)  # the worker group was restarted
    killed = next(a for a in workers if a.pid == pid)
    assert killed.state == "DEAD" and killed.death_cause  # ended by the kill, then replaced
    # The sweep's own output: one line per trial event (the retry is Ray Train's and invisible to
    # Tune), the leaderboard, and none of Ray's output.
    text = log.read_text()
    events = [x for x in text.splitlines() if x.startswith(f"search trial {t['trial_id']}: ")]
    results = [x for x in (trial / "result.json").read_text().splitlines() if x.strip()]  # one per report
    assert len(events) == 1 + len(results) + 1, events
    assert events[-1].endswith(f"finished {EPOCHS}/{EPOCHS} epochs (best {summary['primary_metric']} "
                               f"{t['best_metric']:.4f})"), events[-1]
    for noise in ("TrainingReport", "RayDeprecationWarning", "(RayTrainWorker", "(TrainController", "Trial status"):
        assert noise not in text, noise


def trial_processes(cluster) -> dict:
    """Tune's trial actors (a function trainable's process)."""
    return actors_of(cluster, "ImplicitFunc")


@pytest.mark.slow
def test_a_killed_in_process_trial_is_retried_from_its_checkpoint(cluster, tmp_path, demo_cache):
    """sweep.in_process=true: the trial's own process trains; killed after its first checkpoint, Tune
    restarts it, and it goes on from Tune's checkpoint: every epoch recorded once, epoch 1 evaluated once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    log = tmp_path / "sweep.log"
    earlier = set(trial_processes(cluster))
    cmd = sweep_cmd(tmp_path, demo_cache, "sweep.num_samples=1", "sweep.max_failures=2", "sweep.verbose=1",
                    "sweep.in_process=true")
    proc = start(cluster, cmd, log)

    trial = wait_for_sweep(lambda: tune_committed_checkpoint(run_dir / "search"), proc, log,
                           "the first committed checkpoint")

    def trial_pid():
        alive = [a for i, a in trial_processes(cluster).items() if i not in earlier and a.state == "ALIVE"]
        return alive[0].pid if alive else None

    os.kill(wait_for_sweep(trial_pid, proc, log, "the trial's process in Ray's actor table"), signal.SIGKILL)
    finish(proc, log)

    summary = json.loads((run_dir / "summary.json").read_text())
    (t,) = summary["trials"]
    assert t["state"] == "TERMINATED" and t["stop_reason"] == "finished" and t["error"] is None
    assert [r["epoch"] for r in read_results(trial)] == list(range(1, EPOCHS + 1))
    assert not (trial / "train").exists()  # no Ray Train run: the trial trained in its own process
    events = EventAccumulator(str(trial / "tb"), purge_orphaned_data=False)
    events.Reload()
    steps = [e.step for e in events.Scalars("val/f1")]
    assert steps.count(1) == 1 and set(steps) == set(range(1, EPOCHS + 1)), steps
    assert "restarted" in log.read_text()
