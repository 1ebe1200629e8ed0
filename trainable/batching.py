"""Feature tables to padded tensors: length-bucketed batches, sharded across ranks.

Rows are unpadded in the Arrow tables (see data_prep/featureset.py). List columns become one
flat numpy array plus offsets without copying (in a Ray worker they sit read-only in the
object store); each batch copies only its own rows into freshly padded arrays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import torch

from data_prep.features import TAG_IGNORE

LIST_COLUMNS = ("input_ids", "token_type_ids", "offset_start", "offset_end", "tags", "start_targets",
                "end_targets")
SCALAR_COLUMNS = ("start_positions", "end_positions", "label", "symptom_id")
PAD = {"input_ids": None, "token_type_ids": 0, "tags": TAG_IGNORE, "offset_start": -1, "offset_end": -1,
       "start_targets": 0, "end_targets": 0}


@dataclass
class Columns:
    """A split's features as flat arrays: ``lists[name] = (values, offsets)``."""

    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    scalars: dict[str, np.ndarray]
    example_ids: list[str]

    @cached_property
    def lengths(self) -> np.ndarray:
        offsets = self.lists["input_ids"][1]
        return np.diff(offsets)

    def __len__(self) -> int:
        return len(self.example_ids)

    def row(self, name: str, i: int) -> np.ndarray:
        values, offsets = self.lists[name]
        return values[offsets[i]:offsets[i + 1]]


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    # A sliced array's offsets index into its full child buffer (``.values``), so the pair stays
    # consistent without copying.
    return array.values.to_numpy(zero_copy_only=False), array.offsets.to_numpy()


def columns_from_table(table: pa.Table) -> Columns:
    names = set(table.column_names)
    lists = {n: _flat(table.column(n)) for n in LIST_COLUMNS if n in names}
    scalars = {n: table.column(n).to_numpy() for n in SCALAR_COLUMNS if n in names}
    return Columns(lists, scalars, table.column("example_id").to_pylist())


def _even_sizes(n: int, k: int) -> np.ndarray:
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return sizes


class BucketBatchSampler:
    """Batches of similar lengths; this rank's share of them.

    Every epoch: shuffle the rows (seeded by ``(seed, epoch)`` so a resumed run replays the
    same order), cut them into chunks of about ``chunk_batches`` batches, sort each chunk by
    length, cut it into batches, shuffle the batches, deal them out to the ranks. Unlike
    DistributedSampler nothing is repeated to even out the ranks: the rows are spread over
    ``world_size * ceil(n / (world_size * batch_size))`` batches of (nearly) equal size, so
    every rank gets the same number of batches and every row is seen exactly once. (Only with
    fewer rows than ranks are rows repeated, so that no rank gets an empty batch.)
    Without ``shuffle`` the rows are sorted by length once (evaluation).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, chunk_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.rank, self.world_size, self.chunk_batches = rank, world_size, chunk_batches
        self.epoch = 0
        n = len(self.lengths)
        per_rank = -(-n // (world_size * batch_size)) if n else 0
        self.num_batches = per_rank * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches // self.world_size

    def _all_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if n == 0:
            return []
        sizes = _even_sizes(max(n, self.num_batches), self.num_batches)
        if not self.shuffle:
            order = np.resize(np.argsort(self.lengths, kind="stable"), sizes.sum())
            return np.split(order, np.cumsum(sizes)[:-1])
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.resize(rng.permutation(n), sizes.sum())
        batches = []
        for c in range(0, self.num_batches, self.chunk_batches):
            chunk_sizes = sizes[c:c + self.chunk_batches]
            start = int(sizes[:c].sum())
            rows = order[start:start + int(chunk_sizes.sum())]
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            batches += np.split(rows, np.cumsum(chunk_sizes)[:-1])
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._all_batches()[self.rank::self.world_size]


class Collator:
    """Rows to a padded batch: pad id from the tokenizer, attention mask from the lengths."""

    def __init__(self, columns: Columns, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.columns, self.pad_token_id, self.multiple = columns, pad_token_id, pad_to_multiple_of

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        cols = self.columns
        lengths = cols.lengths[rows]
        width = int(lengths.max())
        width = -(-width // self.multiple) * self.multiple
        batch = {"attention_mask": torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).long()}
        for name in ("input_ids", "token_type_ids", "tags", "start_targets", "end_targets"):
            if name not in cols.lists:
                continue
            pad = self.pad_token_id if name == "input_ids" else PAD[name]
            out = np.full((len(rows), width), pad, dtype=np.int64)
            for j, i in enumerate(rows):
                out[j, : lengths[j]] = cols.row(name, i)
            batch[name] = torch.from_numpy(out)
        for name in ("start_positions", "end_positions", "label"):
            if name in cols.scalars:
                batch[name] = torch.from_numpy(cols.scalars[name][rows].astype(np.int64))
        return batch


@dataclass
class Batch:
    """A batch on its device, with its sample and real-token counts known on the host (no sync to count)."""

    tensors: dict[str, torch.Tensor]
    samples: int
    tokens: int


def prefetch(batches: Iterable[np.ndarray], collate: Collator, device: torch.device, depth: int = 2) -> Iterator[Batch]:
    """``collate(rows)`` for the next ``depth`` batches in a background thread, copied to ``device``.

    The device must never wait on the host between steps: while step i runs, the next batches
    are already padded (numpy, off the main thread), pinned and on their way with non-blocking
    copies, which only overlap with compute from pinned memory. Order is kept.
    """
    pin = device.type == "cuda"
    lengths = collate.columns.lengths

    def build(rows: np.ndarray) -> tuple[dict[str, torch.Tensor], int, int]:
        tensors = collate(rows)
        if pin:
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors, len(rows), int(lengths[rows].sum())

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="collate") as pool:
        pending: deque = deque()
        it = iter(batches)
        for rows in it:
            pending.append(pool.submit(build, rows))
            if len(pending) == depth:
                break
        while pending:
            tensors, samples, tokens = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(build, nxt))
            yield Batch({k: v.to(device, non_blocking=True) for k, v in tensors.items()}, samples, tokens)


def padding_ratio(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Fraction of the padded token slots that are padding (what bucketing minimises)."""
    slots = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1 - float(lengths.sum()) / slots if slots else 0.0
