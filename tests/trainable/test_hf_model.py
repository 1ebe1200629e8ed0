"""Checkpoints as Hugging Face models: a ``span`` one through ``AutoModelForQuestionAnswering.from_pretrained``
gives the checkpoint's start and end logits, a ``pair`` one through ``pipeline("text-classification")`` the
probabilities ``trainable.predict`` gives; the checkpoint itself still loads; ``span_crf`` gets no such files;
the model card holds the validation and test metrics.

One short ``trainable.single`` run per task (tiny model, 60 demo posts, 1 epoch) is shared by the module."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

from data_prep.demo import demo_dir
from data_prep.redsm5 import load_redsm5
from data_prep.symptoms import criteria
from plumbing.cli import parse_config
from trainable import predict, single
from trainable.checkpoint import load_model
from trainable.config import TrainConfig
from trainable.hf_model import HF_WEIGHTS, write_hf_model
from trainable.post_predictions import examples_of

RUN = ["data.demo_posts=60", "features.max_length=96", "features.doc_stride=32", "training.epochs=1"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    cache = tmp_path_factory.mktemp("cache")
    out = {}
    for task in ("span", "pair", "span_crf"):
        run_dir = tmp_path_factory.mktemp(f"run_{task}")
        single.run(parse_config(TrainConfig, [f"task={task}", f"cache_dir={cache}", f"out_dir={run_dir}", *RUN],
                                "trainable.single", ""))
        out[task] = run_dir
    out["posts"] = load_redsm5(demo_dir(cache, 60, 13)).posts
    out["unseen"] = load_redsm5(demo_dir(cache, 8, 99)).posts  # another seed: text no run trained on
    return out


def test_trainable_single_leaves_a_question_answering_model(runs):
    checkpoint = runs["span"] / "checkpoint"
    assert (checkpoint / HF_WEIGHTS).is_file()
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]


def examples(posts, n: int) -> list:
    cfg = parse_config(TrainConfig, ["task=span", *RUN], "x", "")
    return [ex for post in posts[:n] for ex in examples_of(post, "span", cfg.features.question_mode)]


def test_the_hf_model_gives_the_checkpoints_start_and_end_logits(runs):
    checkpoint = runs["span"] / "checkpoint"
    ours, _, _ = load_model(checkpoint)
    theirs = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    batch = examples(runs["posts"], 4)
    enc = tokenizer([ex.question for ex in batch], [ex.context for ex in batch], truncation="only_second",
                    max_length=96, padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = ours(**enc), theirs(**enc)
    real = enc["attention_mask"].bool()
    assert torch.allclose(a["start_logits"][real], b.start_logits[real], atol=1e-4)
    assert torch.allclose(a["end_logits"][real], b.end_logits[real], atol=1e-4)


def test_the_checkpoint_still_loads_as_its_own_format_and_span_crf_gets_no_hf_files(runs):
    model, meta, _ = load_model(runs["span"] / "checkpoint")
    assert meta["task"] == "span" and model.head.out_features == 3
    crf = runs["span_crf"] / "checkpoint"
    assert write_hf_model(crf) is False and not (crf / HF_WEIGHTS).exists()
    assert json.loads((crf / "config.json").read_text())["architectures"] == ["BertModel"]  # the encoder's


def test_the_pair_model_is_a_text_classification_pipeline_scoring_as_predict(runs, tmp_path):
    checkpoint = runs["pair"] / "checkpoint"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "not_evidence", "1": "evidence"}
    posts = tmp_path / "posts.csv"
    with posts.open("w", newline="") as f:
        csv.writer(f).writerows([("post_id", "text"), *((p.post_id, p.text) for p in runs["unseen"])])
    predict.main([f"checkpoint={checkpoint}", f"input={posts}", f"out_dir={tmp_path / 'pred'}"])
    ours = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert len(ours) > 50
    classify = pipeline("text-classification", model=str(checkpoint), top_k=None)
    theirs = classify([{"text": criteria()[r["symptom"]], "text_pair": r["sentence"]} for r in ours])
    evidence = [next(s["score"] for s in scores if s["label"] == "evidence") for scores in theirs]
    assert evidence == pytest.approx([r["probability"] for r in ours], abs=1e-4)
    assert len({round(p, 3) for p in evidence}) > 10  # a model that tells sentences apart, not a constant


def test_the_checkpoint_has_a_model_card_with_its_metrics(runs):
    import yaml

    checkpoint = runs["span"] / "checkpoint"
    text = (checkpoint / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["pipeline_tag"] == "question-answering" and header["base_model"] == "tiny"
    results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in header["model-index"][0]["results"]}
    meta = json.loads((checkpoint / "meta.json").read_text())
    test = json.loads((runs["span"] / "test_metrics.json").read_text())
    assert results["validation"]["f1"] == pytest.approx(meta["val"]["f1"], abs=1e-4)
    assert results["test"]["f1"] == pytest.approx(test["f1"], abs=1e-4)
    assert "not a diagnosis" in text and "AutoModelForQuestionAnswering.from_pretrained" in text
