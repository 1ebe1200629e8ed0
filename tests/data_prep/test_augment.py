"""Evidence augmentation: the operations, the examples they touch (and those they must not), span
offsets after splicing, the per-epoch feature cache, the config checks, the loop and the sweep space."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from data_prep.augment import (
    AugmentConfig,
    augment_pair_examples,
    augment_span_examples,
    augment_text,
    augmented_key,
    augmented_path,
    augmented_train_features,
    delete_words,
    duplicate_words,
    featurize_augmented,
    pair_records,
    signature,
    span_records,
    swap_words,
    typo_words,
)
from data_prep.records import Answer, QAExample
from data_prep.symptoms import criteria
from data_prep.tokenizer import load_tokenizer
from plumbing.atomic import is_complete
from plumbing.errors import ConfigError
from trainable.batching import columns_from_table
from trainable.config import TrainConfig, validate_train
from trainable.loop import train_loop
from trainable.session import LocalSession

WORDS = "I have not slept more than three hours a night for weeks now and it shows".split()
ALL_ON = AugmentConfig(mask=15, delete=0.2, swap=0.2, duplicate=0.2, typo=0.2, prob=1.0)
OPS = {"delete": delete_words, "swap": swap_words, "duplicate": duplicate_words, "typo": typo_words}


# ---------------------------------------------------------------- operations


@pytest.mark.parametrize("op", OPS)
def test_strength_zero_is_identity_and_a_seed_repeats(op):
    fn = OPS[op]
    assert fn(WORDS, 0.0, random.Random(1)) == WORDS
    first, again = fn(WORDS, 0.3, random.Random(1)), fn(WORDS, 0.3, random.Random(1))
    assert first == again and first != WORDS
    assert any(fn(WORDS, 0.3, random.Random(s)) != first for s in range(2, 6))


def test_each_op_does_what_it_says():
    rng = random.Random(3)
    deleted = delete_words(WORDS, 0.3, rng)
    assert len(deleted) < len(WORDS) and all(w in WORDS for w in deleted)
    swapped = swap_words(WORDS, 0.3, rng)
    assert Counter(swapped) == Counter(WORDS) and swapped != WORDS
    duplicated = duplicate_words(WORDS, 0.3, rng)
    assert len(duplicated) > len(WORDS)
    assert [w for i, w in enumerate(duplicated) if i == 0 or w != duplicated[i - 1]] == WORDS
    typos = typo_words(WORDS, 0.3, rng)
    changed = [(a, b) for a, b in zip(WORDS, typos, strict=True) if a != b]
    assert changed and all(abs(len(a) - len(b)) <= 1 for a, b in changed)


def test_ops_never_empty_the_text():
    assert delete_words(["alone"], 1.0, random.Random(0)) == ["alone"]
    assert delete_words(WORDS, 1.0, random.Random(0)) == WORDS  # everything deleted: the original
    assert typo_words(["I", "a"], 1.0, random.Random(0)) == ["I", "a"]  # no one-letter typos
    assert swap_words(["one"], 1.0, random.Random(0)) == ["one"]
    section = AugmentConfig(mask=1, delete=1.0)
    for text in ("", "   ", "word"):
        assert augment_text(text, section, random.Random(0)) == text


def test_augment_text_keeps_outer_whitespace():
    text = "  I feel tired all day long.\n"
    out = augment_text(text, ALL_ON, random.Random(5))
    assert out != text and out.startswith("  ") and out.endswith("\n")
    assert out[2] != " " and out[-2] != " "


def test_signature_lists_only_enabled_ops():
    assert signature(AugmentConfig()) == "off"
    assert signature(AugmentConfig(mask=5, typo=0.3)) == "mask=5,delete=0.1,duplicate=0.1,prob=0.5"
    assert signature(AugmentConfig(mask=8, typo=0.05, prob=1.0)) == "mask=8,typo=0.05,prob=1"


@pytest.mark.parametrize("override, key", [
    ({"mask": 16}, "augment.mask"), ({"mask": -1}, "augment.mask"), ({"delete": 1.5}, "augment.delete"),
    ({"typo": -0.1}, "augment.typo"), ({"prob": 2.0}, "augment.prob"),
])
def test_config_errors_name_the_key(override, key):
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"augment": override})
    with pytest.raises(ConfigError) as err:
        validate_train(cfg, check_hardware=False)
    assert err.value.key == key
    validate_train(OmegaConf.structured(TrainConfig), check_hardware=False)  # the defaults pass


# ---------------------------------------------------------------- examples


def test_pair_augments_only_the_sentence(demo_features):
    examples = pair_records(demo_features("pair").examples["train"])
    out = augment_pair_examples(examples, ALL_ON, seed=1, epoch=0)
    assert [replace(e, sentence="") for e in out] == [replace(e, sentence="") for e in examples]
    assert all(e.criterion == criteria()[e.symptom] for e in out)
    assert sum(a.sentence != b.sentence for a, b in zip(examples, out, strict=True)) > 0.9 * len(examples)
    assert augment_pair_examples(examples, ALL_ON, seed=1, epoch=0) == out
    assert augment_pair_examples(examples, ALL_ON, seed=1, epoch=1) != out
    # per example, not per position: a reversed list gets the same augmentation
    assert augment_pair_examples(examples[::-1], ALL_ON, seed=1, epoch=0) == out[::-1]
    half = augment_pair_examples(examples, replace(ALL_ON, prob=0.5), seed=1, epoch=0)
    assert 0.3 < np.mean([a.sentence != b.sentence for a, b in zip(examples, half, strict=True)]) < 0.7
    assert augment_pair_examples(examples, AugmentConfig(), seed=1, epoch=0) == examples


def _check_answers(ex: QAExample) -> None:
    for a in ex.answers:
        assert ex.context[a.start:a.start + len(a.text)] == a.text


def test_span_splices_answers_into_the_context_and_keeps_the_question(demo_features):
    examples = span_records(demo_features("span").examples["train"])
    out = augment_span_examples(examples, ALL_ON, seed=2, epoch=0)
    for before, after in zip(examples, out, strict=True):
        assert (after.example_id, after.question, after.group, after.symptom) == \
               (before.example_id, before.question, before.group, before.symptom)
        assert len(after.answers) == len(before.answers)
        _check_answers(after)
        if not before.answers:
            assert after == before
        # putting the original answers back gives the original context: nothing else changed
        restored = after.context
        for b, a in sorted(zip(before.answers, after.answers, strict=True), key=lambda p: -p[1].start):
            restored = restored[:a.start] + b.text + restored[a.start + len(a.text):]
        assert restored == before.context
    changed = [a for a, b in zip(out, examples, strict=True) if a != b]
    assert len(changed) > 0.9 * sum(bool(e.answers) for e in examples)
    assert any(len(e.answers) > 1 for e in changed)


def test_overlapping_or_misplaced_answers_are_left_alone():
    context = "I sleep badly. Most nights I wake at four and stay awake."
    overlapping = QAExample("q1", "sleep?", context, (Answer("Most nights I wake at four", 15),
                                                       Answer("I wake at four", 27)), "g")
    misplaced = QAExample("q2", "sleep?", context, (Answer("I sleep well", 0),), "g")
    ok = QAExample("q3", "sleep?", context, (Answer("I sleep badly.", 0),
                                             Answer("Most nights I wake at four and stay awake.", 15)), "g")
    out = augment_span_examples([overlapping, misplaced, ok], ALL_ON, seed=0, epoch=0)
    assert out[:2] == [overlapping, misplaced]
    assert out[2] != ok
    _check_answers(out[2])


@pytest.mark.parametrize("task", ["span", "span_crf"])
def test_augmented_windows_decode_to_the_augmented_answers(task, demo_features):
    fs = demo_features(task)
    tokenizer = load_tokenizer(fs.meta["model"])
    examples = {e.example_id: e for e in augment_span_examples(span_records(fs.examples["train"]), ALL_ON, 4, 0)}
    cols = columns_from_table(featurize_augmented(fs, ALL_ON, 4, 0, tokenizer))  # the loop's epoch table
    decoded = 0
    for i, example_id in enumerate(cols.example_ids):
        start, end = int(cols.scalars["start_positions"][i]), int(cols.scalars["end_positions"][i])
        if start == 0 and end == 0:
            continue
        ex = examples[example_id]
        text = ex.context[cols.row("offset_start", i)[start]:cols.row("offset_end", i)[end]]
        assert text in {a.text for a in ex.answers}
        decoded += 1
        if task == "span_crf":
            assert cols.row("tags", i)[start] == 1  # B at the answer's first token
    assert decoded > 0.5 * sum(bool(e.answers) for e in examples.values())


# ---------------------------------------------------------------- features and cache


def test_epoch_features_are_cached_under_the_signature(demo_features, tmp_path):
    fs = demo_features("pair")
    tokenizer = load_tokenizer(fs.meta["model"])
    key = augmented_key(fs, ALL_ON, 1, 0)
    assert key != augmented_key(fs, replace(ALL_ON, mask=7), 1, 0)
    assert key != augmented_key(fs, replace(ALL_ON, typo=0.3), 1, 0)
    assert key != augmented_key(fs, ALL_ON, 2, 0) != augmented_key(fs, ALL_ON, 1, 1)
    # strengths of disabled ops change nothing, so they do not split the cache
    assert augmented_key(fs, AugmentConfig(mask=1), 1, 0) == augmented_key(fs, AugmentConfig(mask=1, typo=0.9), 1, 0)

    built = augmented_train_features(fs, ALL_ON, 1, 0, tokenizer, tmp_path)
    assert is_complete(augmented_path(tmp_path, key))
    assert built.equals(featurize_augmented(fs, ALL_ON, 1, 0, tokenizer))
    # a cache hit: no tokenizer is needed
    assert augmented_train_features(fs, ALL_ON, 1, 0, None, tmp_path).equals(built)
    original = fs.features["train"]
    assert built.schema == original.schema and built.num_rows == original.num_rows
    assert not built.equals(original)

    def labels(table):
        return dict(zip(table.column("example_id").to_pylist(), table.column("label").to_pylist(), strict=True))

    assert labels(built) == labels(original)
    # examples the coin left alone keep their original rows (not re-tokenized)
    half = featurize_augmented(fs, replace(ALL_ON, prob=0.5), 1, 0, tokenizer)
    rows = {r["example_id"]: r for r in half.to_pylist()}
    same = sum(rows[r["example_id"]] == r for r in original.to_pylist())
    assert 0.3 * original.num_rows < same < 0.7 * original.num_rows


def test_only_train_examples_are_augmented(demo_features, tmp_path):
    fs = demo_features("span")
    val, test = fs.features["val"], fs.features["test"]
    table = augmented_train_features(fs, ALL_ON, 1, 0, load_tokenizer(fs.meta["model"]), tmp_path)
    ids = set(table.column("example_id").to_pylist())
    assert ids == set(fs.examples["train"].column("example_id").to_pylist())
    assert not ids & (set(val.column("example_id").to_pylist()) | set(test.column("example_id").to_pylist()))
    assert fs.features["val"] is val and fs.features["test"] is test


# ---------------------------------------------------------------- loop and sweep


def _metrics(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())


def test_pair_training_with_augmentation_learns(train_config, tmp_path):
    from data_prep.pipeline import prepare_features

    section = AugmentConfig(mask=15, prob=0.5)
    config = {**train_config("pair", tmp_path, epochs=6, patience=0), "augment": asdict(section)}
    # the annotated pairs only: on 84 training posts, learning which criterion a sentence answers (the
    # cross negatives) takes more than 6 epochs; whether the sentence is evidence at all does not
    config["features"].update(cross_negative_ratio=0, eval_cross_negative_ratio=0)
    fs = prepare_features(OmegaConf.create(config), verbose=False)
    val_before = fs.features["val"]
    train_loop(config, session=LocalSession(tmp_path), features=fs)
    history = _metrics(tmp_path)
    assert [m["epoch"] for m in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 1.5
    assert max(m["val_roc_auc"] for m in history) > 0.8  # untrained: ~0.5; 6 epochs unaugmented: ~0.89
    for epoch in range(6):  # each epoch trained on its own augmented table
        assert is_complete(augmented_path(config["cache_dir"], augmented_key(fs, section, config["seed"], epoch)))
    assert fs.features["val"] is val_before


def test_sweep_space_accepts_augment_keys():
    from plumbing.cli import parse_config
    from sweep.config import SweepConfig
    from sweep.space import check_space, resolve_space, to_distributions

    def dists(*overrides):
        cfg = parse_config(SweepConfig, ["task=pair", *overrides], "sweep.run", "")
        return cfg, to_distributions(resolve_space(cfg), cfg)

    cfg, d = dists("sweep.space.augment.mask={type: int, low: 0, high: 15}",
                   "sweep.space.augment.delete={type: uniform, low: 0.0, high: 0.3}")
    check_space(cfg, d)
    assert (d["augment.mask"].low, d["augment.mask"].high) == (0, 15)
    cfg, d = dists("sweep.space.augment.mask={type: int, low: 0, high: 16}")
    with pytest.raises(ConfigError) as err:
        check_space(cfg, d)
    assert err.value.key == "sweep.space.augment.mask"
