"""data_prep end to end: demo/ReDSM5/SQuAD files -> cached features, report and CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.config import PrepConfig
from data_prep.demo import write_demo
from data_prep.pipeline import prepare_features
from plumbing.atomic import COMPLETE_MARKER
from plumbing.cli import parse_config

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def cfg(tmp_path: Path, *overrides: str):
    base = [f"cache_dir={tmp_path / 'cache'}", "data.demo_posts=60", "features.max_length=96",
            "features.doc_stride=32"]
    return parse_config(PrepConfig, base + list(overrides), "data_prep", "test")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


def test_second_run_hits_the_cache_and_any_change_misses(shared):
    first = prepare_features(cfg(shared), verbose=False)
    again = prepare_features(cfg(shared), verbose=False)
    assert not first.meta["cache_hit"] and again.meta["cache_hit"]
    assert again.meta["cache_path"] == first.meta["cache_path"]
    assert again.features["train"].equals(first.features["train"])
    for change in ("features.doc_stride=16", "features.question_mode=symptom", "data.split_seed=1",
                   "task=span_crf", "data.demo_seed=5"):
        other = prepare_features(cfg(shared, change), verbose=False)
        assert not other.meta["cache_hit"], change
        assert other.meta["cache_path"] != first.meta["cache_path"], change


def test_a_cache_hit_neither_aligns_nor_splits_the_corpus(shared, monkeypatch):
    """The key needs only the raw files' bytes (and the tiny model, the post texts): a hit skips alignment
    and splitting (the slow part of a sweep driver's start on a real corpus) and returns what the build
    returned."""
    import data_prep.pipeline as pipeline

    first = prepare_features(cfg(shared), verbose=False)

    def no_loading(_cfg):
        raise AssertionError("the source was loaded on a cache hit")

    monkeypatch.setattr(pipeline, "load_source", no_loading)
    again = prepare_features(cfg(shared), verbose=False)
    assert again.meta["cache_hit"] and again.meta["report"] == first.meta["report"]
    assert again.examples["val"].equals(first.examples["val"])
    with pytest.raises(AssertionError, match="source was loaded"):  # a miss still loads it
        prepare_features(cfg(shared, "data.split_seed=7"), verbose=False)


def test_a_partial_entry_is_rebuilt(shared):
    fs = prepare_features(cfg(shared, "task=pair"), verbose=False)
    (Path(fs.meta["cache_path"]) / COMPLETE_MARKER).unlink()
    again = prepare_features(cfg(shared, "task=pair"), verbose=False)
    assert not again.meta["cache_hit"]
    assert (Path(again.meta["cache_path"]) / COMPLETE_MARKER).exists()


def test_changed_input_file_makes_a_new_entry(tmp_path):
    data = tmp_path / "redsm5"
    write_demo(data, n_posts=40, seed=3)
    first = prepare_features(cfg(tmp_path, "data.name=redsm5", f"data.dir={data}"), verbose=False)
    annotations = data / "redsm5_annotations.csv"
    annotations.write_text(annotations.read_text().replace(",1,", ",0,", 1))
    second = prepare_features(cfg(tmp_path, "data.name=redsm5", f"data.dir={data}"), verbose=False)
    assert second.meta["cache_path"] != first.meta["cache_path"]


def test_splits_never_share_a_post_and_the_manifest_covers_every_post(shared):
    fs = prepare_features(cfg(shared), verbose=False)
    manifest = fs.meta["manifest"]
    groups = [set(manifest[s]) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(g) for g in groups) == 60
    for split, table in fs.examples.items():
        assert set(table.column("group").to_pylist()) <= set(manifest[split])


def test_report_counts_alignment_rules_and_splits(shared):
    report = prepare_features(cfg(shared), verbose=False).meta["report"]
    assert sum(report["alignment"].values()) == report["counts"]["annotations"]
    assert report["alignment"]["exact"] > 0
    assert set(report["splits"]) == {"train", "val", "test"}


def test_pair_cross_negatives_are_counted_cached_and_seeded(shared):
    fs = prepare_features(cfg(shared, "task=pair"), verbose=False)
    splits = fs.meta["report"]["splits"]
    for split, table in fs.examples.items():
        rows, c = table.to_pylist(), splits[split]
        cross = [r for r in rows if r["kind"] == "cross"]
        assert c["examples"] == len(rows) == c["positive"] + c["annotated_negative"] + c["cross_negative"]
        assert c["cross_negative"] == len(cross) == c["cross_hard"] + c["cross_other"] > 0
        assert all(r["label"] == 0 for r in cross) and c["positive"] == sum(r["label"] for r in rows)
        symptoms: dict[int, set[str]] = {}
        for r in rows:
            symptoms.setdefault(r["sentence_key"], set()).add(r["symptom"])
        evidence = {r["sentence_key"] for r in rows if r["label"] == 1}
        if split == "train":  # features.cross_negative_ratio=4: about 4 per evidence sentence
            assert 3 * len(evidence) < len(cross) <= 4 * len(evidence)
        else:  # eval_cross_negative_ratio=-1: every evidence sentence under all ten criteria
            assert all(len(symptoms[k]) == 10 for k in evidence)
    # the ratio is part of the cache key; the same seed rebuilds the same negatives, another seed others
    fewer = prepare_features(cfg(shared, "task=pair", "features.cross_negative_ratio=1"), verbose=False)
    assert not fewer.meta["cache_hit"] and fewer.meta["report"]["splits"]["train"]["cross_negative"] < \
        splits["train"]["cross_negative"]
    again = prepare_features(cfg(shared / "again", "task=pair", "features.cross_negative_ratio=1"), verbose=False)
    assert again.examples["train"].equals(fewer.examples["train"])
    other = prepare_features(cfg(shared, "task=pair", "features.cross_negative_ratio=1", "data.split_seed=7"),
                             verbose=False)
    both = set(fewer.meta["manifest"]["train"]) & set(other.meta["manifest"]["train"])  # posts in both trains
    mine, theirs = ({r["example_id"] for r in fs_.examples["train"].to_pylist()
                     if r["kind"] == "cross" and r["group"] in both} for fs_ in (fewer, other))
    assert len(mine) == len(theirs) > 20 and mine != theirs


def test_squad_v2_goes_through_the_span_path(tmp_path):
    context = "The quick brown fox jumps over the lazy dog. It was sunny."
    data = {"version": "v2.0", "data": [
        {"title": f"T{i}", "paragraphs": [{"context": context, "qas": [
            {"id": f"q{i}a", "question": "Who jumps?", "is_impossible": False,
             "answers": [{"text": "brown fox", "answer_start": 10},
                         {"text": "The quick brown fox", "answer_start": 0}]},
            {"id": f"q{i}b", "question": "Who sings?", "is_impossible": True, "answers": []},
        ]}]} for i in range(6)]}
    path = tmp_path / "train-v2.0.json"
    path.write_text(json.dumps(data))
    fs = prepare_features(cfg(tmp_path, "data.name=squad_v2", f"data.dir={path}"), verbose=False)
    rows = sum(t.num_rows for t in fs.examples.values())
    assert rows == 12
    train = fs.examples["train"].to_pylist()
    assert any(e["answer_texts"] == ["brown fox", "The quick brown fox"] for e in train)


def run_cli(*args: str, cwd: Path):
    return subprocess.run([sys.executable, "-m", "data_prep", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_writes_report_manifest_and_config(tmp_path):
    out = tmp_path / "out"
    done = run_cli(f"out_dir={out}", f"cache_dir={tmp_path / 'c'}", "data.demo_posts=40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "alignment: exact=" in done.stdout
    assert {"config.yaml", "report.json", "manifest.json"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["data.name=redsm5", "data.dir=/does/not/exist"], "/does/not/exist"),
        (["features.doc_stride=999"], "features.doc_stride"),
        (["features.nope=1"], "unknown key"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(tmp_path, args, words):
    done = run_cli(*args, f"cache_dir={tmp_path}", cwd=tmp_path)
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr


def test_cli_bad_annotation_names_file_row_and_field(tmp_path):
    data = tmp_path / "bad"
    write_demo(data, n_posts=20, seed=1)
    annotations = data / "redsm5_annotations.csv"
    lines = annotations.read_text().splitlines()
    lines[3] = lines[3].replace(",1,", ",7,").replace(",0,", ",7,")
    annotations.write_text("\n".join(lines) + "\n")
    done = run_cli("data.name=redsm5", f"data.dir={data}", f"cache_dir={tmp_path}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "redsm5_annotations.csv, row 3, field 'status'" in done.stderr


def test_a_relative_cache_dir_gives_an_absolute_model_dir(tmp_path, monkeypatch):
    """Ray workers load the model from their own working directory."""
    monkeypatch.chdir(tmp_path)
    config = parse_config(PrepConfig, ["cache_dir=rel-cache", "data.demo_posts=20", "task=pair"], "data_prep", "")
    model = Path(prepare_features(config, verbose=False).meta["model"])
    assert model.is_absolute() and model.is_dir() and model.is_relative_to(tmp_path)
