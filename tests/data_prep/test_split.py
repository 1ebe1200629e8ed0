import random

import pytest

from data_prep.split import SPLITS, split_groups, validate_ratios
from plumbing.errors import ConfigError

LABELS = ("DEPRESSED_MOOD", "ANHEDONIA", "SLEEP_ISSUES", "FATIGUE", "WORTHLESSNESS", "SUICIDAL_THOUGHTS")


def _corpus(n=600, seed=0):
    """Posts with 0-3 positive symptoms, skewed like ReDSM5 (many with none, few with several)."""
    rng = random.Random(seed)
    weights = [0.4, 0.25, 0.1, 0.1, 0.1, 0.05]
    labels = {}
    for i in range(n):
        k = rng.choice([0, 0, 0, 1, 1, 1, 2, 3])
        chosen = set()
        while len(chosen) < k:
            chosen.add(rng.choices(LABELS, weights)[0])
        labels[f"post_{i:04d}"] = chosen
    return labels


def test_every_group_in_exactly_one_split():
    labels = _corpus()
    out = split_groups(labels, (0.8, 0.1, 0.1), seed=1)
    assert set(out) == set(SPLITS)
    ids = [g for name in SPLITS for g in out[name]]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(labels)
    assert all(out[name] == sorted(out[name]) for name in SPLITS)


def test_same_seed_same_split_regardless_of_input_order():
    labels = _corpus()
    shuffled = list(labels.items())
    random.Random(5).shuffle(shuffled)
    reordered = {g: sorted(ls, reverse=True) for g, ls in shuffled}
    first = split_groups(labels, (0.8, 0.1, 0.1), seed=7)
    assert split_groups(labels, [0.8, 0.1, 0.1], seed=7) == first
    assert split_groups(reordered, (0.8, 0.1, 0.1), seed=7) == first
    assert split_groups(labels, (0.8, 0.1, 0.1), seed=8) != first


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.5, 0.25, 0.25)])
def test_sizes_and_frequent_labels_follow_the_ratios(ratios):
    labels = _corpus(n=1000)
    out = split_groups(labels, ratios, seed=3)
    for name, ratio in zip(SPLITS, ratios, strict=True):
        assert abs(len(out[name]) - ratio * len(labels)) <= 1
    for label in [*LABELS[:4], None]:  # None: posts without any positive symptom
        members = {g for g, ls in labels.items() if (label in ls if label else not ls)}
        assert len(members) >= 100
        for name, ratio in zip(SPLITS, ratios, strict=True):
            share = len(members & set(out[name])) / len(members)
            assert share == pytest.approx(ratio, abs=0.03), (label, name)


def test_each_signature_stratum_within_one_group_of_its_share():
    labels = {f"a{i}": {"X"} for i in range(37)} | {f"b{i}": set() for i in range(23)}
    out = split_groups(labels, (0.8, 0.1, 0.1), seed=0)
    for prefix, n in (("a", 37), ("b", 23)):
        for name, ratio in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
            count = sum(g.startswith(prefix) for g in out[name])
            assert abs(count - ratio * n) <= 1


def test_zero_ratio_gives_an_empty_split():
    labels = _corpus(n=50)
    out = split_groups(labels, (0.9, 0.0, 0.1), seed=0)
    assert out["val"] == []
    assert len(out["train"]) + len(out["test"]) == 50
    assert split_groups(labels, (1, 0, 0), seed=0)["train"] == sorted(labels)


@pytest.mark.parametrize("n", [3, 4, 7])
def test_few_groups_still_fill_every_nonzero_split(n):
    labels = {f"g{i}": ({"X"} if i % 2 else set()) for i in range(n)}
    out = split_groups(labels, (0.8, 0.1, 0.1), seed=0)
    assert all(out[name] for name in SPLITS)
    assert sum(len(v) for v in out.values()) == n


def test_no_groups():
    assert split_groups({}, (0.8, 0.1, 0.1), seed=0) == {"train": [], "val": [], "test": []}


@pytest.mark.parametrize(
    "ratios, fragment",
    [
        ((0.8, 0.2), "3 fractions"),
        ((0.8, 0.1, 0.1, 0.0), "3 fractions"),
        ((0.9, -0.1, 0.2), ">= 0"),
        ((0.5, 0.2, 0.2), "sum to 1"),
        (("a", 0.5, 0.5), "3 numbers"),
        ((float("nan"), 0.5, 0.5), ">= 0"),
    ],
)
def test_bad_ratios_raise_config_error(ratios, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        split_groups({"a": set()}, ratios, seed=0)
    assert err.value.key == "data.split_ratios"


def test_validate_ratios_accepts_near_one_sums():
    assert validate_ratios([0.7, 0.15, 0.15]) == [0.7, 0.15, 0.15]
