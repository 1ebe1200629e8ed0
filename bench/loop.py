"""Benchmark of the train loop: what trainable and Ray cost over a plain PyTorch loop, and what
dynamic padding and torch.compile buy, on the tiny model and the demo features.

    HF_HUB_OFFLINE=1 python bench/loop.py [--steps 24] [--batch-size 16] [--task span] [--threads N]

Every throughput figure trains over the same rows of the train split (the first steps x
batch-size feature rows, so each epoch is ``--steps`` optimizer steps) from the same initial
weights, for ``--epochs`` epochs, and reports its fastest epoch (the machine may be shared):
  (a) a plain loop: forward, backward, AdamW step over the batches trainable's sampler and
      collator produce for each epoch (collated beforehand);
  (b) ``train_loop`` as ``python -m trainable.single`` runs it (LocalSession, TensorBoard on, no
      progress bar); the samples_per_s it reports per epoch (the training pass only: no set-up,
      evaluation or checkpoint);
  (c) the same under a 1-worker ``TorchTrainer`` on a local Ray; the samples_per_s the worker
      reports per epoch (read from its TensorBoard files), so Ray's start-up is excluded.
A warm-up run (discarded) comes first, so one-time library initialisation hits none of them.
Prints figures only; nothing is asserted.
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

from data_prep.cli import parse_config
from data_prep.featureset import FeatureSet
from trainable.batching import PAD, BucketBatchSampler, Collator, columns_from_table
from trainable.config import TrainConfig
from trainable.loop import task_model, train_loop
from trainable.session import LocalSession

VAL_EXAMPLES = 16  # validation after each epoch is not timed; keep it short
COMPILE_WARMUP = 2  # steps before timing: the first compiled step compiles forward and backward
RATE_TAGS = ("train/epoch_samples_per_s", "train/epoch_tokens_per_s")  # the loop's TensorBoard, per epoch

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


def epoch_batches(fs: FeatureSet, cfg, epoch: int, chunk_batches: int = 50) -> Batches:
    """An epoch's batches exactly as the loop builds them (same sampler seed, collator, padding)."""
    cols = columns_from_table(fs.features["train"])
    sampler = BucketBatchSampler(cols.lengths, cfg.training.batch_size, seed=cfg.seed, chunk_batches=chunk_batches)
    sampler.set_epoch(epoch)
    collate = Collator(cols, fs.meta["tokenizer"]["pad_token_id"])
    return [collate(rows) for rows in sampler]


