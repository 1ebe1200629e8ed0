"""Benchmark of the train loop: what trainable, torch.compile and Ray cost or buy over a plain PyTorch loop.

    HF_HUB_OFFLINE=1 python bench/loop.py [--device cpu|cuda] [--model tiny|minilm|DIR] [--batch-sizes 16,64]
                                          [--task span] [--steps 24] [--threads N] [--padding]

For each batch size, every figure trains over the same rows of the demo's train split (the first
steps x batch-size feature rows, so an epoch is ``--steps`` optimizer steps) from the same initial
weights, with the loop's AMP (bf16 on CUDA where supported, none on CPU) and optimizer (fused
AdamW on CUDA), and reports its fastest epoch (the machine may be shared):
  (a) plain eager: forward, backward, AdamW step over the batches trainable's sampler and collator
      produce, collated and copied to the device beforehand (the loop cannot beat that);
  (b) plain compiled: (a) under ``torch.compile(dynamic=True)``, the first epoch compiling (untimed);
  (c) ``train_loop`` as ``python -m trainable.single`` runs it (LocalSession, TensorBoard on), its
      reported samples_per_s per epoch (the training pass only: no set-up or evaluation);
  (d) (c) with ``training.compile=true``; the first epoch (compiling) is shown apart;
  (e) (c) under a 1-worker ``TorchTrainer`` on a local Ray, from the worker's TensorBoard files.
Goals, as ratios in one run: (c)/(a) >= 0.95, (d)/(c) >= 1.5 (on a GPU; inductor's CPU kernels
gain little on small models), (e)/(c) >= 0.95. ``--padding`` adds the plain loop with random
dynamic padding and with fixed max_length padding. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_prep.featureset import FeatureSet
from plumbing.cli import parse_config
from trainable.batching import PAD, BucketBatchSampler, Collator, columns_from_table
from trainable.config import TrainConfig
from trainable.device import amp_dtype, autocast_context
from trainable.loop import compile_model, task_model, train_loop
from trainable.session import LocalSession
from trainable.tensorboard import TB_DIR

VAL_EXAMPLES = 16  # validation after each epoch is not timed; keep it short
RATE_TAG = "train/epoch_samples_per_s"  # the loop's TensorBoard, per epoch

Batches = list[dict[str, torch.Tensor]]


# ---------------------------------------------------------------- data


def subset(fs: FeatureSet, train_rows: int) -> FeatureSet:
    """The first ``train_rows`` train feature rows and the features of the first val examples."""
    val_examples = fs.examples["val"].slice(0, VAL_EXAMPLES)
    keep = pc.is_in(fs.features["val"].column("example_id"), value_set=val_examples.column("example_id"))
    return FeatureSet(task=fs.task, meta=fs.meta,
                      features={"train": fs.features["train"].slice(0, train_rows),
                                "val": fs.features["val"].filter(keep)},
                      examples={"train": fs.examples["train"], "val": val_examples})


def epoch_batches(fs: FeatureSet, cfg, epoch: int, device: torch.device, chunk_batches: int = 50) -> Batches:
    """An epoch's batches exactly as the loop builds them (same sampler seed, collator, padding), on ``device``."""
    cols = columns_from_table(fs.features["train"])
    sampler = BucketBatchSampler(cols.lengths, cfg.training.batch_size, seed=cfg.seed, chunk_batches=chunk_batches)
    sampler.set_epoch(epoch)
    collate = Collator(cols, fs.meta["tokenizer"]["pad_token_id"], pad_to_multiple_of=8 if device.type == "cuda" else 1)
    return [{k: v.to(device) for k, v in collate(rows).items()} for rows in sampler]


