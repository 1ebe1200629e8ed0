"""``python -m trainable.single``: one training run on this machine, no Ray.

Leaves in ``out_dir``: config.yaml, metrics.json (one entry per epoch), checkpoint/ (the best
epoch), test_metrics.json (that checkpoint on the test split) and tb/ (TensorBoard).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from data_prep.pipeline import prepare_features
from plumbing.cli import absolute, parse_config, run_cli, save_config
from plumbing.errors import UserError
from trainable.compatibility import check_resume_task
from trainable.config import TrainConfig, metric_name, validate_train
from trainable.hf_model import write_hf_model
from trainable.inference import test_best
from trainable.loop import train_loop
from trainable.model_card import write_model_card
from trainable.session import BEST_METRIC, CHECKPOINT_DIR, METRIC, METRICS_FILE, LocalSession

DESCRIPTION = """
Train one model (task span | span_crf | pair) on one device and evaluate its best checkpoint on
the test split. Defaults: the synthetic demo corpus and the offline tiny model, on CPU in a
few minutes (the span heads find evidence on the demo with model.name=tiny-deberta
training.epochs=10 features.max_length=128 features.doc_stride=32). Real data: data.name=redsm5
data.dir=DIR model.name=SpanBERT/spanbert-base-cased training.lr=3e-5. Resume an interrupted run with
resume=OUT_DIR/checkpoint.
"""


def run(cfg: DictConfig) -> dict:
    """Train, then score the best checkpoint on test; returns the test metrics. Nothing is written
    before the config, the out_dir and the data are checked: a refused run leaves no trace."""
    absolute_paths(cfg)
    validate_train(cfg)
    if cfg.resume:
        check_resume_task(cfg, cfg.resume)  # a missing, incomplete or other-task checkpoint fails now
    out = Path(cfg.out_dir)
    check_out_dir(out, cfg.resume)
    fs = prepare_features(cfg)
    save_config(cfg, out)
    session = EpochLines(out, cfg.training.epochs, metric_name(cfg), resume=cfg.resume)
    train_loop(cfg, session=session, progress_bar=sys.stderr.isatty(), features=fs)
    if not session.checkpoint_path.is_dir():
        raise UserError(f"no checkpoint was written to {session.checkpoint_path} (no epoch ran: "
                        "training.epochs already reached by the resumed checkpoint?)")
    print(session.end_line(cfg.training.patience), flush=True)
    write_hf_model(session.checkpoint_path)  # span, pair: also a standard transformers model (hf_model.HF_TASKS)
    metrics = test_best(cfg, fs, session.checkpoint_path, out)
    write_model_card(str(session.checkpoint_path), metrics, name=out.name)
    return metrics


def check_out_dir(out: Path, resume: str | None) -> None:
    """One run per out_dir: a second run would mix its epochs, TensorBoard events and checkpoint with the
    first's. A resume continues the run in place."""
    held = [n for n in (METRICS_FILE, CHECKPOINT_DIR) if (out / n).exists()]
    if held and not resume:
        raise UserError(f"out_dir {out} holds a run ({', '.join(held)}); continue it with "
                        f"resume={out / CHECKPOINT_DIR}, or give another out_dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"out_dir {out} cannot be created: {e.strerror or e}; give a writable directory") from None


class EpochLines(LocalSession):
    """The local session, printing one line per epoch (what a piped run's log keeps; the bar is for a
    terminal only) and, at the end, why training stopped."""

    def __init__(self, out_dir: Path, epochs: int, metric: str, resume: str | None = None):
        super().__init__(out_dir, resume)
        self.epochs, self.metric, self.last, self.started = epochs, metric, None, time.monotonic()

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        super().report(metrics, checkpoint_dir)
        now, self.last = time.monotonic(), metrics
        saved = ", saved" if checkpoint_dir is not None else ""
        print(f"epoch {metrics['epoch']}/{self.epochs}: train loss {metrics.get('train_loss', float('nan')):.4f}, "
              f"val {self.metric} {metrics[METRIC]:.4f} (best {metrics[BEST_METRIC]:.4f}{saved}), "
              f"{now - self.started:.1f} s", flush=True)
        self.started = now

    def end_line(self, patience: int) -> str:
        epoch = self.last["epoch"] if self.last else 0
        if epoch >= self.epochs:
            return f"finished {self.epochs} epochs"
        return (f"stopped early after epoch {epoch}: val {self.metric} did not improve for {patience} epochs "
                f"(training.patience={patience})")


def absolute_paths(cfg: DictConfig) -> None:
    """The run's paths, absolute: config.yaml and the checkpoint's train_config.yaml are read later
    (trainable.evaluate / predict, a resume) from other working directories."""
    cfg.out_dir, cfg.cache_dir = absolute(cfg.out_dir), absolute(cfg.cache_dir)
    if cfg.data.dir:
        cfg.data.dir = absolute(cfg.data.dir)
    if cfg.resume:
        cfg.resume = absolute(cfg.resume)


def main(argv: list[str]) -> None:
    cfg = parse_config(TrainConfig, argv, "trainable.single", DESCRIPTION)
    metrics = run(cfg)
    history = json.loads((Path(cfg.out_dir) / METRICS_FILE).read_text())
    best = max(history, key=lambda m: m[METRIC])
    primary = metric_name(cfg)
    print(f"best epoch {best['epoch']}: val {primary} {best['metric']:.4f}; "
          f"test {primary} {metrics[primary]:.4f}; outputs in {cfg.out_dir}")


if __name__ == "__main__":
    run_cli(main)
