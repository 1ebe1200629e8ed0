"""Cluster operations: a worker node lost while its trial trains, and a trial no node left can hold.

A local cluster (a head without CPUs, so trials run on worker nodes) is shared by the module. The
real sweep runs in a thread of this process (``sweep.run.run``); the test finds the node of the
trial's Train worker in Ray's actor table (State API) and removes it (``Cluster.remove_node`` kills
its raylet and every process on it). Every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import ray
import ray.train
from ray.util.state import list_actors
from ray_helpers import local_cluster
from ray_helpers import wait_for as poll
from sweep_fakes import load_config

from sweep.run import run

EPOCHS = 6  # after the first checkpoint, the rest must outlast finding and removing the node (seen: 1 s an epoch)
WAIT_S = 150  # one wait: a trial's first checkpoint, or the rest of a sweep (seen: 30-60 s)
UNPLACEABLE_S = 5  # sweep.unplaceable_timeout_s in the second test
REPORT_S = 45  # unplaceable: node loss -> trial errored and sweep ended (5 s wait, driver polls every 5 s)


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs or ``memory`` and 1-CPU worker nodes; RAY_ADDRESS names it while it runs.

    Without ``memory`` on the head, a trial's driver (0 CPU, 1 byte of memory) runs on a worker node,
    as it may on any cluster, so losing a node can take the driver and its Train controller too.
    """
    with local_cluster(num_cpus=0, memory=0) as (c, _):
        yield c


def two_small_workers(cluster) -> None:
    """Two 1-CPU worker nodes (a test before may have removed one)."""
    while len([n for n in cluster.worker_nodes if n.get_resource_and_label_spec().num_cpus == 1]) < 2:
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()


def sweep_args(tmp: Path, cache: str, *extra: str) -> list[str]:
    """One pair trial of EPOCHS epochs on a small demo, FIFO, a checkpoint every improving epoch."""
    return ["task=pair", f"out_dir={tmp / 'run'}", f"cache_dir={cache}", "data.demo_posts=80",
            f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=16", "training.grad_accum=1",
            "sweep.num_samples=1", "sweep.scheduler=fifo", "sweep.verbose=1", "sweep.final_test=false",
            "sweep.space.training.lr=[5e-3]", "sweep.space.training.batch_size=null",
            "sweep.space.features.max_length=[96]", *extra]


class SweepThread:
    """``sweep.run.run`` in a daemon thread, so a hang fails the test instead of blocking it."""

    def __init__(self, argv: list[str]):
        self.cfg, dists = load_config(argv)
        self.run_dir = Path(self.cfg.out_dir)
        self.out: dict = {}
        self.thread = threading.Thread(target=self._run, args=(dists,), daemon=True)
        self.thread.start()

    def _run(self, dists) -> None:
        try:
            self.out["summary"] = run(self.cfg, dists)
        except BaseException as e:  # re-raised in the test's thread by summary()
            self.out["error"] = e

    def summary(self, timeout_s: float) -> dict:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"the sweep did not finish within {timeout_s} s"
        if "error" in self.out:
            raise self.out["error"]
        return self.out["summary"]


def wait_for(condition, sweep: SweepThread, what: str, timeout_s: float = WAIT_S):
    """``ray_helpers.wait_for`` while the sweep's thread runs."""
    return poll(condition, what, timeout_s, interval_s=0.2,
                ended=lambda: None if sweep.thread.is_alive() else f"the sweep ended: {sweep.out}")


def actors(cluster, class_name: str | None = None) -> list:
    """Every actor the cluster knows, alive or dead, of this class (Tune's function trainable is a
    class defined in a function, so its recorded name may carry the function's ``<locals>``)."""
    found = list_actors(address=cluster.address, detail=True, limit=10_000, raise_on_missing_output=False,
                        timeout=30)
    return [a for a in found if class_name is None or a.class_name.split(".")[-1] == class_name]


def alive(cluster, class_name: str, but=None):
    """An alive actor of this class (each sweep here has one trial of one worker), other than ``but``."""
    found = [a for a in actors(cluster, class_name)
             if a.state == "ALIVE" and (but is None or a.actor_id != but.actor_id)]
    return found[0] if found else None


WORKER, DRIVER = "RayTrainWorker", "ImplicitFunc"  # Ray Train's worker actor; Tune's function trainable


def node_of(cluster, node_id: str):
    (node,) = [n for n in cluster.worker_nodes if n.node_id == node_id]
    return node


def trial_dir(run_dir: Path) -> Path | None:
    found = sorted(p.parent for p in run_dir.glob("search/*/params.json"))
    return found[0] if found else None


def metrics(trial: Path) -> list[dict]:
    path = trial / "metrics.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else []
    except ValueError:  # written atomically, but be safe
        return []


def committed_checkpoint(run_dir: Path) -> Path | None:
    """The trial dir once Ray Train has registered a checkpoint of the trial's run (what a retry resumes
    from; a checkpoint directory alone is not that: a worker lost before the controller took its report
    leaves one, and the retry starts over)."""
    trial = trial_dir(run_dir)
    if trial is None or not (trial / "train").is_dir():
        return None
    try:
        result = ray.train.Result.from_path(str(trial / "train"))
    except Exception:  # not written yet (RuntimeError), or caught mid-write
        return None
    return trial if result.checkpoint is not None else None


