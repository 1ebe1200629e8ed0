"""``training.compile``: a whole run compiles a bounded number of graphs, whatever the batch shapes.

Bucketed dynamic padding gives nearly every batch its own [batch, length] shape. A statically
compiled model would build a graph per shape (on an H100: minutes each for span_crf); the loop
compiles with symbolic shapes and keeps the CRF's per-position loop eager, so the count of graphs
dynamo builds (read from dynamo's own counters) is fixed per task: one per mode (train, eval),
doubled where the CRF splits the forward in two.

The run trains on two rows of each length the demo has: compiling is what costs here, not the
steps, and more steps of the same lengths would add no new shapes.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from trainable.batching import BucketBatchSampler, columns_from_table
from trainable.loop import train_loop
from trainable.session import LocalSession

# Graphs per mode: the whole forward; span_crf's is cut in two by the eager CRF.
GRAPHS_PER_MODE = {"pair": 1, "span_crf": 2}
# Batches of 7 and 6 rows in training, 6 and 5 in evaluation. (Not 3: a batch dimension equal to
# span_crf's 3 tags on the first call gets duck-sized to it, and the next batch size recompiles.)
BATCH_SIZE, EVAL_BATCH_SIZE = 7, 6


def _two_rows_per_length(fs):
    """The feature set with a train split of at most two rows per distinct length (pair: 55 rows,
    span_crf: 120): every length the demo has, in a few optimizer steps."""
    train = fs.features["train"]
    lengths = columns_from_table(train).lengths
    order = np.argsort(lengths, kind="stable")
    rank = np.arange(len(order)) - np.searchsorted(lengths[order], lengths[order])  # within its length
    return dataclasses.replace(fs, features={**fs.features, "train": train.take(np.sort(order[rank < 2]))})


def _batch_shapes(fs, batch_size: int, eval_batch_size: int, epochs: int, seed: int) -> set[tuple[int, int]]:
    """Every distinct [batch, length] the run feeds the model (train epochs and evaluation)."""
    shapes = set()
    train = columns_from_table(fs.features["train"])
    sampler = BucketBatchSampler(train.lengths, batch_size, seed=seed)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        shapes |= {(len(rows), int(train.lengths[rows].max())) for rows in sampler}
    val = columns_from_table(fs.features["val"])
    shapes |= {(len(rows), int(val.lengths[rows].max()))
               for rows in BucketBatchSampler(val.lengths, eval_batch_size, shuffle=False)}
    return shapes


@pytest.mark.slow
@pytest.mark.parametrize("task", list(GRAPHS_PER_MODE))
def test_compiled_run_builds_a_bounded_number_of_graphs(task, train_config, demo_features, tmp_path):
    fs = _two_rows_per_length(demo_features(task))
    config = train_config(task, tmp_path, epochs=2, patience=0, compile=True, batch_size=BATCH_SIZE,
                          eval_batch_size=EVAL_BATCH_SIZE)
    shapes = _batch_shapes(fs, BATCH_SIZE, EVAL_BATCH_SIZE, epochs=2, seed=config["seed"])
    torch._dynamo.reset()
    counters.clear()
    train_loop(config, session=LocalSession(tmp_path), features=fs)
    graphs = counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    assert len(shapes) > 10 * GRAPHS_PER_MODE[task], "the run must see many shapes for the bound to mean anything"
    assert len({size for size, _ in shapes}) > 2, "and batch sizes that differ, in training and in evaluation"
    assert graphs == 2 * GRAPHS_PER_MODE[task], (graphs, sorted(shapes))
    assert breaks == (0 if task == "pair" else 2)  # the CRF, once per mode; nothing else breaks
    history = json.loads(LocalSession(tmp_path).metrics_path.read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # it trained and evaluated like an eager run
    assert all(np.isfinite(h["train_loss"]) for h in history)
