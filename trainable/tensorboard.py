"""TensorBoard logging from rank 0: train/* per step, val/* per epoch, and the run's HParams.

The HParams block is written when the run starts, into the run's own directory, and its metric
(``hparam/best_metric``) is a scalar updated every epoch: a trial that ASHA kills never reaches
``close()``, yet still shows in the HParams table with its best metric so far. Every logging
call flushes for the same reason.
"""

from __future__ import annotations

from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

HPARAM_METRIC = "hparam/best_metric"


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


class TBLogger:
    """A SummaryWriter with the run's conventions; a no-op when ``log_dir`` is None."""

    def __init__(self, log_dir: str | None, hparam_dict: dict[str, Any]):
        self.writer = SummaryWriter(log_dir) if log_dir else None
        if self.writer is None:
            return
        exp, ssi, _ = hparams(hparam_dict, {HPARAM_METRIC: 0.0})
        self.writer.file_writer.add_summary(exp)
        self.writer.file_writer.add_summary(ssi)
        self.writer.flush()

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
            if key.startswith("val_"):
                self.writer.add_scalar(f"val/{key[4:]}", value, epoch)
        for key in ("train_loss", "samples_per_s", "tokens_per_s"):
            if key in metrics:
                self.writer.add_scalar(f"train/epoch_{key.removeprefix('train_')}", metrics[key], epoch)
        self.writer.add_scalar(HPARAM_METRIC, best, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is None:
            return
        _, _, sei = hparams({}, {})
        self.writer.file_writer.add_summary(sei)
        self.writer.close()
