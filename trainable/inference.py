"""A trained checkpoint put to use: loaded for inference with its run's config, its features rebuilt
with its own tokenizer, scored on a split.

``trainable.evaluate``, ``trainable.predict``, ``trainable.single`` and the sweep's final test all
load and score checkpoints this one way, so their numbers agree with what training reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_prep.featureset import FeatureSet
from data_prep.pipeline import prepare_features
from data_prep.tokenizer import load_tokenizer, tokenizer_identity
from plumbing.cli import typed
from plumbing.errors import ConfigError, UserError
from plumbing.jsonio import write_json
from trainable.batching import columns_from_table
from trainable.checkpoint import CONFIG_FILE, load_model, read_config, read_meta
from trainable.compatibility import check_compatible
from trainable.config import DEVICES, TrainConfig, validate_train
from trainable.device import amp_dtype, autocast_context, choose_device
from trainable.model_pass import EvalResult, evaluate
from trainable.models import TaskModel
from trainable.session import TEST_METRICS

PREDICTIONS_FILE = "predictions.jsonl"  # what trainable.evaluate and trainable.predict write
HEADLINE = {
    "span": ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"),
    "span_crf": ("span_precision", "span_recall", "span_f1", "exact", "f1"),
    "pair": ("precision", "recall", "f1", "roc_auc", "pr_auc", "accuracy"),
}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model ready for inference and the run config it was trained with."""

    path: Path
    model: TaskModel
    meta: dict
    cfg: DictConfig  # the run's TrainConfig, with the caller's overrides applied
    device: torch.device
    autocast: Any


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


def checkpoint_config(path: str | Path, *overrides: dict) -> DictConfig:
    """The checkpoint's TrainConfig (train_config.yaml) merged with ``overrides`` and validated."""
    try:
        cfg = typed(TrainConfig, read_config(path), *overrides)
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
    cfg = checkpoint_config(path, overrides or {}, {"training": {"device": device}})
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


def test_best(cfg: DictConfig, fs, checkpoint: Path, out: Path) -> dict:
    """The best checkpoint on the test split, loaded and scored as ``trainable.evaluate`` does."""
    ckpt = load_checkpoint(checkpoint, device=cfg.training.device)
    result = evaluate_checkpoint(ckpt, fs, "test")
    metrics = {"checkpoint_epoch": ckpt.meta["epoch"], "loss": result.loss, **result.metrics}
    write_json(out / TEST_METRICS, metrics)
    return metrics




def checkpoint_tokenizer(ckpt: Checkpoint):
    """The tokenizer files saved with the checkpoint, which must be the ones the model was trained with."""
    tokenizer = load_tokenizer(str(ckpt.path))
    if tokenizer_identity(tokenizer)["fingerprint"] != ckpt.meta["tokenizer"]["fingerprint"]:
        raise UserError(f"checkpoint '{ckpt.path}': its tokenizer files differ from the tokenizer the model was "
                        f"trained with ('{ckpt.meta['tokenizer']['name_or_path']}'; fingerprints differ). Restore "
                        "the checkpoint's original tokenizer files (or use an untouched copy of the checkpoint)")
    return tokenizer