def padded_to(batch: dict[str, torch.Tensor], width: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """``batch`` padded to ``width`` tokens (fixed max_length padding)."""
    values = {"input_ids": pad_token_id, "attention_mask": 0, **{k: v for k, v in PAD.items() if v is not None}}
    out = {}
    for name, tensor in batch.items():
        extra = width - tensor.shape[1] if tensor.ndim == 2 else 0
        out[name] = torch.nn.functional.pad(tensor, (0, extra), value=values[name]) if extra else tensor
    return out


def padding_slots(batches: Batches) -> float:
    """Padded token slots per real token."""
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return sum(b["input_ids"].numel() for b in batches) / real


# ---------------------------------------------------------------- loops


class Plain:
    """The plain loop: one model, its AdamW, the loop's autocast; ``epoch(batches)`` -> seconds."""

    def __init__(self, source: str, fs: FeatureSet, cfg, device: torch.device, compiled: bool = False):
        torch.manual_seed(cfg.seed)
        self.model = task_model(cfg, source, columns_from_table(fs.features["train"])).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.training.lr,
                                           fused=device.type == "cuda" or None)
        self.autocast = autocast_context(device, amp_dtype(cfg.training.amp, device))
        self.forward = compile_model(self.model) if compiled else self.model
        self.device = device
        self.model.train()

    def epoch(self, batches: Batches) -> float:
        start = time.perf_counter()
        for batch in batches:
            with self.autocast:
                loss = self.forward(**batch)["loss"]
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def reported_rates(tb_dir: Path) -> list[float]:
    """samples/s of each epoch of the loop, from its TensorBoard files."""
    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(RATE_TAG)]


def loop_rates(config: dict, fs: FeatureSet, out: Path) -> list[float]:
    """Per-epoch samples/s of ``train_loop`` in this process, as trainable.single runs it."""
    train_loop({**config, "out_dir": str(out)}, session=LocalSession(out), features=fs)
    return reported_rates(out / TB_DIR)


def _torch_threads() -> int:
    return torch.get_num_threads()


def ray_rates(config: dict, fs: FeatureSet, out: Path, threads: int, gpus: int) -> tuple[list[float], int]:
    """Per-epoch samples/s of the loop in a 1-worker TorchTrainer, and the Ray worker's torch threads."""
    import ray
    from ray.train import RunConfig

    from trainable.ray_train import build_trainer

    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # OMP_NUM_THREADS: a Ray worker would otherwise get torch threads from its CPU reservation.
    ray.init(address="local", num_cpus=threads + 1, num_gpus=gpus, include_dashboard=True, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}})
    try:
        worker_threads = ray.get(ray.remote(_torch_threads).options(num_cpus=threads).remote())
        per_worker = {"CPU": threads, **({"GPU": 1} if gpus else {})}
        trainer = build_trainer({**config, "out_dir": str(out)}, ray.put(fs),
                                num_workers=1, use_gpu=bool(gpus), resources_per_worker=per_worker,
                                run_config=RunConfig(name="bench", storage_path=str(out / "storage")))
        result = trainer.fit()
        if result.error is not None:
            raise SystemExit(f"the TorchTrainer run failed: {result.error}")
        return reported_rates(out / TB_DIR), worker_threads
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- report


def line(name: str, samples_per_s: float, batch_size: int, *, base: float | None = None, note: str = "") -> str:
    ratio = f"{samples_per_s / base:6.2f}x" if base else " " * 7
    return (f"  {name:<44} {samples_per_s / batch_size:8.1f} steps/s {samples_per_s:9.1f} samples/s "
            f"{ratio} {note}").rstrip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default="tiny", help="model.name: tiny, tiny-deberta, minilm or a local directory")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated; default 16,64 on CUDA and 16 on CPU")
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement; the fastest is reported")
    parser.add_argument("--task", default="span", choices=("span", "span_crf", "pair"))
    parser.add_argument("--threads", type=int, default=1, help=(
        "torch intra-op threads, here and in the Ray worker. Default 1: the tiny model's ops are too small "
        "to gain from intra-op threads, and on a shared machine OpenMP's thread hand-off costs far more "
        "than it brings (seen: 2 threads 5-10x slower than 1 at load 3.5 on 2 cores)"))
    parser.add_argument("--posts", type=int, default=200, help="demo corpus size")
    parser.add_argument("--max-length", type=int, default=256, help="features.max_length (the config default)")
    parser.add_argument("--cache-dir", default=None, help="features/model cache (default: a temporary dir)")
    parser.add_argument("--no-ray", action="store_true", help="skip (e)")
    parser.add_argument("--no-compile", action="store_true", help="skip (b) and (d)")
    parser.add_argument("--padding", action="store_true", help="add random dynamic and fixed max_length padding")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    default_sizes = "16,64" if args.device == "cuda" else "16"
    args.batch_sizes = [int(b) for b in (args.batch_sizes or default_sizes).split(",")]
    return args


