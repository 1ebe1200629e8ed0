"""Where the loop reports to: Ray Train in a worker, a Tune trial's own process, plain files when run alone.

The loop only knows this interface, which is what lets the same code run under a
``TorchTrainer`` and in ``python -m trainable.single``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Protocol

from plumbing import storage
from plumbing.jsonio import write_json

METRICS_FILE = "metrics.json"
TEST_METRICS = "test_metrics.json"  # the best checkpoint on the test split, after training
# The key of every epoch report that ranks checkpoints and trials (the value of training.metric), and its
# direction: what Tune, ASHA, Optuna and Ray Train's checkpoint scoring all sort by.
METRIC, MODE = "metric", "max"
# The best METRIC up to and including the epoch: the metric of the checkpoint the run keeps, what a sweep's
# searcher learns.
BEST_METRIC = "best_metric"
CHECKPOINT_DIR = "checkpoint"
VAL_PREFIX = "val_"  # an epoch report's validation scalars: val_f1, val_roc_auc, val_loss, ...


def val_key(name: str) -> str:
    """The report key of validation metric ``name`` (``f1`` -> ``val_f1``)."""
    return VAL_PREFIX + name


class Session(Protocol):
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        """Record one epoch's metrics; ``checkpoint_dir`` (a finished directory) is kept as the best."""

    def resume_checkpoint(self) -> str | None:
        """A checkpoint directory to continue from, or None for a fresh run."""


def record_epoch(path: Path, metrics: dict) -> None:
    """Add one epoch's metrics to the run's history file; a re-run epoch (after a resume) replaces its
    earlier entry, so the file holds every epoch once, however many times the run was resumed."""
    path = str(path)
    saved = json.loads(storage.read_text(path)) if storage.exists(path) else []
    history = [m for m in saved if m.get("epoch") != metrics.get("epoch")]
    # atomic on a local disk (a kill mid-write leaves the previous history), and one object on a bucket
    write_json(path, [*history, metrics])


def local_copy(checkpoint, fallback: str | None) -> str | None:
    """A local directory of Ray's checkpoint (it may live on remote storage), else ``fallback``."""
    return fallback if checkpoint is None else checkpoint.to_directory()


class LocalSession:
    """One process: metrics appended to ``metrics.json``, the best checkpoint at ``checkpoint/``."""

    rank = 0
    world_size = 1
    is_main = True

    def __init__(self, out_dir: str | Path, resume: str | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._resume = resume

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        record_epoch(self.metrics_path, metrics)
        if checkpoint_dir is not None and Path(checkpoint_dir).resolve() != self.checkpoint_path.resolve():
            # Copy then swap, so a crash never leaves the run without a complete best checkpoint.
            tmp = self.out_dir / (CHECKPOINT_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(checkpoint_dir, tmp)
            shutil.rmtree(self.checkpoint_path, ignore_errors=True)
            tmp.rename(self.checkpoint_path)

    def resume_checkpoint(self) -> str | None:
        return self._resume


class RaySession:
    """A Ray Train worker: rank 0 attaches the checkpoint, the others report metrics only.

    Rank 0 also keeps the run's own epoch history in ``<out_dir>/metrics.json`` (the trial's storage
    directory in a sweep). Tune's result files of a trial are staged on the driver and synced in
    batches; a trial resumed in a new driver restarts them, losing the epochs before the stop, while
    this file is written where the run lives and keeps every epoch across any number of resumes.
    """

    def __init__(self, out_dir: str | Path | None = None, resume: str | None = None):
        import ray.train

        self.metrics_path = storage.join(str(out_dir), METRICS_FILE) if out_dir else None  # path or URI
        self._resume = resume
        self._train = ray.train
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        checkpoint = None
        if self.is_main and self.metrics_path is not None:
            record_epoch(self.metrics_path, metrics)
        if checkpoint_dir is not None and self.is_main:
            checkpoint = self._train.Checkpoint.from_directory(checkpoint_dir)
        self._train.report(metrics, checkpoint=checkpoint)

    def resume_checkpoint(self) -> str | None:
        return local_copy(self._train.get_checkpoint(), self._resume)  # Ray's own (a restarted group) wins


class TuneSession:
    """The loop inside a Tune trial's own process (a sweep's one-worker trial without a Ray Train worker
    group): each epoch goes to ``ray.tune.report``, the checkpoint with it, which Tune keeps in the trial
    directory and scores as Ray Train would; a retried or resumed trial continues from Tune's latest
    checkpoint. The epoch history goes to ``<out_dir>/metrics.json`` as in ``RaySession``."""

    rank = 0
    world_size = 1
    is_main = True

    def __init__(self, out_dir: str, resume: str | None = None):
        from ray import tune

        self.metrics_path = storage.join(str(out_dir), METRICS_FILE)
        self._resume = resume
        self._tune = tune
        self.last: dict = {}  # the last epoch's report: the trial's final result

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        self.last = metrics
        record_epoch(self.metrics_path, metrics)
        checkpoint = self._tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        self._tune.report(metrics, checkpoint=checkpoint)  # the checkpoint is persisted before it returns

    def resume_checkpoint(self) -> str | None:
        return local_copy(self._tune.get_checkpoint(), self._resume)
