"""TensorBoard logging from rank 0: train/* per step, val/* per epoch, and the run's HParams.

One directory is one TensorBoard run. Its HParams (the config, plus ``stop_reason``: finished,
early_stop, asha or error) are written once, when the run's end is known: TensorBoard keeps the
first HParams block a run holds, so one written at the start could never say how the run ended.
The loop writes it in ``close`` when it finished or stopped early; a run that raises writes none
(Ray Train may retry it). In a sweep, the driver side writes it with ``write_end`` for the ends the
loop never sees (ASHA kills the workers, so no ``finally`` runs; a trial errors only after its
retries), as a second event file of the same run. ``hparam/best_metric``, the HParams metric, is a
scalar updated every epoch, and every logging call flushes, for the same reason: a killed run never
reaches ``close``.

torch's writer is imported where it writes: a sweep driver and every trial's Tune actor import this
module for its names, and torch would cost each of them a second.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from plumbing import storage
from trainable.session import VAL_PREFIX
from trainable.stop_reason import ENDED_REASONS, classify

TB_DIR = "tb"  # a run's TensorBoard directory, inside its out_dir (a sweep trial's directory)
HPARAM_METRIC = "hparam/best_metric"
STOP_REASON = "stop_reason"  # the HParams column; its values are trainable.stop_reason's ENDED_REASONS


def flat_hparams(config: dict, keys: tuple[str, ...] = ("task", "seed", "model", "features", "training")
                 ) -> dict[str, Any]:
    """``{"training.lr": 1e-3, ...}`` with values TensorBoard accepts (None becomes "None")."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, bool | int | float | str):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    for key in keys:
        if key in config:
            walk(key, config[key])
    return out


def end_summaries(hparam_dict: dict[str, Any], stop_reason: str) -> list[Summary]:
    """The HParams block of a run that ended: session start (the hparams with the stop reason) and
    session end (STATUS_FAILURE for an error, STATUS_SUCCESS otherwise). No experiment summary: the
    HParams dashboard takes the first one it finds as the whole sweep's, values and all, and then marks
    no hyper-parameter as differing; without one it builds the experiment from every run's session
    start, with the domains and ``differs`` of the values the runs hold."""
    if stop_reason not in ENDED_REASONS:
        raise ValueError(f"stop_reason must be one of {', '.join(ENDED_REASONS)}; got {stop_reason!r}")
    from torch.utils.tensorboard.summary import hparams

    _, start, end = hparams({**hparam_dict, STOP_REASON: stop_reason}, {HPARAM_METRIC: 0.0},
                              hparam_domain_discrete={STOP_REASON: list(ENDED_REASONS)})
    if stop_reason == "error":
        info = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_FAILURE)
        content = plugin_data_pb2.HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
        end = Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG,
                                           metadata=metadata.create_summary_metadata(content))])
    return [start, end]


def has_hparams(log_dir: str | Path) -> bool:
    """Whether the run in ``log_dir`` already holds an HParams block (its end is recorded)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(log_dir).is_dir():
        return False
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    try:
        return metadata.SESSION_START_INFO_TAG in acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:  # no hparams summary at all
        return False


def write_end(log_dir: str | Path, hparam_dict: dict[str, Any], stop_reason: str) -> bool:
    """Record how a run ended in its own directory, unless it already says; True when written here.
    A run on object storage (``s3://...``) is read and extended through a local copy."""
    from torch.utils.tensorboard import SummaryWriter

    with local_copy(str(log_dir)) as local:
        if has_hparams(local):
            return False
        with SummaryWriter(local, filename_suffix=".end") as writer:
            for summary in end_summaries(hparam_dict, stop_reason):
                writer.file_writer.add_summary(summary)
    return True


@contextmanager
def local_copy(log_dir: str) -> Iterator[str]:
    """``log_dir`` itself, or for a URI a local directory holding its files, uploaded back on exit
    (SummaryWriter and EventAccumulator read and write local files only, without TensorFlow)."""
    if not storage.is_uri(log_dir):
        yield log_dir
        return
    with tempfile.TemporaryDirectory(prefix="tb-") as tmp:
        if storage.exists(log_dir):
            storage.download_dir(log_dir, tmp)
        yield tmp
        storage.upload_dir(tmp, log_dir)


class TBLogger:
    """A SummaryWriter with the run's conventions; a no-op when ``log_dir`` is None.

    A ``log_dir`` on object storage is written in a local directory and uploaded at the end of every
    epoch and at close (a killed run loses at most the current epoch's step scalars there).
    """

    def __init__(self, log_dir: str | None, hparam_dict: dict[str, Any]):
        self.remote = log_dir if log_dir and storage.is_uri(log_dir) else None
        self._staging = tempfile.TemporaryDirectory(prefix="tb-") if self.remote else None
        local = self._staging.name if self._staging else log_dir
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(local) if local else None
        self.hparam_dict = hparam_dict
        self.last_epoch: int | None = None

    def _publish(self) -> None:
        if self.remote:
            storage.upload_dir(self._staging.name, self.remote)

    def train_step(self, step: int, loss: float, lr: float) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.flush()

    def epoch(self, epoch: int, metrics: dict[str, Any], best: float) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if key.startswith(VAL_PREFIX):
                self.writer.add_scalar(f"val/{key.removeprefix(VAL_PREFIX)}", value, epoch)
        for key in ("train_loss", "samples_per_s", "tokens_per_s"):
            if key in metrics:
                self.writer.add_scalar(f"train/epoch_{key.removeprefix('train_')}", metrics[key], epoch)
        self.writer.add_scalar(HPARAM_METRIC, best, epoch)
        self.writer.flush()
        self.last_epoch = epoch
        self._publish()

    def close(self) -> None:
        """The loop calls this in its ``finally``: an exception on its way out (``sys.exc_info``) means
        the run failed, and its end is left to whoever sees the last of it (Ray Train may retry it)."""
        if self.writer is None:
            return
        if sys.exc_info()[0] is None and self.last_epoch is not None:
            planned = self.hparam_dict.get("training.epochs", self.last_epoch)
            reason = classify(epochs=self.last_epoch, planned=planned)
            for summary in end_summaries(self.hparam_dict, reason):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()
        self._publish()
        if self._staging:
            self._staging.cleanup()
