"""Per-post summaries of pair predictions, on hand-made records."""

from __future__ import annotations

import json

import pytest

from data_prep.symptoms import SYMPTOMS
from trainable.post_summary import (
    DEFAULT_THRESHOLD,
    evidence_threshold,
    format_posts,
    post_summaries,
    write_posts_json,
)


def _records(post_id: str, probabilities: dict[int, dict[str, float]]) -> list[dict]:
    """One record per (sentence, symptom) of a post; symptoms not given score 0.01."""
    return [{"post_id": post_id, "sentence_id": f"{post_id}_{k}", "sentence_index": k, "sentence": f"sentence {k}",
             "symptom": s, "probability": probabilities[k].get(s, 0.01)}
            for k in sorted(probabilities) for s in SYMPTOMS]


RECORDS = (_records("a", {0: {"SLEEP_ISSUES": 0.9}, 1: {"SLEEP_ISSUES": 0.7, "FATIGUE": 0.95}, 2: {},
                          3: {"SLEEP_ISSUES": 0.65}, 4: {"SLEEP_ISSUES": 0.6}, 5: {"SLEEP_ISSUES": 0.4}})
           + _records("b", {0: {"FATIGUE": 0.3}}))


def test_post_summaries_list_symptoms_with_their_best_sentences():
    summaries = post_summaries(["b", "a"], RECORDS, threshold=0.5)
    assert [s["post_id"] for s in summaries] == ["b", "a"]  # the input order
    b, a = summaries
    assert b == {"post_id": "b", "sentences": 1, "symptoms": []}
    assert a["sentences"] == 6
    assert [s["symptom"] for s in a["symptoms"]] == ["FATIGUE", "SLEEP_ISSUES"]  # best probability first
    sleep = a["symptoms"][1]
    assert sleep["evidence_sentences"] == 4 and sleep["probability"] == 0.9
    assert [(r["sentence_index"], r["probability"]) for r in sleep["top"]] == [(0, 0.9), (1, 0.7), (3, 0.65)]
    assert sleep["top"][0] == {"sentence_id": "a_0", "sentence_index": 0, "sentence": "sentence 0",
                               "probability": 0.9}
    assert post_summaries(["a"], RECORDS, threshold=0.8)[0]["symptoms"][1]["evidence_sentences"] == 1


def test_post_summaries_written_and_printed(tmp_path):
    summaries = post_summaries(["a", "b"], RECORDS, threshold=0.5)
    path = write_posts_json(tmp_path / "posts.json", summaries, 0.5, "given")
    saved = json.loads(path.read_text())
    assert saved["evidence_threshold"] == 0.5 and saved["posts"] == summaries
    table = format_posts(summaries, 0.5)
    assert "FATIGUE" in table and "0.95" in table and '"sentence 1"' in table
    assert "1 more sentence" in table and "b (1 sentences): no evidence" in table
    assert "1 more post" in format_posts(summaries, 0.5, limit=1)


def test_evidence_threshold_prefers_given_then_checkpoint_then_default():
    assert evidence_threshold({"evidence_threshold": 0.7}, 0.2) == (0.2, "given (pair_threshold)")
    assert evidence_threshold({"evidence_threshold": 0.7}, None)[0] == 0.7
    value, source = evidence_threshold({}, None)
    assert value == DEFAULT_THRESHOLD and "no evidence_threshold" in source


@pytest.mark.parametrize("threshold", [0.0, 0.66, 1.0])
def test_post_summaries_agree_with_the_records(threshold):
    summaries = {s["post_id"]: s for s in post_summaries(["a", "b"], RECORDS, threshold)}
    assert_consistent(summaries, RECORDS, threshold)


def assert_consistent(summaries: dict[str, dict], records: list[dict], threshold: float, top: int = 3) -> None:
    """Every listed sentence is a record of its post at or above the threshold, and every such record
    is listed under its symptom unless that symptom has more than ``top`` of them (then the best ones)."""
    rows = {(r["post_id"], r["sentence_index"], r["symptom"]): r["probability"] for r in records}
    for post_id, summary in summaries.items():
        listed = {s["symptom"]: s for s in summary["symptoms"]}
        for symptom, entry in listed.items():
            for r in entry["top"]:
                assert rows[(post_id, r["sentence_index"], symptom)] == r["probability"] >= threshold
        above: dict[str, list[float]] = {}
        for (p, _, symptom), prob in rows.items():
            if p == post_id and prob >= threshold:
                above.setdefault(symptom, []).append(prob)
        assert set(above) == set(listed)
        for symptom, probs in above.items():
            assert listed[symptom]["evidence_sentences"] == len(probs)
            assert [r["probability"] for r in listed[symptom]["top"]] == sorted(probs, reverse=True)[:top]
