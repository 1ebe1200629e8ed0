"""The feature cache key and entry paths; partial entries are never read as valid."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from data_prep.cache import cache_key, entry_path, fingerprint_files
from data_prep.featureset import FeatureSet, load_featureset, save_featureset
from plumbing.atomic import COMPLETE_MARKER, is_complete

SETTINGS = {
    "max_length": 256, "doc_stride": 64, "question_mode": "criterion", "no_answer_ratio": 1.0,
    "split_ratios": [0.8, 0.1, 0.1], "split_seed": 42, "sentence_threshold": 0.6, "fuzzy_threshold": 0.75,
}


def _files(folder, **contents):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in contents.items():
        (folder / f"{name}.csv").write_text(text)
        paths.append(folder / f"{name}.csv")
    return paths


def test_fingerprint_files_tracks_names_and_bytes(tmp_path):
    base = fingerprint_files(_files(tmp_path / "a", posts="p,t\n1,x\n", annotations="a\n"))
    moved = _files(tmp_path / "b", posts="p,t\n1,x\n", annotations="a\n")
    assert fingerprint_files(moved) == base  # the folder's location does not matter
    assert fingerprint_files(list(reversed(moved))) == base  # nor the order paths are given in
    assert fingerprint_files(_files(tmp_path / "c", posts="p,t\n1,y\n", annotations="a\n")) != base
    assert fingerprint_files(_files(tmp_path / "d", posts2="p,t\n1,x\n", annotations="a\n")) != base
    # bytes cannot slide from one file into the next
    assert fingerprint_files(_files(tmp_path / "e", posts="p,t\n1,x\na", annotations="\n")) != base
    assert len(base) == 64


def test_cache_key_is_stable_and_canonical():
    key = cache_key("data", "span", "tok", SETTINGS)
    assert len(key) == 16 and int(key, 16) >= 0
    assert cache_key("data", "span", "tok", dict(reversed(list(SETTINGS.items())))) == key
    assert cache_key("data", "span", "tok", OmegaConf.create(SETTINGS)) == key
    assert cache_key("data", "span", "tok", {**SETTINGS, "split_ratios": (0.8, 0.1, 0.1)}) == key


@pytest.mark.parametrize("change", [
    {"data_fingerprint": "data2"}, {"task": "span_crf"}, {"task": "pair"}, {"tokenizer_fp": "tok2"},
    *({"settings": {**SETTINGS, k: v}} for k, v in [
        ("max_length", 384), ("doc_stride", 128), ("question_mode", "empty"), ("no_answer_ratio", -1),
        ("split_ratios", [0.7, 0.15, 0.15]), ("split_seed", 7), ("sentence_threshold", 0.5),
        ("fuzzy_threshold", 0.8)]),
    {"settings": {**SETTINGS, "extra": None}},
])
def test_cache_key_changes_with_every_input(change):
    args = {"data_fingerprint": "data", "task": "span", "tokenizer_fp": "tok", "settings": SETTINGS}
    assert cache_key(**{**args, **change}) != cache_key(**args)


def test_cache_key_refuses_values_it_cannot_canonicalise():
    with pytest.raises(TypeError, match="unsupported type"):
        cache_key("d", "span", "t", {"x": object()})


def _featureset() -> FeatureSet:
    table = pa.table({"example_id": ["a"], "input_ids": pa.array([[2, 5, 3]], type=pa.list_(pa.uint16()))})
    return FeatureSet(task="pair", features={"train": table}, examples={"train": table}, meta={"key": "k"})


def test_entry_path_and_partial_entries(tmp_path):
    key = cache_key("data", "pair", "tok", SETTINGS)
    path = entry_path(tmp_path, key)
    assert path == tmp_path / "features" / key
    assert not is_complete(path)
    save_featureset(_featureset(), path)
    assert is_complete(path)
    loaded = load_featureset(path)
    assert loaded.features["train"].equals(_featureset().features["train"]) and loaded.meta == {"key": "k"}

    partial = entry_path(tmp_path, cache_key("data", "pair", "tok", {**SETTINGS, "split_seed": 1}))
    shutil.copytree(path, partial)
    (partial / COMPLETE_MARKER).unlink()  # as if the writer died before finishing
    assert not is_complete(partial)
    with pytest.raises(FileNotFoundError, match="not a complete"):
        load_featureset(partial)
