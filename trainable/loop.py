"""The one training loop: a Ray Train worker runs it, and so does ``python -m trainable.single``.

``train_loop(config)`` takes a ``TrainConfig``: typed, or as the plain dict that a Ray Train worker
receives. The features come loaded (``features=``) or are prepared from the cache; TensorBoard goes to
``<out_dir>/tb``, written by rank 0. Everything that differs between Ray and a plain process goes through
``trainable.session``.
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from data_prep.augment import augmented_train_features
from data_prep.featureset import FeatureSet
from data_prep.tiny import is_builtin_model
from data_prep.tokenizer import load_tokenizer, tokenizer_identity
from plumbing import storage
from plumbing.cli import typed
from trainable.batching import Batch, BucketBatchSampler, Collator, Columns, columns_from_table, prefetch
from trainable.checkpoint import load_training_state, load_weights, save_checkpoint, set_rng_state
from trainable.compatibility import check_compatible
from trainable.config import TrainConfig, metric_name, validate_train
from trainable.device import amp_dtype, autocast_context, choose_device
from trainable.losses import class_alpha
from trainable.model_pass import evaluate
from trainable.models import TaskModel, build_model
from trainable.scoring import chosen_thresholds
from trainable.session import BEST_METRIC, METRIC, LocalSession, RaySession, Session, val_key
from trainable.tensorboard import TB_DIR, TBLogger, flat_hparams

# ---------------------------------------------------------------- setup


def resolve_config(config: dict | DictConfig) -> DictConfig:
    """A typed, validated TrainConfig, from a typed one or the plain dict a Ray Train worker receives."""
    cfg = typed(TrainConfig, config)
    validate_train(cfg)
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def default_session(cfg: DictConfig) -> Session:
    """RaySession inside a Ray Train worker, else a LocalSession writing into out_dir."""
    if "ray" in sys.modules:  # never import Ray just to find out we are not in it
        import ray.train

        try:
            ray.train.get_context()
            return RaySession(cfg.out_dir, resume=cfg.resume)
        except RuntimeError:
            pass
    return LocalSession(cfg.out_dir, resume=cfg.resume)


def load_features(cfg: DictConfig, verbose: bool) -> FeatureSet:
    """The run's features from the cache (prepared there on a miss), when none were handed in."""
    from data_prep.pipeline import prepare_features

    return prepare_features(cfg, verbose=verbose)


def model_source(cfg: DictConfig, fs: FeatureSet) -> str:
    """The encoder to load: for a built-in model (tiny, tiny-deberta, minilm) its dir, else model.name."""
    return fs.meta["model"] if is_builtin_model(cfg.model.name) else cfg.model.name