def padded_to(batch: dict[str, torch.Tensor], width: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """``batch`` padded to ``width`` tokens (fixed max_length padding)."""
    values = {"input_ids": pad_token_id, "attention_mask": 0, **{k: v for k, v in PAD.items() if v is not None}}
    out = {}
    for name, tensor in batch.items():
        extra = width - tensor.shape[1] if tensor.ndim == 2 else 0
        out[name] = torch.nn.functional.pad(tensor, (0, extra), value=values[name]) if extra else tensor
    return out


def counts(batches: Batches) -> tuple[int, int, int]:
    """(samples, real tokens, padded token slots)."""
    samples = sum(len(b["input_ids"]) for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return samples, real, sum(b["input_ids"].numel() for b in batches)


# ---------------------------------------------------------------- loops


def fresh_model(source: str, fs: FeatureSet, cfg) -> torch.nn.Module:
    """The model the loop would build, with the loop's initial weights (seeded the same way)."""
    torch.manual_seed(cfg.seed)
    return task_model(cfg, source, columns_from_table(fs.features["train"]))


def plain_epochs(model: torch.nn.Module, epochs: list[Batches], lr: float, warmup: Batches = ()) -> list[float]:
    """Seconds per epoch of forward/backward/AdamW over each list of batches (``warmup`` untimed first)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()

    def step(batch):
        model(**batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in warmup:
        step(batch)
    seconds = []
    for batches in epochs:
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def reported_rates(tb_dir: Path) -> tuple[float, float]:
    """(samples/s, tokens/s) of the loop's fastest epoch, from its TensorBoard files."""
    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    samples, tokens = ([e.value for e in events.Scalars(tag)] for tag in RATE_TAGS)
    fastest = max(range(len(samples)), key=samples.__getitem__)
    return samples[fastest], tokens[fastest]


def trainable_rates(config: dict, fs: FeatureSet, out: Path) -> tuple[float, float]:
    """Fastest-epoch (samples/s, tokens/s) of ``train_loop`` in this process, as trainable.single runs it."""
    train_loop({**config, "out_dir": str(out), "tb_dir": str(out / "tb")}, session=LocalSession(out), features=fs)
    return reported_rates(out / "tb")


def _torch_threads() -> int:
    return torch.get_num_threads()


def ray_rates(config: dict, fs: FeatureSet, out: Path, threads: int) -> tuple[tuple[float, float], int]:
    """Fastest-epoch (samples/s, tokens/s) of the loop in a 1-worker TorchTrainer, and a Ray worker's threads."""
    import ray
    from ray.train import RunConfig

    from trainable.ray_train import build_trainer

    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # OMP_NUM_THREADS: a Ray worker would otherwise get torch threads from its CPU reservation.
    ray.init(address="local", num_cpus=threads + 1, include_dashboard=True, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}})
    try:
        worker_threads = ray.get(ray.remote(_torch_threads).options(num_cpus=threads).remote())
        loop_config = {**config, "out_dir": str(out), "tb_dir": str(out / "tb")}
        trainer = build_trainer(loop_config, ray.put(fs), num_workers=1, use_gpu=False,
                                resources_per_worker={"CPU": threads},
                                run_config=RunConfig(name="bench", storage_path=str(out / "storage")))
        result = trainer.fit()
        if result.error is not None:
            raise SystemExit(f"the TorchTrainer run failed: {result.error}")
        return reported_rates(out / "tb"), worker_threads
    finally:
        ray.shutdown()


def compile_rates(make_model, batches: Batches, lr: float, rounds: int) -> tuple[float, float, float]:
    """(eager, compiled) samples/s, fastest of ``rounds`` after warm-up, and the compiling warm-up's seconds."""
    warmup, timed = batches[:COMPILE_WARMUP], batches[COMPILE_WARMUP:]
    samples = counts(timed)[0]
    eager = min(plain_epochs(make_model(), [timed] * rounds, lr, warmup=warmup))
    compiled = torch.compile(make_model(), dynamic=False)
    start = time.perf_counter()
    plain_epochs(compiled, [warmup], lr)
    compiling = time.perf_counter() - start
    fastest = min(plain_epochs(compiled, [timed] * rounds, lr))
    return samples / eager, samples / fastest, compiling


# ---------------------------------------------------------------- report


