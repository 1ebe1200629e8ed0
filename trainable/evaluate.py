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
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_prep.config import doc
from data_prep.featureset import FeatureSet
from data_prep.pipeline import prepare_features
from plumbing.cli import parse_config, run_cli, save_config
from plumbing.errors import ConfigError, UserError
from plumbing.jsonio import write_json, write_jsonl
from trainable.batching import columns_from_table
from trainable.checkpoint import CONFIG_FILE, load_model, read_config, read_meta
from trainable.config import DEVICES, TrainConfig, validate_train
from trainable.evaluation import EvalResult, evaluate
from trainable.loop import amp_dtype, autocast_context, check_compatible, choose_device
from trainable.models import TaskModel

DESCRIPTION = """
Evaluate a checkpoint written by trainable (python -m trainable.single or a sweep) on the val or
test split of the data it was trained on. Writes metrics.json and predictions.jsonl (id,
prediction, score, gold per example) to out_dir (default: <checkpoint>/../eval-<split>).
"""
EVAL_SPLITS = ("val", "test")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
HEADLINE = {
    "span": ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"),
    "span_crf": ("span_precision", "span_recall", "span_f1", "exact", "f1"),
    "pair": ("precision", "recall", "f1", "roc_auc", "pr_auc", "accuracy"),
}


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


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model ready for inference and the run config it was trained with."""

    path: Path
    model: TaskModel
    meta: dict
    cfg: DictConfig  # the run's TrainConfig, with the caller's overrides applied
    device: torch.device
    autocast: Any


def required(cfg: DictConfig, key: str, example: str) -> str:
    """A mandatory string key of a command's config, or a UserError showing how to pass it."""
    if OmegaConf.is_missing(cfg, key) or not str(cfg[key]).strip():
        raise ConfigError(key, f"required; e.g. {example}")
    return str(cfg[key])


def absolute(path: str) -> str:
    """A path from the command line, absolute against the command's working directory: the configs
    it is saved in are read later from other directories."""
    return str(Path(path).expanduser().resolve())


def run_cache_dir(checkpoint: str | Path, cache_dir: str) -> str:
    """The cache_dir of a checkpoint's run, absolute.

    Runs save it absolute. A relative one (a checkpoint written before they did, or a relative
    override) was relative to a working directory nobody recorded: it is taken from the nearest
    directory above the checkpoint that holds it (``runs/x/checkpoint`` with ``.cache/`` beside
    ``runs/``, the project's layout), else it is put in the checkpoint's run directory, so a command
    run from elsewhere never leaves a stray ``.cache`` in its working directory. Entries are keyed
    by content, so any cache directory gives the same features (at worst they are rebuilt once).
    """
    path = Path(cache_dir).expanduser()
    if path.is_absolute():
        return str(path)
    checkpoint = Path(checkpoint).resolve()
    found = next((parent / path for parent in checkpoint.parents if (parent / path).is_dir()), None)
    return str(found or checkpoint.parent / path)


def check_device_name(device: str) -> None:
    if device not in DEVICES:
        raise ConfigError("device", f"must be one of {', '.join(DEVICES)}; got {device!r}")


def run_config(path: str | Path, *overrides: dict) -> DictConfig:
    """The checkpoint's TrainConfig (train_config.yaml) merged with ``overrides`` and validated."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), read_config(path), *overrides)
    except (OmegaConfBaseException, ValueError) as e:
        raise UserError(f"checkpoint '{path}': its {CONFIG_FILE} does not fit this version's training config "
                        f"({str(e).splitlines()[0]}); evaluate it with the version of the project that "
                        "trained it, or fix the key named above in that file") from None
    validate_train(cfg)
    return cfg


def load_checkpoint(path: str | Path, *, device: str = "auto", overrides: dict | None = None) -> Checkpoint:
    """The model of a checkpoint directory in eval mode on ``device``, with its run config.

    ``overrides`` (a nested dict of TrainConfig keys) change the saved config, e.g. the cache
    directory or the evaluation batch size; AMP is the run's own setting, as in training. The
    config's cache_dir is made absolute (``run_cache_dir``).
    """
    check_device_name(device)
    meta = read_meta(path)  # a missing or incomplete directory fails here, before any loading
    cfg = run_config(path, overrides or {}, {"training": {"device": device}})
    cfg.cache_dir = run_cache_dir(path, cfg.cache_dir)
    torch_device = choose_device(cfg)
    model, meta, _ = load_model(path, torch_device)
    autocast = autocast_context(torch_device, amp_dtype(cfg.training.amp, torch_device))
    return Checkpoint(Path(path), model, meta, cfg, torch_device, autocast)


def checkpoint_features(ckpt: Checkpoint, verbose: bool = True) -> FeatureSet:
    """The run's features, tokenized with the checkpoint's own tokenizer files (offline, cache hit)."""
    fs = prepare_features(OmegaConf.merge(ckpt.cfg, {"model": {"name": str(ckpt.path)}}), verbose=verbose)
    check_compatible(ckpt.cfg, fs, ckpt.meta["tokenizer"], None)
    return fs


def headline(task: str, metrics: dict) -> str:
    shown = []
    for key in HEADLINE[task]:
        value = metrics.get(key)
        if key in metrics:
            shown.append(f"{key} {value:.4f}" if isinstance(value, float | int) else f"{key} n/a")
    return ", ".join(shown)


def evaluate_checkpoint(ckpt: Checkpoint, fs: FeatureSet, split: str) -> EvalResult:
    return evaluate(ckpt.model, columns_from_table(fs.features[split]), fs.examples[split], ckpt.cfg,
                    device=ckpt.device, autocast=ckpt.autocast, pad_token_id=fs.meta["tokenizer"]["pad_token_id"])


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