def bench_batch_size(args: argparse.Namespace, batch_size: int, tmp: Path) -> None:
    from data_prep.pipeline import prepare_features

    device = torch.device(args.device)
    cfg = parse_config(TrainConfig, [
        f"task={args.task}", f"cache_dir={args.cache_dir or tmp / 'cache'}", f"model.name={args.model}",
        f"data.demo_posts={args.posts}", f"features.max_length={args.max_length}",
        f"training.batch_size={batch_size}", f"training.epochs={args.epochs}", "training.patience=0",
        f"training.device={args.device}", *(["training.lr=3e-5"] if args.model != "tiny" else [])], "bench", "")
    full = prepare_features(cfg, verbose=False)
    fs = subset(full, args.steps * batch_size)
    config = OmegaConf.to_container(cfg, resolve=True)
    source = full.meta["model"]
    epochs = [epoch_batches(fs, cfg, e, device) for e in range(args.epochs)]
    print(f"\nbatch {batch_size}: {len(epochs[0])} optimizer steps per epoch, {padding_slots(epochs[0]):.2f} padded "
          f"slots per real token, fastest of {args.epochs} epochs")

    plain = Plain(source, fs, cfg, device)
    plain.epoch(epochs[0][: max(3, len(epochs[0]) // 4)])  # warm-up: library and allocator initialisation
    base = fs.features["train"].num_rows / min(plain.epoch(b) for b in epochs)
    print(line("(a) plain eager loop", base, batch_size))
    compiled_loop = None
    if not args.no_compile:
        plain_c = Plain(source, fs, cfg, device, compiled=True)
        first = plain_c.epoch(epochs[0])
        rate = fs.features["train"].num_rows / min(plain_c.epoch(b) for b in epochs)
        print(line("(b) plain compiled loop", rate, batch_size, base=base, note=f"vs (a); first epoch {first:.1f} s"))
    loop = max(loop_rates(config, fs, tmp / f"single-{batch_size}"))
    print(line("(c) trainable.single's loop", loop, batch_size, base=base, note="vs (a), goal >= 0.95"))
    if not args.no_compile:
        compiled_cfg = {**config, "training": {**config["training"], "compile": True, "epochs": args.epochs + 1}}
        torch._dynamo.reset()
        rates = loop_rates(compiled_cfg, fs, tmp / f"compiled-{batch_size}")
        compiled_loop = max(rates[1:])
        payback = f"first (compiling) epoch {fs.features['train'].num_rows / rates[0]:.1f} s"
        print(line("(d) trainable.single's loop, compiled", compiled_loop, batch_size, base=loop,
                   note=f"vs (c), goal >= 1.5 on a GPU; {payback}"))
    if not args.no_ray:
        rates, worker_threads = ray_rates(config, fs, tmp / f"ray-{batch_size}", args.threads,
                                          gpus=int(device.type == "cuda"))
        print(line("(e) the loop in a 1-worker TorchTrainer", max(rates), batch_size, base=loop,
                   note=f"vs (c), goal >= 0.95 (Ray worker torch threads: {worker_threads})"))
    if args.padding:
        bench_padding(args, fs, cfg, source, epochs, base, batch_size, device)


def bench_padding(args, fs: FeatureSet, cfg, source: str, epochs: list[Batches], base: float, batch_size: int,
                  device: torch.device) -> None:
    """The plain loop with no length bucketing, and with fixed max_length padding (vs (a))."""
    rows = fs.features["train"].num_rows
    shuffled = [epoch_batches(fs, cfg, e, device, chunk_batches=1) for e in range(args.epochs)]
    rate = rows / min(Plain(source, fs, cfg, device).epoch(b) for b in shuffled)
    print(line(f"plain, random dynamic padding ({padding_slots(shuffled[0]):.2f} slots)", rate, batch_size, base=base))
    pad_id = fs.meta["tokenizer"]["pad_token_id"]
    fixed = [[padded_to(b, args.max_length, pad_id) for b in batches] for batches in epochs]
    rate = rows / min(Plain(source, fs, cfg, device).epoch(b) for b in fixed)
    print(line(f"plain, fixed max_length ({padding_slots(fixed[0]):.2f} slots)", rate, batch_size, base=base))


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    gpu = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(f"torch {torch.__version__} on {platform.machine()}, {os.cpu_count()} CPUs (load average {load}){gpu}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"task {args.task}, model {args.model}, demo {args.posts} posts, max_length {args.max_length}, "
          f"device {args.device}; ratios in the last column")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        for batch_size in args.batch_sizes:
            bench_batch_size(args, batch_size, Path(tmp))


if __name__ == "__main__":
    main()
