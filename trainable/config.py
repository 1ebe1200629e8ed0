"""Typed config of a training run: the data_prep config plus the training knobs.

``TrainConfig`` extends ``PrepConfig`` so one config file names the data, the features, the model
and the training of a run; ``validate_train`` adds the range checks types cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from data_prep.augment import AugmentConfig, validate_augment
from data_prep.config import PrepConfig, doc, validate_prep
from plumbing.errors import ConfigError

AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
PRIMARY_METRIC = {"span": "f1", "span_crf": "span_f1", "pair": "f1"}
# Validation metrics (higher is better) that may pick the checkpoint instead (training.metric).
SELECTABLE_METRICS = {
    "span": ("f1", "exact", "HasAns_f1", "best_f1"),
    "span_crf": ("span_f1", "f1", "exact"),
    "pair": ("f1", "own_top1", "own_mrr", "best_f1", "annotated_f1", "accuracy", "roc_auc", "pr_auc"),
}
RANK_METRICS = ("own_top1", "own_mrr")  # need every evidence sentence under all ten criteria


@dataclass
class TrainingConfig:
    epochs: int = doc("training epochs (at most; early stopping may end sooner)", 8)
    batch_size: int = doc("examples per micro-batch on each worker", 16)
    eval_batch_size: int = doc("examples per batch in evaluation", 64)
    grad_accum: int = doc("micro-batches accumulated per optimizer step", 1)
    lr: float = doc("peak learning rate (1e-3 suits the tiny models; pretrained encoders want ~3e-5)", 1e-3)
    weight_decay: float = doc("AdamW weight decay (not applied to biases and LayerNorm)", 0.01)
    warmup_ratio: float = doc("fraction of the optimizer steps with linear warm-up", 0.1)
    max_grad_norm: float = doc("gradient clipping norm; 0 disables clipping", 1.0)
    dropout: float | None = doc("overrides the encoder's hidden and attention dropout", None)
    amp: str = doc("mixed precision: auto (bf16 on CUDA where supported, else fp16; off on CPU) "
                   "| bf16 | fp16 (CUDA only) | off", "auto")
    compile: bool = doc("torch.compile the model (falls back to eager with a warning)", False)
    gradient_checkpointing: bool = doc("recompute activations in backward to save memory", False)
    patience: int = doc("epochs without improvement before stopping; 0 = no early stopping", 3)
    focal_gamma: float = doc("pair: focusing parameter of the focal loss (0 = weighted CE)", 2.0)
    inside_weight: float = doc("span: weight of the auxiliary loss on every answer token, summed per window "
                               "(0 = start/end loss only)", 0.5)
    n_best_size: int = doc("span: start/end candidates considered per window", 20)
    max_answer_length: int = doc("span: longest answer in tokens", 64)
    log_every: int = doc("optimizer steps between train/loss log points", 10)
    metric: str | None = doc("validation metric that picks the checkpoint, stops early and that a sweep "
                             "maximises; default: the task's primary (f1 / span_f1). pair: f1 | own_top1 | "
                             "own_mrr | best_f1 | annotated_f1 | accuracy", None)
    device: str = doc("auto | cpu | cuda", "auto")


@dataclass
class TrainConfig(PrepConfig):
    task: str = doc("span | span_crf | pair (default pair: on the demo corpus the tiny model learns it within "
                    "its default epochs; the span heads want model.name=tiny-deberta or a pretrained encoder)",
                    "pair")
    out_dir: str = doc("run directory: checkpoint, config.yaml, metrics.json, tb/", "runs/single")
    training: TrainingConfig = doc("training settings", factory=TrainingConfig)
    augment: AugmentConfig = doc("evidence-text augmentation of the train split (off by default)",
                                 factory=AugmentConfig)
    resume: str | None = doc("checkpoint directory to resume from", None)


def at_least(key: str, value, low) -> None:
    """A ConfigError naming ``key`` when ``value`` is below ``low``."""
    if value < low:
        raise ConfigError(key, f"must be at least {low}; got {value}")


def validate_train(cfg: DictConfig, *, check_hardware: bool = True) -> None:
    """Every check a user can trip before any data is loaded or model built.

    ``check_hardware=False`` skips the device checks for a driver whose workers run elsewhere
    (a sweep on a GPU cluster started from a laptop); the loop repeats them on its worker.
    """
    validate_prep(cfg)
    t = cfg.training
    for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "n_best_size",
                "max_answer_length", "log_every"):
        at_least(f"training.{key}", getattr(t, key), 1)
    for key in ("patience", "weight_decay", "max_grad_norm", "focal_gamma", "inside_weight"):
        at_least(f"training.{key}", getattr(t, key), 0)
    if not t.lr > 0:
        raise ConfigError("training.lr", f"must be > 0; got {t.lr}")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError("training.warmup_ratio", f"must be in [0, 1); got {t.warmup_ratio}")
    if t.dropout is not None and not 0 <= t.dropout < 1:
        raise ConfigError("training.dropout", f"must be in [0, 1); got {t.dropout}")
    if t.amp not in AMP_MODES:
        raise ConfigError("training.amp", f"must be one of {', '.join(AMP_MODES)}; got {t.amp!r}")
    if t.device not in DEVICES:
        raise ConfigError("training.device", f"must be one of {', '.join(DEVICES)}; got {t.device!r}")
    validate_metric(cfg)
    validate_augment(cfg.augment)
    if check_hardware:
        check_device(t)


def metric_name(cfg: DictConfig) -> str:
    """The validation metric a run is judged by: training.metric, or the task's primary."""
    return cfg.training.metric or PRIMARY_METRIC[cfg.task]


def validate_metric(cfg: DictConfig) -> None:
    check_metric_name(cfg, "training.metric", cfg.training.metric)


def check_metric_name(cfg: DictConfig, key: str, name: str | None) -> None:
    """``name`` (None: the default) is a validation metric of the task that ``key`` may rank by."""
    allowed = SELECTABLE_METRICS[cfg.task]
    if name is None:
        return
    if name not in allowed:
        raise ConfigError(key, f"for task={cfg.task} must be one of {', '.join(allowed)}; got {name!r}")
    if name in RANK_METRICS and cfg.features.eval_cross_negative_ratio != -1:
        raise ConfigError(key, f"{name} ranks each evidence sentence's criterion among all ten, so "
                               "it needs features.eval_cross_negative_ratio=-1; got "
                               f"{cfg.features.eval_cross_negative_ratio}")


def check_device(t) -> None:
    """The device and AMP asked for exist on this machine (torch imported here: a sweep driver or a
    trial's Tune actor reads this module's config classes without training anything)."""
    import torch

    cuda = torch.cuda.is_available()
    if t.device == "cuda" and not cuda:
        raise ConfigError("training.device", "cuda asked but no CUDA device is visible; use auto or cpu")
    if t.amp == "fp16" and (not cuda or t.device == "cpu"):
        raise ConfigError("training.amp", "fp16 needs a CUDA device (GradScaler); on CPU use "
                                          "training.amp=bf16 or training.amp=off")
