"""Where a run computes and in which precision: one choice for training and for inference alike."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from omegaconf import DictConfig

from plumbing.errors import UserError
from trainable.config import check_device


def choose_device(cfg: DictConfig, ray_worker: bool = False) -> torch.device:
    """CUDA only when this process really sees one (Ray's get_device says cuda:0 on CPU nodes)."""
    check_device(cfg.training)
    if cfg.training.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if ray_worker:  # the GPU Ray assigned to this worker
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cuda")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """auto: bf16 on CUDA where supported, else fp16; off on CPU (CPU bf16 only when asked)."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if mode == "bf16":
            raise UserError("training.amp=bf16: this GPU has no bf16 support; use training.amp=fp16 or off")
        return torch.float16
    return torch.bfloat16 if mode == "bf16" else None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