def tb_epochs(trial: Path) -> list[tuple[int, float]]:
    """(epoch, wall time) of every val/f1 event the trial's TensorBoard run holds, in file order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for path in sorted((trial / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        if "val/f1" in acc.Tags()["scalars"]:
            out += [(e.step, e.wall_time) for e in acc.Scalars("val/f1")]
    return out


def tune_epochs(trial: Path) -> list[int]:
    """The epoch of each result Tune received, in order (result.json, one line per report)."""
    lines = [x for x in (trial / "result.json").read_text().splitlines() if x.strip()]
    return [json.loads(x)["epoch"] for x in lines]


@pytest.mark.slow
@pytest.mark.parametrize("lost", [WORKER, DRIVER])
def test_a_lost_node_retries_the_trial_from_its_checkpoint_on_another(lost, cluster, tmp_path, demo_cache):
    """The node of the trial's Train worker (Ray Train restarts the worker group), or of its Tune driver
    (Tune restarts the driver, which resumes the same Train run), goes after the first checkpoint."""
    started = time.monotonic()
    two_small_workers(cluster)
    earlier = {a.actor_id for a in actors(cluster, DRIVER)}  # the drivers of the tests before
    sweep = SweepThread(sweep_args(tmp_path, demo_cache, "sweep.max_failures=2"))
    trial = wait_for(lambda: committed_checkpoint(sweep.run_dir), sweep, "the trial's first checkpoint")
    worker = wait_for(lambda: alive(cluster, WORKER), sweep, "the trial's worker in Ray's actor table")
    driver = wait_for(lambda: alive(cluster, DRIVER), sweep, "the trial's driver in Ray's actor table")
    node_id = worker.node_id if lost == WORKER else driver.node_id
    on_lost = sorted(a.class_name for a in actors(cluster) if a.state == "ALIVE" and a.node_id == node_id)
    cluster.remove_node(node_of(cluster, node_id))
    lost_at, lost_wall = time.monotonic(), time.time()
    retried = wait_for(lambda: alive(cluster, WORKER, but=worker), sweep, "a new training worker")
    retry_s = time.monotonic() - lost_at
    summary = sweep.summary(WAIT_S)

    (t,) = summary["trials"]
    assert t["state"] == "TERMINATED" and t["stop_reason"] == "finished" and t["error"] is None, t
    assert t["epochs_run"] == EPOCHS
    assert retried.node_id != node_id
    drivers = [a for a in actors(cluster, DRIVER) if a.actor_id not in earlier]
    assert len(drivers) == (2 if driver.node_id == node_id else 1), drivers  # Tune restarted a lost driver
    assert [m["epoch"] for m in metrics(trial)] == list(range(1, EPOCHS + 1))  # each epoch recorded once
    tb = tb_epochs(trial)
    # Epoch 1 trained once. (Tune's own results of a restarted driver start again, without what the
    # lost one had staged: they may lack epoch 1 but never hold it twice.)
    assert [e for e, _ in tb].count(1) == 1 and tune_epochs(trial).count(1) <= 1
    after_loss = [e for e, wall in tb if wall > lost_wall]
    assert after_loss and min(after_loss) >= 2, tb  # the retry resumed from the checkpoint, not epoch 1
    assert sorted({e for e, _ in tb}) == list(range(1, EPOCHS + 1))
    resumed_s = min(wall for e, wall in tb if wall > lost_wall) - lost_wall
    print(f"\nnode loss ({lost}): lost node held {on_lost}; new worker after {retry_s:.1f} s, first epoch after the "
          f"loss (epoch {min(after_loss)}) recorded after {resumed_s:.1f} s; Tune results {tune_epochs(trial)}, "
          f"TensorBoard epochs {[e for e, _ in tb]}; test {time.monotonic() - started:.0f} s")


@pytest.mark.slow
def test_a_trial_no_remaining_node_can_hold_errors_naming_what_it_needs(cluster, tmp_path, demo_cache):
    """The only node with 2 CPUs goes while a 2-CPU trial trains there: the trial errors within
    sweep.unplaceable_timeout_s (plus polling), naming its request and the nodes left; the sweep ends."""
    started = time.monotonic()
    two_small_workers(cluster)
    big = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    sweep = SweepThread(sweep_args(tmp_path, demo_cache, "sweep.cpus_per_worker=2", "sweep.max_failures=1",
                                   f"sweep.unplaceable_timeout_s={UNPLACEABLE_S}"))
    worker = wait_for(lambda: alive(cluster, WORKER), sweep, "the trial's worker")
    assert worker.node_id == big.node_id
    cluster.remove_node(big)
    lost_at = time.monotonic()
    summary = sweep.summary(REPORT_S)
    reported_s = time.monotonic() - lost_at

    (t,) = summary["trials"]
    assert t["state"] == "ERROR" and t["stop_reason"] == "error", t
    assert "UnplaceableTrialError" in t["error"] and "1 worker(s) x (2 CPU)" in t["error"], t["error"]
    assert "0 CPU/0 GPU" in t["error"] and "1 CPU/0 GPU" in t["error"]  # the nodes left: head, a 1-CPU one
    assert "sweep.unplaceable_timeout_s" in t["error"]
    assert reported_s >= UNPLACEABLE_S
    print(f"\nunplaceable: trial errored and the sweep ended {reported_s:.1f} s after the node loss; "
          f"test {time.monotonic() - started:.0f} s; error: {t['error'][:300]}")
