"""A checkpoint directory: everything needed to resume training or to use the model alone.

    model.pt             the task model's state dict (no DDP ``module.`` / compile ``_orig_mod.``)
    training_state.pt    optimizer, scheduler, GradScaler, epoch, best metric, patience, RNG states
    config.json          the encoder's Hugging Face config (rebuilds the architecture offline)
    tokenizer files      the tokenizer the features were built with (save_pretrained)
    train_config.yaml    the run's resolved TrainConfig
    meta.json            task, tokenizer identity (fingerprint), source model, epoch, metric (name and
                         value); pair: evidence_threshold, the F1-best probability threshold on validation
                         at that epoch (checkpoints written before it lack the key; predict then uses 0.5)

Evaluation and prediction load it with ``load_model``; the loop resumes with ``load_training_state``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from plumbing.errors import UserError
from trainable.models import TaskModel, build_model

# 2: the span head has a third output (inside-the-answer logits), so a format-1 span model no longer loads.
# 3: pair is the family's ...ForSequenceClassification (its pooler or classification head), not a linear
#    layer over the raw [CLS] state.
FORMAT_VERSION = 3
MODEL_FILE = "model.pt"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "train_config.yaml"
REQUIRED = (META_FILE, MODEL_FILE, "config.json", CONFIG_FILE)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def _clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            k = k.replace(prefix, "")
        out[k] = v
    return out


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, model: nn.Module, tokenizer: Any, config: dict, meta: dict,
                    training_state: dict) -> Path:
    """Write a complete checkpoint directory (``training_state``: optimizer/scheduler/scaler
    state dicts and counters; the RNG states are added here)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    plain = unwrap(model)
    torch.save(_clean(plain.state_dict()), path / MODEL_FILE)
    torch.save({**training_state, "rng": rng_state()}, path / STATE_FILE)
    plain.base_model.config.save_pretrained(path)  # pair: the classifier's (the same object)
    tokenizer.save_pretrained(path)
    (path / CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    (path / META_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=1))
    return path


def read_meta(path: str | Path) -> dict:
    """The checkpoint's meta.json, after checking the directory is a complete checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint '{path}' does not exist or is not a directory; give the "
                        "checkpoint directory of a run (e.g. runs/single/checkpoint)")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise UserError(f"checkpoint '{path}' is incomplete: missing {', '.join(missing)}. Give a "
                        "directory written by trainable (it holds meta.json, model.pt, config.json, "
                        f"{CONFIG_FILE} and the tokenizer files)")
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"checkpoint '{path}' has format {meta.get('format')}, this version reads format "
                        f"{FORMAT_VERSION} (the model layout changed); train it again with this version")
    return meta


def read_config(path: str | Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(path) / CONFIG_FILE), resolve=True)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TaskModel, dict, dict]:
    """(model in eval mode, meta, the run's config) from a checkpoint, offline."""
    meta = read_meta(path)
    config = read_config(path)
    model = build_model(str(path), meta["task"], pretrained=False,
                        focal_gamma=config["training"]["focal_gamma"],
                        inside_weight=config["training"]["inside_weight"])
    model.load_state_dict(torch.load(Path(path) / MODEL_FILE, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta, config


def load_weights(model: nn.Module, path: str | Path) -> None:
    state = torch.load(Path(path) / MODEL_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state)


def load_training_state(path: str | Path) -> dict:
    """Optimizer/scheduler/scaler state and counters; our own file, so full unpickling is safe."""
    state_file = Path(path) / STATE_FILE
    if not state_file.is_file():
        raise UserError(f"checkpoint '{path}' has no {STATE_FILE}: it can be evaluated but not resumed")
    return torch.load(state_file, map_location="cpu", weights_only=False)
