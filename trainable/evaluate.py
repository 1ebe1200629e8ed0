"""``python -m trainable.evaluate checkpoint=DIR split=val|test``: score a saved model on a split.

The features are rebuilt from the checkpoint's own train config through ``prepare_features`` with
the checkpoint's tokenizer files as the model, so the cache key (data, task, tokenizer fingerprint,
feature settings) is the one training used: normally a cache hit, and never a hub download. The
scoring is the loop's ``evaluate``, so the numbers equal what training reported for that split.
Writes ``metrics.json`` and ``predictions.jsonl`` (one line per example: id, prediction, score,
gold) to out_dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig

from data_prep.config import doc
from plumbing.cli import absolute, parse_config, required, run_cli, save_config
from plumbing.errors import ConfigError
from plumbing.jsonio import write_json, write_jsonl
from trainable.inference import PREDICTIONS_FILE, checkpoint_features, evaluate_checkpoint, headline, load_checkpoint

DESCRIPTION = """
Evaluate a checkpoint written by trainable (python -m trainable.single or a sweep) on the val or
test split of the data it was trained on. Writes metrics.json and predictions.jsonl (id,
prediction, score, gold per example) to out_dir (default: <checkpoint>/../eval-<split>).
"""
EVAL_SPLITS = ("val", "test")
METRICS_FILE = "metrics.json"


@dataclass
class EvalTrainingConfig:
    eval_batch_size: int | None = doc("examples per batch; default: the checkpoint's training.eval_batch_size",
                                      None)


@dataclass
class EvaluateConfig:
    checkpoint: str = doc("checkpoint directory (e.g. runs/single/checkpoint)", MISSING)
    split: str = doc("val | test", "test")
    out_dir: str | None = doc("where metrics.json and predictions.jsonl go; default <checkpoint>/../eval-<split>",
                              None)
    cache_dir: str | None = doc("feature cache; default: the cache_dir of the checkpoint's run", None)
    data_dir: str | None = doc("where the run's data files are now (its data.dir); default: where they were", None)
    device: str = doc("auto | cpu | cuda", "auto")
    training: EvalTrainingConfig = doc("evaluation overrides", factory=EvalTrainingConfig)


def run(cfg: DictConfig) -> dict:
    """Evaluate, write metrics.json and predictions.jsonl; returns the metrics."""
    checkpoint = cfg.checkpoint = absolute(required(cfg, "checkpoint", "checkpoint=runs/single/checkpoint"))
    if cfg.split not in EVAL_SPLITS:
        raise ConfigError("split", f"must be one of {', '.join(EVAL_SPLITS)}; got {cfg.split!r} "
                                   "(the train split is what the model learned from)")
    overrides: dict = {"training": {}}
    if cfg.cache_dir is not None:
        overrides["cache_dir"] = cfg.cache_dir = absolute(cfg.cache_dir)
    if cfg.data_dir is not None:
        overrides["data"] = {"dir": absolute(cfg.data_dir)}
        cfg.data_dir = overrides["data"]["dir"]
    if cfg.training.eval_batch_size is not None:
        if cfg.training.eval_batch_size < 1:
            raise ConfigError("training.eval_batch_size", f"must be at least 1; got {cfg.training.eval_batch_size}")
        overrides["training"]["eval_batch_size"] = cfg.training.eval_batch_size
    ckpt = load_checkpoint(checkpoint, device=cfg.device, overrides=overrides)
    out = Path(absolute(cfg.out_dir)) if cfg.out_dir else ckpt.path.parent / f"eval-{cfg.split}"
    cfg.out_dir = str(out)
    fs = checkpoint_features(ckpt)
    result = evaluate_checkpoint(ckpt, fs, cfg.split)
    metrics = {"checkpoint": str(ckpt.path), "task": ckpt.meta["task"], "split": cfg.split,
               "checkpoint_epoch": ckpt.meta["epoch"], "loss": result.loss, **result.metrics}
    save_config(cfg, out)
    write_json(out / METRICS_FILE, metrics)
    n = write_jsonl(out / PREDICTIONS_FILE, result.predictions)
    print(f"{ckpt.meta['task']} checkpoint (epoch {ckpt.meta['epoch']}) on {cfg.split}, {n} examples: "
          f"{headline(ckpt.meta['task'], result.metrics)}; loss {result.loss:.4f}")
    print(f"wrote {out / METRICS_FILE} and {out / PREDICTIONS_FILE}")
    return metrics


def main(argv: list[str]) -> None:
    run(parse_config(EvaluateConfig, argv, "trainable.evaluate", DESCRIPTION, positional="checkpoint"))


if __name__ == "__main__":
    run_cli(main)
