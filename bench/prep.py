"""Benchmark data_prep: featurization time per task on a ReDSM5-sized demo corpus (1,500 posts),
cache-hit load time, and the padding ratio (tokens processed / real tokens) of fixed max_length
batches versus per-batch dynamic padding with length bucketing.

    HF_HUB_OFFLINE=1 python bench/prep.py [--posts 1500] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from data_prep.config import PrepConfig
from data_prep.pipeline import prepare_features
from plumbing.cli import parse_config
from trainable.batching import BucketBatchSampler, columns_from_table, padding_ratio


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def padding_ratios(lengths: np.ndarray, max_length: int, batch_size: int) -> tuple[float, float, float]:
    """tokens processed / real tokens: fixed max_length, random dynamic batches, bucketed batches."""
    real = float(lengths.sum())
    fixed = len(lengths) * max_length / real
    order = np.random.default_rng(0).permutation(len(lengths))
    random_batches = np.array_split(order, -(-len(lengths) // batch_size))
    bucketed = list(BucketBatchSampler(lengths, batch_size, seed=0))

    def processed(batches):
        return 1 / (1 - padding_ratio(lengths, batches))

    return fixed, processed(random_batches), processed(bucketed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as cache:
        base = [f"cache_dir={cache}", f"data.demo_posts={args.posts}", f"features.max_length={args.max_length}"]
        # Build the tiny model and demo corpus once so the task timings are featurization only.
        prepare_features(parse_config(PrepConfig, base + ["task=pair"], "bench", ""), verbose=False)
        print(f"demo corpus: {args.posts} posts, tiny tokenizer, max_length={args.max_length}")
        print(f"{'task':<9} {'build s':>8} {'hit s':>7} {'rows':>7} {'fixed':>7} {'dynamic':>8} {'bucketed':>9}")
        for task in ("span", "span_crf", "pair"):
            cfg = parse_config(PrepConfig, base + [f"task={task}", "data.split_seed=7"], "bench", "")
            fs, built = timed(lambda cfg=cfg: prepare_features(cfg, verbose=False))
            _, hit = timed(lambda cfg=cfg: prepare_features(cfg, verbose=False))
            lengths = columns_from_table(fs.features["train"]).lengths
            fixed, dynamic, bucketed = padding_ratios(lengths, args.max_length, args.batch_size)
            print(f"{task:<9} {built:8.2f} {hit:7.2f} {len(lengths):7d} {fixed:7.2f} {dynamic:8.2f} {bucketed:9.2f}")
        print("build s: load+align+split+tokenize+write; hit s: the same call answered from the cache;")
        print("fixed/dynamic/bucketed: tokens processed per real token (train split, batch "
              f"{args.batch_size}) with max_length padding, per-batch padding of random batches, "
              "and per-batch padding of length-bucketed batches")


if __name__ == "__main__":
    main()
