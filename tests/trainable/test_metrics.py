import json

import numpy as np
import pytest

from data_prep.symptoms import SYMPTOM_ID, SYMPTOMS
from trainable.metrics import (
    best_f1_threshold,
    bio_to_token_spans,
    own_rank_metrics,
    pair_metrics,
    span_prf,
    token_spans_to_chars,
)

SLEEP, MOOD = SYMPTOM_ID["SLEEP_ISSUES"], SYMPTOM_ID["DEPRESSED_MOOD"]


def test_pair_metrics_hand_computed():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    probs = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5, 0.8])
    symptoms = np.array([SLEEP] * 4 + [MOOD] * 4)
    out = pair_metrics(labels, probs, symptoms)
    # predicted positive (>= 0.5): idx 0, 1, 3, 6, 7 -> tp 3 (0, 1, 7), fp 2 (3, 6), fn 1 (2), tn 2
    assert out["confusion"] == {"tn": 2, "fp": 2, "fn": 1, "tp": 3}
    assert out["precision"] == pytest.approx(3 / 5) and out["recall"] == pytest.approx(3 / 4)
    assert out["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert out["accuracy"] == pytest.approx(5 / 8)
    # AUC = share of (positive, negative) pairs ranked right: 0.9 and 0.8 beat all 4 negatives,
    # 0.6 beats 3 (not 0.7), 0.2 beats 1 (0.1)
    assert out["roc_auc"] == pytest.approx((4 + 3 + 1 + 4) / 16)
    assert 0 < out["pr_auc"] <= 1
    sleep = out["per_symptom"]["SLEEP_ISSUES"]
    assert sleep == pytest.approx({"n": 4, "positives": 3, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    mood = out["per_symptom"]["DEPRESSED_MOOD"]
    assert mood == pytest.approx({"n": 4, "positives": 1, "precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert set(out["per_symptom"]) == {"SLEEP_ISSUES", "DEPRESSED_MOOD"}
    json.dumps(out)  # plain Python values only


def test_pair_metrics_threshold_and_single_class():
    labels = np.zeros(4, dtype=np.int8)
    out = pair_metrics(labels, np.array([0.1, 0.4, 0.6, 0.2]), np.zeros(4, dtype=np.int8), threshold=0.5)
    assert out["roc_auc"] is None and out["pr_auc"] is None
    assert out["precision"] == 0.0 and out["recall"] == 0.0
    assert out["confusion"] == {"tn": 3, "fp": 1, "fn": 0, "tp": 0}
    out = pair_metrics(labels, np.array([0.1, 0.4, 0.6, 0.2]), np.zeros(4), threshold=0.7)
    assert out["accuracy"] == 1.0


def test_pair_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        pair_metrics(np.array([0, 1]), np.array([0.5]), np.array([0, 0]))
    with pytest.raises(ValueError, match="symptom ids"):
        pair_metrics(np.array([0, 1]), np.array([0.5, 0.5]), np.array([0, 10]))


def _sentence(key: int, own: dict[int, int], scores: list[float]) -> list[tuple[int, int, int, float]]:
    """(sentence key, symptom id, label, probability) rows of one sentence scored under every criterion
    in ``scores`` (by symptom id); ``own``: symptom id -> label of its annotated rows."""
    return [(key, sid, own.get(sid, 0), p) for sid, p in enumerate(scores)]


def _columns(rows):
    return [np.array(c) for c in zip(*rows, strict=True)]


def test_own_rank_metrics_hand_computed():
    flat = [0.1] * 10
    rows = (
        _sentence(0, {SLEEP: 1}, [*flat[:SLEEP], 0.9, *flat[SLEEP + 1:]])  # own first: rank 1
        + _sentence(1, {MOOD: 1}, [0.5, 0.6, 0.7, 0.2, *flat[4:]])  # MOOD (0) third: rank 3, top APPETITE
        # evidence for MOOD and SLEEP both: each is ranked without the other (MOOD's 0.8 < SLEEP's 0.9 is
        # no error), so both rank first
        + _sentence(2, {MOOD: 1, SLEEP: 1}, [0.8, 0.3, 0.3, 0.9, *flat[4:]])
        + _sentence(3, {SLEEP: 1}, [0.4] * 10)  # all tied: counts against the own symptom (rank 10)
    )
    out = own_rank_metrics(*_columns(rows))
    # ranked: s0 SLEEP 1, s1 MOOD 3, s2 MOOD 1, s2 SLEEP 1, s3 SLEEP 10
    assert out["own_n"] == 5 and out["own_skipped"] == 0
    assert out["own_top1"] == pytest.approx(3 / 5)
    assert out["own_mrr"] == pytest.approx((1 + 1 / 3 + 1 + 1 + 1 / 10) / 5)
    matrix = np.array(out["symptom_confusion"]["matrix"])
    assert out["symptom_confusion"]["symptoms"] == list(SYMPTOMS) and matrix.sum() == 5
    assert matrix[SLEEP, SLEEP] == 2 and matrix[MOOD, MOOD] == 1 and matrix[MOOD, SYMPTOM_ID["APPETITE_CHANGE"]] == 1
    assert matrix[SLEEP].sum() == 3 and matrix[SLEEP, MOOD] == 1  # s3: a tie goes to another symptom
    json.dumps(out)


def test_own_rank_metrics_skip_sentences_without_every_criterion():
    partial = [(0, SLEEP, 1, 0.9), (0, MOOD, 0, 0.2)]  # only two criteria scored
    out = own_rank_metrics(*_columns(partial))
    assert out["own_n"] == 0 and out["own_skipped"] == 1 and out["own_top1"] is None and out["own_mrr"] is None
    rows = _sentence(5, {SLEEP: 1}, [0.2] * 10) + [(5, MOOD, 0, 0.95)]  # two rows for MOOD: the higher counts
    out = own_rank_metrics(*_columns(rows))
    assert out["own_mrr"] == pytest.approx(1 / 10)  # SLEEP ties eight (0.2) and loses to MOOD 0.95
    assert np.array(out["symptom_confusion"]["matrix"])[SLEEP, MOOD] == 1


def test_best_f1_threshold():
    labels = np.array([1, 1, 0, 1, 0, 0])
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1])
    f1, threshold = best_f1_threshold(labels, probs)
    # >= 0.6: tp 3, fp 1 -> F1 6/7; >= 0.8: tp 2 -> F1 0.8; >= 0.3: 3 / 5 predicted -> 0.75
    assert threshold == pytest.approx(0.6) and f1 == pytest.approx(6 / 7)
    assert pair_metrics(labels, probs, np.zeros(6), threshold=threshold)["f1"] == pytest.approx(f1)
    assert best_f1_threshold(np.zeros(3), np.array([0.2, 0.5, 0.9])) == (None, None)


@pytest.mark.parametrize("tags, spans", [
    ([0, 1, 2, 2, 0, 1, 0], [(1, 3), (5, 5)]),
    ([1, 1, 2], [(0, 0), (1, 2)]),
    ([2, 2, 0, 2], [(0, 1), (3, 3)]),  # I without B opens a span
    ([0, 1, 2], [(1, 2)]),  # a span running to the end
    ([-100, 1, 2, -100], [(1, 2)]),  # ignore labels close spans like O
    ([], []),
    ([0, 0], []),
])
def test_bio_to_token_spans(tags, spans):
    assert bio_to_token_spans(tags) == spans


def test_token_spans_to_chars():
    starts, ends = [-1, 0, 2, 9, -1], [-1, 1, 8, 14, -1]
    assert token_spans_to_chars([(1, 1), (2, 3)], starts, ends) == [(0, 1), (2, 14)]
    with pytest.raises(ValueError, match="non-context"):
        token_spans_to_chars([(3, 4)], starts, ends)
    with pytest.raises(ValueError, match="outside"):
        token_spans_to_chars([(3, 5)], starts, ends)


def test_span_prf_micro_over_examples():
    gold = {"a": {(0, 5), (10, 20)}, "b": {(3, 4)}, "c": set()}
    pred = {"a": {(0, 5), (11, 20)}, "c": {(1, 2)}}
    out = span_prf(pred, gold)
    assert (out["tp"], out["n_pred"], out["n_gold"]) == (1, 3, 3)
    assert out["precision"] == pytest.approx(1 / 3) and out["recall"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(1 / 3)


def test_span_prf_edge_cases():
    assert span_prf({}, {"a": set()})["f1"] == 1.0
    assert span_prf({}, {"a": {(0, 1)}}) == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                             "tp": 0, "n_pred": 0, "n_gold": 1}
    with pytest.raises(ValueError, match="unknown"):
        span_prf({"z": {(0, 1)}}, {"a": set()})
