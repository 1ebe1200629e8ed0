"""Benchmark of evidence augmentation: what re-augmenting and re-tokenizing the train split costs
per training batch, next to one training step of the tiny model, on the demo features.

    HF_HUB_OFFLINE=1 python bench/aug.py [--tasks pair span] [--batch-size 16] [--mask 15] [--threads 1]

For each task it times, fastest of ``--rounds``:
  (a) augmentation + re-tokenization of the whole train split for one epoch (what the loop does
      at the start of an augmented epoch on a cache miss: ``featurize_augmented``), and the
      same read back from the feature cache (a cache hit: every later run with the same seed);
  (b) one optimizer step (forward, backward, AdamW) of the tiny model on real batches of
      ``--batch-size`` train rows, as the loop collates them.
Both are divided per training batch (epoch cost / batches per epoch), so "share" is the fraction
of an epoch's time that augmentation adds when it runs in line with training (it is not
overlapped with the steps). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from data_prep.augment import AugmentConfig, augmented_train_features, featurize_augmented, signature
from data_prep.tokenizer import load_tokenizer
from plumbing.cli import parse_config
from trainable.batching import BucketBatchSampler, Collator, columns_from_table
from trainable.config import TrainConfig
from trainable.loop import task_model


def fastest(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def step_seconds(fs, cfg, steps: int, rounds: int) -> float:
    """Seconds of one forward/backward/AdamW step on the loop's own batches (first ``steps`` of epoch 0)."""
    cols = columns_from_table(fs.features["train"])
    sampler = BucketBatchSampler(cols.lengths, cfg.training.batch_size, seed=cfg.seed)
    collate = Collator(cols, fs.meta["tokenizer"]["pad_token_id"])
    batches = [collate(rows) for rows in list(sampler)[:steps]]
    torch.manual_seed(cfg.seed)
    model = task_model(cfg, fs.meta["model"], cols)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.training.lr)
    model.train()

    def epoch():
        for batch in batches:
            model(**batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    epoch()  # warm-up
    return fastest(epoch, rounds) / len(batches)


def bench_task(task: str, args: argparse.Namespace, tmp: Path, section: AugmentConfig) -> None:
    from data_prep.pipeline import prepare_features

    cfg = parse_config(TrainConfig, [
        f"task={task}", f"cache_dir={tmp / 'cache'}", f"data.demo_posts={args.posts}",
        f"features.max_length={args.max_length}", f"training.batch_size={args.batch_size}",
        "training.device=cpu"], "bench", "")
    fs = prepare_features(cfg, verbose=False)
    tokenizer = load_tokenizer(fs.meta["model"])
    n_batches = len(BucketBatchSampler(columns_from_table(fs.features["train"]).lengths, args.batch_size))
    rebuild = fastest(lambda: featurize_augmented(fs, section, cfg.seed, 0, tokenizer), args.rounds)
    augmented_train_features(fs, section, cfg.seed, 0, tokenizer, cfg.cache_dir)  # fill the cache
    cached = fastest(lambda: augmented_train_features(fs, section, cfg.seed, 0, None, cfg.cache_dir), args.rounds)
    step = step_seconds(fs, cfg, args.steps, args.rounds)
    print(f"\n{task}: {len(fs.examples['train'])} train examples, {fs.features['train'].num_rows} feature rows, "
          f"{n_batches} batches of {args.batch_size} per epoch")
    print(f"  {'one training step (tiny model)':<44} {step * 1e3:8.2f} ms per batch")
    for name, seconds in (("augment + re-tokenize (cache miss)", rebuild), ("augmented table from the cache", cached)):
        per_batch = seconds / n_batches
        print(f"  {name:<44} {per_batch * 1e3:8.2f} ms per batch ({seconds * 1e3:7.1f} ms per epoch), "
              f"{per_batch / (per_batch + step):6.1%} of an epoch")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["pair", "span"], choices=("pair", "span", "span_crf"))
    parser.add_argument("--posts", type=int, default=200, help="demo corpus size")
    parser.add_argument("--max-length", type=int, default=256, help="features.max_length (the config default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mask", type=int, default=15, help="augment.mask (default: every operation)")
    parser.add_argument("--prob", type=float, default=0.5, help="augment.prob")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; the fastest is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see bench/loop.py)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    section = AugmentConfig(mask=args.mask, prob=args.prob)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__} on {platform.machine()}, {os.cpu_count()} CPUs (load average {load}); "
          f"torch threads {torch.get_num_threads()}")
    print(f"augment {signature(section)}; demo {args.posts} posts, max_length {args.max_length}; "
          f"fastest of {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="bench-aug-") as tmp:
        for task in args.tasks:
            bench_task(task, args, Path(tmp), section)


if __name__ == "__main__":
    main()