# ---------------------------------------------------------------- model and optimisation


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` with symbolic batch size and length: bucketed dynamic padding gives each
    batch its own shape, and a static compile would build a graph per shape (minutes each on a GPU).
    One graph per mode (train, eval) serves them all; the CRF's sequential loop stays eager
    (every module's ``EAGER_METHODS``, e.g. ``CRF.log_likelihood``, is excluded from compilation)."""
    # Backend failures surface at the first call; let dynamo fall back to eager there too.
    torch._dynamo.config.suppress_errors = True
    for module in model.modules():
        for name in getattr(module, "EAGER_METHODS", ()):
            setattr(module, name, torch.compiler.disable(getattr(module, name)))
    try:
        return torch.compile(model, dynamic=True)
    except Exception as e:  # noqa: BLE001 - any compile failure means eager, with a warning
        warnings.warn(f"torch.compile failed ({e}); training eagerly", stacklevel=2)
        return model


def wrap_model(model: torch.nn.Module, cfg: DictConfig, device: torch.device, world_size: int) -> torch.nn.Module:
    """compile (before DDP, so DDP's hooks stay outside the graph), then DDP when distributed."""
    model.to(device)
    if cfg.training.compile:
        model = compile_model(model)
    if world_size > 1:
        if device.type == "cuda":
            import ray.train.torch

            model = ray.train.torch.prepare_model(model)
        else:  # prepare_model asserts CUDA when Ray assigned (logical) GPUs; gloo DDP on CPU
            model = DistributedDataParallel(model)
    return model


def make_optimizer(model: torch.nn.Module, cfg: DictConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and norms; fused kernels on CUDA."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "crf" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.training.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.training.lr, fused=device.type == "cuda" or None)


def accumulate(model: torch.nn.Module, micro_batches: list[dict], scaler, autocast) -> torch.Tensor:
    """Forward/backward over one accumulation window; returns the window's mean loss (detached).

    Each loss is divided by the window length so the summed gradients equal one batch of the
    window's size; DDP all-reduces only on the last micro-step (``no_sync`` elsewhere).
    """
    total = torch.zeros((), device=next(iter(micro_batches[0].values())).device)
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
        with sync:
            with autocast:
                loss = model(**batch)["loss"] / len(micro_batches)
            scaler.scale(loss).backward()
        total += loss.detach()
    return total


def optimizer_step(model, optimizer, scheduler, scaler, max_grad_norm: float) -> None:
    scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def _windows(batches, size: int):
    window = []
    for batch in batches:
        window.append(batch)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


# ---------------------------------------------------------------- the loop


@dataclass
class Progress:
    """The counters a checkpoint restores besides weights, optimizer and RNG states."""

    epoch: int = -1  # last finished epoch (0-based)
    best: float | None = None
    bad_epochs: int = 0
    step: int = 0


@dataclass
class Run:
    """Everything one training run holds, built by ``setup``."""

    cfg: Any
    config: dict  # the plain TrainConfig dict (saved with checkpoints, logged as HParams)
    session: Session
    fs: FeatureSet
    source: str  # the encoder's name or directory
    tokenizer: Any
    device: torch.device
    autocast: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    sampler: BucketBatchSampler
    collate: Collator
    state: Progress


def task_model(cfg: DictConfig, source: str, train: Columns) -> TaskModel:
    """The run's model with its training knobs; ``pair`` weighs its classes by their train frequencies.
    Seed first: the head's initial weights come from the global RNG."""
    t = cfg.training
    alpha = class_alpha(train.scalars["label"], 2) if cfg.task == "pair" else None
    return build_model(source, cfg.task, dropout=t.dropout, focal_gamma=t.focal_gamma, class_alpha=alpha,
                       gradient_checkpointing=t.gradient_checkpointing, inside_weight=t.inside_weight)


def setup(cfg: DictConfig, session: Session, features: FeatureSet | None) -> Run:
    t = cfg.training
    seed_everything(cfg.seed)
    device = choose_device(cfg, ray_worker=isinstance(session, RaySession))
    dtype = amp_dtype(t.amp, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    fs = features or load_features(cfg, verbose=session.is_main)
    source = model_source(cfg, fs)
    tokenizer = load_tokenizer(source)
    resume = session.resume_checkpoint()
    check_compatible(cfg, fs, tokenizer_identity(tokenizer), resume)

    train = columns_from_table(fs.features["train"])
    model = task_model(cfg, source, train)
    if resume:
        load_weights(model, resume)
    model = wrap_model(model, cfg, device, session.world_size)
    optimizer = make_optimizer(model, cfg, device)
    sampler = BucketBatchSampler(train.lengths, t.batch_size, seed=cfg.seed, rank=session.rank,
                                 world_size=session.world_size)
    collate = Collator(train, fs.meta["tokenizer"]["pad_token_id"],
                       pad_to_multiple_of=8 if device.type == "cuda" else 1)
    total_steps = math.ceil(len(sampler) / t.grad_accum) * t.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state = Progress()
    if resume:
        saved = load_training_state(resume)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = Progress(**saved["progress"])
        set_rng_state(saved["rng"])  # last: building the model above drew from the RNGs
    plain = OmegaConf.to_container(cfg, resolve=True)
    return Run(cfg, plain, session, fs, source, tokenizer, device, autocast_context(device, dtype), model,
               optimizer, scheduler, scaler, sampler, collate, state)


def train_step(run: Run, window: list[Batch]) -> torch.Tensor:
    """One optimizer step over an accumulation window; the window's mean loss stays on the device.

    Nothing here reads a device value on the host (with bf16 or no AMP: fp16's GradScaler checks
    for infs on the host by design), so the host runs ahead queueing the next steps.
    """
    loss = accumulate(run.model, [b.tensors for b in window], run.scaler, run.autocast)
    optimizer_step(run.model, run.optimizer, run.scheduler, run.scaler, run.cfg.training.max_grad_norm)
    return loss


def train_epoch(run: Run, epoch: int, tb: TBLogger, progress_bar: bool) -> dict[str, float]:
    """One pass over this rank's batches; returns train_loss, samples_per_s, tokens_per_s."""
    t, state = run.cfg.training, run.state
    if run.cfg.augment.mask:
        use_augmented_train(run, epoch)
    run.sampler.set_epoch(epoch)
    run.model.train()
    started = time.perf_counter()
    samples = tokens = 0
    losses: list[torch.Tensor] = []
    logged = 0
    batches = prefetch(run.sampler, run.collate, run.device)
    bar = tqdm(total=math.ceil(len(run.sampler) / t.grad_accum), desc=f"epoch {epoch + 1}/{t.epochs}",
               leave=False, disable=not (progress_bar and run.session.is_main))
    for window in _windows(batches, t.grad_accum):
        losses.append(train_step(run, window))
        state.step += 1
        samples += sum(b.samples for b in window)  # counted on the host: no device sync in the step
        tokens += sum(b.tokens for b in window)
        if state.step % t.log_every == 0:  # the only host sync for the loss
            mean = torch.stack(losses[logged:]).mean().item()
            logged = len(losses)
            tb.train_step(state.step, mean, run.scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{mean:.4f}")
        bar.update()
    bar.close()
    train_loss = torch.stack(losses).mean().item() if losses else float("nan")  # waits for the device
    elapsed = time.perf_counter() - started
    samples, tokens = _all_reduce_sum([samples, tokens], run.device, run.session.world_size)
    return {"train_loss": train_loss, "samples_per_s": samples / elapsed, "tokens_per_s": tokens / elapsed}


def use_augmented_train(run: Run, epoch: int) -> None:
    """Train on this epoch's augmented features: a new sampler (lengths changed) and collator.

    Every rank builds (or reads from the cache) the same table, seeded by the run's seed and the
    epoch, so the ranks' shards still partition it; validation keeps the original features.
    """
    train = columns_from_table(augmented_train_features(run.fs, run.cfg.augment, run.cfg.seed, epoch,
                                                        run.tokenizer, run.cfg.cache_dir))
    old = run.sampler
    run.sampler = BucketBatchSampler(train.lengths, old.batch_size, seed=old.seed, rank=old.rank,
                                     world_size=old.world_size, chunk_batches=old.chunk_batches)
    run.collate = Collator(train, run.collate.pad_token_id, pad_to_multiple_of=run.collate.multiple)


def end_epoch(run: Run, epoch: int, train_stats: dict[str, float], tb: TBLogger) -> bool:
    """Evaluate, report (with a checkpoint when the metric improved); True when patience ran out."""
    cfg, state, session = run.cfg, run.state, run.session
    result = evaluate(run.model, columns_from_table(run.fs.features["val"]), run.fs.examples["val"], cfg,
                      device=run.device, autocast=run.autocast,
                      pad_token_id=run.fs.meta["tokenizer"]["pad_token_id"], rank=session.rank,
                      world_size=session.world_size)
    metric = result.scalars[metric_name(cfg)]
    improved = state.best is None or metric > state.best
    state.epoch = epoch
    state.best = metric if improved else state.best
    state.bad_epochs = 0 if improved else state.bad_epochs + 1
    report = {"epoch": epoch + 1, METRIC: metric, BEST_METRIC: state.best,
              **{val_key(k): v for k, v in result.scalars.items()}, val_key("loss"): result.loss,
              "lr": run.scheduler.get_last_lr()[0], **train_stats}
    tb.epoch(epoch + 1, report, state.best)
    if improved and session.is_main:
        with tempfile.TemporaryDirectory(prefix="trainable-ckpt-") as tmp:
            save_run_checkpoint(run, tmp, metric, {**chosen_thresholds(cfg.task, result.metrics),
                                                   "val": result.scalars})
            session.report(report, tmp)
    else:
        session.report(report)
    patience = cfg.training.patience
    return bool(patience) and state.bad_epochs >= patience


def save_run_checkpoint(run: Run, path: str, metric: float, extra: dict | None = None) -> None:
    """The checkpoint with its meta: task, tokenizer, epoch, metric and ``extra`` (the thresholds chosen
    on validation, the validation scalars that ``trainable.predict`` prints in its header)."""
    training_state = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                      "scaler": run.scaler.state_dict(), "progress": asdict(run.state)}
    meta = {"task": run.cfg.task, "tokenizer": run.fs.meta["tokenizer"], "model": run.source,
            "epoch": run.state.epoch + 1, "metric_name": metric_name(run.cfg), METRIC: metric, **(extra or {})}
    save_checkpoint(path, model=run.model, tokenizer=run.tokenizer, config=run.config, meta=meta,
                    training_state=training_state)


def _all_reduce_sum(values: list[float], device: torch.device, world_size: int) -> list[float]:
    if world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def train_loop(config: dict | DictConfig, session: Session | None = None, progress_bar: bool = False,
               features: FeatureSet | None = None) -> None:
    """Train, evaluate every epoch, report, checkpoint on improvement, stop early on patience.

    ``session`` defaults to Ray's inside a Ray Train worker, else a LocalSession on out_dir;
    ``features`` (already loaded) skips prepare_features.
    """
    cfg = resolve_config(config)
    session = session or default_session(cfg)
    started = time.perf_counter()
    run = setup(cfg, session, features)
    setup_s: float | None = time.perf_counter() - started  # features, model, optimizer: in the first report
    tb = TBLogger(storage.join(str(cfg.out_dir), TB_DIR) if session.is_main else None, flat_hparams(run.config))
    try:
        for epoch in range(run.state.epoch + 1, run.cfg.training.epochs):
            stats = train_epoch(run, epoch, tb, progress_bar)
            if setup_s is not None:  # where a run's start-up goes (bench/sweep.py --startup)
                stats["setup_s"], setup_s = setup_s, None
            if end_epoch(run, epoch, stats, tb):
                break
    finally:
        tb.close()