def line(name: str, rate: float, tokens: float | None = None, *, base: float, note: str = "") -> str:
    shown = f"{tokens:9.0f} real tokens/s" if tokens is not None else " " * 23  # the loop counts real tokens
    return f"  {name:<40} {rate:8.1f} samples/s {shown} {rate / base:6.2f}x {note}".rstrip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the fastest is reported")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--task", default="span", choices=("span", "span_crf", "pair"))
    parser.add_argument("--threads", type=int, default=1, help=(
        "torch intra-op threads, here and in the Ray worker. Default 1: the tiny model's ops are too small "
        "to gain from intra-op threads, and on a shared machine OpenMP's thread hand-off costs far more "
        "than it brings (seen: 2 threads 5-10x slower than 1 at load 3.5 on 2 cores)"))
    parser.add_argument("--posts", type=int, default=200, help="demo corpus size")
    parser.add_argument("--max-length", type=int, default=256, help="features.max_length (the config default)")
    parser.add_argument("--compile-steps", type=int, default=8, help="timed steps for eager vs compiled")
    parser.add_argument("--no-ray", action="store_true", help="skip (c)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    if args.steps < COMPILE_WARMUP + args.compile_steps and not args.no_compile:
        parser.error(f"--steps must be at least {COMPILE_WARMUP + args.compile_steps} (warm-up + --compile-steps)")
    return args


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from data_prep.pipeline import prepare_features

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        tmp = Path(tmp)
        cfg = parse_config(TrainConfig, [
            f"task={args.task}", f"cache_dir={tmp / 'cache'}", f"data.demo_posts={args.posts}",
            f"features.max_length={args.max_length}", f"training.batch_size={args.batch_size}",
            f"training.epochs={args.epochs}", "training.patience=0", "training.device=cpu"], "bench", "")
        full = prepare_features(cfg, verbose=False)
        fs = subset(full, args.steps * args.batch_size)
        config = OmegaConf.to_container(cfg, resolve=True)
        source, pad_id, lr = full.meta["model"], full.meta["tokenizer"]["pad_token_id"], cfg.training.lr
        epochs = [epoch_batches(fs, cfg, e) for e in range(args.epochs)]
        samples, real, padded = counts(epochs[0])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"torch {torch.__version__} on {platform.machine()}, {os.cpu_count()} CPUs (load average {load}); "
              f"torch threads: intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}")
        print(f"task {args.task}, tiny model, demo {args.posts} posts, max_length {args.max_length}, batch "
              f"{args.batch_size}: {len(epochs[0])} optimizer steps per epoch ({samples} samples, {real} real "
              f"tokens), fastest of {args.epochs} epochs")

        plain_epochs(fresh_model(source, fs, cfg), [epochs[0][: max(3, len(epochs[0]) // 4)]], lr)  # warm-up
        base_s = min(plain_epochs(fresh_model(source, fs, cfg), epochs, lr))
        base = samples / base_s
        print("\nthroughput, same batches and steps, start-up excluded (ratio to the plain loop):")
        print(line("(a) plain PyTorch loop", base, real / base_s, base=base))
        print(line("(b) trainable.single's loop", *trainable_rates(config, fs, tmp / "single"), base=base))
        if not args.no_ray:
            (rate, tokens), worker_threads = ray_rates(config, fs, tmp / "ray", args.threads)
            print(line("(c) the loop in a 1-worker TorchTrainer", rate, tokens=tokens, base=base,
                       note=f"(Ray worker torch threads: {worker_threads})"))

        print("\npadding, plain loop on the same rows and steps (slots = padded token slots / real tokens):")
        print(line(f"bucketed dynamic (slots {padded / real:.2f})", base, real / base_s, base=base))
        shuffled = [epoch_batches(fs, cfg, e, chunk_batches=1) for e in range(args.epochs)]  # no bucketing
        seconds = min(plain_epochs(fresh_model(source, fs, cfg), shuffled, lr))
        print(line(f"random dynamic (slots {counts(shuffled[0])[2] / real:.2f})", samples / seconds,
                   real / seconds, base=base))
        fixed = [[padded_to(b, args.max_length, pad_id) for b in batches] for batches in epochs]
        seconds = min(plain_epochs(fresh_model(source, fs, cfg), fixed, lr))
        print(line(f"fixed max_length (slots {counts(fixed[0])[2] / real:.2f})", samples / seconds,
                   real / seconds, base=base))

        if not args.no_compile:
            run_compile(args, fixed[0], lambda: fresh_model(source, fs, cfg), lr)


def run_compile(args: argparse.Namespace, fixed: Batches, make_model, lr: float) -> None:
    batches = [b for b in fixed if len(b["input_ids"]) == args.batch_size][: COMPILE_WARMUP + args.compile_steps]
    print(f"\ntorch.compile on CPU (inductor, dynamic=False) on fixed-shape [{args.batch_size}, {args.max_length}] "
          f"batches, so it compiles once and never per shape;\n  {len(batches) - COMPILE_WARMUP} timed steps after "
          f"{COMPILE_WARMUP} warm-up steps, fastest of 2 rounds:")
    try:
        eager, compiled, compiling = compile_rates(make_model, batches, lr, rounds=2)
    except Exception as e:  # noqa: BLE001 - a compiler failure is a result to report here
        print(f"  torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        return
    from torch._dynamo.utils import counters  # what dynamo did: one graph, no breaks, means no per-shape work

    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    print(line("eager", eager, base=eager))
    print(line("compiled", compiled, base=eager, note=f"({graphs} graph, {breaks} graph breaks; compile + "
                                                  f"{COMPILE_WARMUP} warm-up steps {compiling:.0f} s, less when "
                                                  "inductor's on-disk cache holds the graph)"))


if __name__ == "__main__":
    main()
