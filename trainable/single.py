"""``python -m trainable.single``: one training run on this machine, no Ray.

Leaves in ``out_dir``: config.yaml, metrics.json (one entry per epoch), checkpoint/ (the best
epoch), test_metrics.json (that checkpoint on the test split) and tb/ (TensorBoard).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from data_prep.pipeline import prepare_features
from plumbing.cli import absolute, parse_config, run_cli, save_config
from plumbing.errors import UserError
from trainable.config import TrainConfig, metric_name, validate_train
from trainable.inference import test_best
from trainable.loop import check_resume_task, train_loop
from trainable.session import METRIC, METRICS_FILE, LocalSession
from trainable.tensorboard import TB_DIR

DESCRIPTION = """
Train one model (task span | span_crf | pair) on one device and evaluate its best checkpoint on
the test split. Defaults: the synthetic demo corpus and the offline tiny model, on CPU in a
few minutes (the span heads find evidence on the demo with model.name=tiny-deberta
training.epochs=10 features.max_length=128 features.doc_stride=32). Real data: data.name=redsm5
data.dir=DIR model.name=SpanBERT/spanbert-base-cased training.lr=3e-5. Resume an interrupted run with
resume=OUT_DIR/checkpoint.
"""


def run(cfg) -> dict:
    """Train, then score the best checkpoint on test; returns the test metrics."""
    absolute_paths(cfg)
    validate_train(cfg)
    if cfg.resume:
        check_resume_task(cfg, cfg.resume)  # a missing, incomplete or other-task checkpoint fails now
    out = Path(cfg.out_dir)
    save_config(cfg, out)
    fs = prepare_features(cfg)
    session = LocalSession(out, resume=cfg.resume)
    config = OmegaConf.to_container(cfg, resolve=True)
    train_loop({**config, "tb_dir": str(out / TB_DIR)}, session=session, progress_bar=True, features=fs)
    if not session.checkpoint_path.is_dir():
        raise UserError(f"no checkpoint was written to {session.checkpoint_path} (no epoch ran: "
                        "training.epochs already reached by the resumed checkpoint?)")
    return test_best(cfg, fs, session.checkpoint_path, out)


def absolute_paths(cfg) -> None:
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
