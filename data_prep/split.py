"""Group-level train/val/test split, stratified by each group's label set.

Whole groups (posts, SQuAD articles) go to one split so no post leaks between training and evaluation.
Groups are bucketed by their label signature; rare signatures fall back to their rarest label, and
what is still rare is pooled, so each stratum is big enough to reach every split. Each stratum gets
counts per split within one group of its share (rounding that also keeps the split totals on
target), dealt out evenly over its groups ordered by signature, so the signatures merged into a
stratum are spread proportionally as well.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from plumbing.errors import ConfigError

SPLITS = ("train", "val", "test")
_POOL = "\x00pool"  # key of the stratum of leftovers; cannot collide with a label signature


def validate_ratios(ratios: Sequence[float]) -> list[float]:
    """The ratios as floats, or a ConfigError naming data.split_ratios."""
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise ConfigError("data.split_ratios", f"need 3 numbers (train, val, test); got {ratios!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError("data.split_ratios", f"need 3 fractions >= 0 (train, val, test); got {values}")
    total = sum(values)
    if abs(total - 1) > 1e-6:
        raise ConfigError("data.split_ratios", f"the 3 fractions must sum to 1; got {values} (sum {total:g})")
    return values


def _strata(labels: dict[str, frozenset[str]], min_size: int) -> dict[str, list[str]]:
    """Group ids per stratum key: full signature, else rarest label, else the pool."""
    signature = {g: "|".join(sorted(ls)) for g, ls in labels.items()}
    by_signature = Counter(signature.values())
    label_freq = Counter(label for ls in labels.values() for label in ls)
    key = {}
    for g, sig in signature.items():
        if by_signature[sig] >= min_size or not labels[g]:
            key[g] = sig
        else:
            key[g] = min(labels[g], key=lambda label: (label_freq[label], label))
    sizes = Counter(key.values())
    strata: dict[str, list[str]] = {}
    for g in sorted(key):
        k = key[g] if sizes[key[g]] >= min_size else _POOL
        strata.setdefault(k, []).append(g)
    return strata


def _allocate(n: int, ratios: list[float], carry: np.ndarray) -> np.ndarray:
    """Counts per split for a stratum of n: floor of each share, the leftover to the splits whose
    remainder plus running deficit (``carry``) is largest, so totals stay on target across strata."""
    share = np.asarray(ratios) * n
    counts = np.floor(share).astype(int)
    priority = np.where(np.asarray(ratios) > 0, share - counts + carry, -np.inf)
    for s in np.argsort(-priority, kind="stable")[: n - counts.sum()]:
        counts[s] += 1
    carry += share - counts
    return counts


def _deal(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sequence of split indices with the given counts, spread evenly, starting at a random phase."""
    n = int(counts.sum())
    seq = np.empty(n, dtype=int)
    dealt = np.zeros(len(counts))
    for j in range(n):
        deficit = np.where(dealt < counts, counts * (j + 1) / n - dealt, -np.inf)
        seq[j] = int(np.argmax(deficit))
        dealt[seq[j]] += 1
    return np.roll(seq, int(rng.integers(n))) if n else seq


def _ensure_nonempty(alloc: dict[str, np.ndarray], ratios: list[float]) -> None:
    """Give each split with a non-zero ratio one group, taken from the fullest split's biggest stratum."""
    for s in range(3):
        totals = sum(alloc.values(), np.zeros(3, dtype=int))
        if ratios[s] == 0 or totals[s] > 0:
            continue
        donor = int(np.argmax(totals))
        if totals[donor] < 2:
            return  # fewer groups than splits: nothing to spare
        key = max(alloc, key=lambda k: (alloc[k][donor], k))
        alloc[key][donor] -= 1
        alloc[key][s] += 1


def split_groups(
    labels: Mapping[str, Iterable[str]], ratios: Sequence[float], seed: int
) -> dict[str, list[str]]:
    """Assign every group to train/val/test (sorted id lists), stratified by its label set.

    Deterministic for a seed and independent of the input's order. A ratio of 0 gives an empty
    split; any non-zero ratio gets at least one group when there are at least 3 groups.
    """
    values = validate_ratios(ratios)
    sets = {g: frozenset(ls) for g, ls in labels.items()}
    min_size = math.ceil(1 / min(v for v in values if v > 0) - 1e-9)
    strata = _strata(sets, min_size)
    carry = np.zeros(3)
    alloc = {k: _allocate(len(strata[k]), values, carry) for k in sorted(strata)}
    _ensure_nonempty(alloc, values)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for k in sorted(strata):
        groups = strata[k]
        # Same-signature groups sit together (random order inside), so the evenly spread deal gives
        # each signature inside a merged stratum its share too.
        tiebreak = rng.permutation(len(groups))
        ordered = sorted(range(len(groups)), key=lambda i: (sorted(sets[groups[i]]), tiebreak[i]))
        for i, s in zip(ordered, _deal(alloc[k], rng), strict=True):
            out[SPLITS[s]].append(groups[i])
    return {name: sorted(ids) for name, ids in out.items()}
