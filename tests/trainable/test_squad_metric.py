"""SQuAD v2 metric: checked against the official evaluation's numbers on fixed cases, plus hand cases.

The expected numbers live in ``tests/data/squad_v2_official_cases.json``:
37 synthetic cases (unicode, articles, punctuation-only answers, several gold answers, ties in
na_probs, thresholds, no na_probs) with the scores the official ``evaluate-v2.0.py`` logic gives them.
"""

import functools
import json
from pathlib import Path

import pytest

from trainable.squad_metric import exact_match, f1, normalize_answer, squad_v2_scores

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "squad_v2_official_cases.json"
N_CASES = 37


@functools.cache
def official_cases() -> list[dict]:
    """The cases (a file of the repository's tests)."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]


def test_the_fixture_holds_every_case():
    assert len(official_cases()) == N_CASES


@pytest.mark.parametrize("index", range(N_CASES))
def test_matches_the_official_numbers(index):
    case = official_cases()[index]
    ours = squad_v2_scores(case["predictions"], case["gold"], case["na_probs"], case["na_threshold"])
    expected = case["official"]
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key


def test_the_cases_exercise_every_rule():
    """Guard against an oracle comparison that passes because the data never hits a branch."""
    pairs = [(case["predictions"][q], answers) for case in official_cases() for q, answers in case["gold"].items()]
    ex = [max(exact_match(p, g) for g in (a or [""])) for p, a in pairs]
    f1s = [max(f1(p, g) for g in (a or [""])) for p, a in pairs]
    assert 0 < sum(ex) < len(ex)
    assert any(0 < v < 1 for v in f1s)
    assert any(not a for _, a in pairs) and any(len(a) > 1 for _, a in pairs)
    assert any(a and not any(normalize_answer(g) for g in a) for _, a in pairs)  # gold that normalises to ""
    assert any(not p.isascii() for p, _ in pairs)
    probs = [case["na_probs"] for case in official_cases()]
    assert None in probs
    assert any(len(set(na.values())) < len(na) for na in probs if na)  # ties in the threshold sweep


def test_normalisation_and_pair_scores():
    assert normalize_answer("  The  Cat, sat!  ") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert exact_match("Cat sat!", "the cat sat") == 1
    assert f1("big brown dog", "a big dog") == pytest.approx(0.8)
    assert f1("", "") == 1.0 and f1("", "dog") == 0.0 and f1("the", "") == 1.0
    assert f1("dog dog", "dog") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_hand_computed_small_case_with_no_answer():
    gold = {"q1": ["the cat sat"], "q2": ["a big dog", "dog"], "q3": [], "q4": []}
    preds = {"q1": "Cat sat!", "q2": "big brown dog", "q3": "", "q4": "something"}
    out = squad_v2_scores(preds, gold)
    assert out == pytest.approx({"exact": 50.0, "f1": 70.0, "total": 4,
                                 "HasAns_exact": 50.0, "HasAns_f1": 90.0, "HasAns_total": 2,
                                 "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})

    na = {"q1": 0.1, "q2": 0.5, "q3": 0.9, "q4": 0.8}
    out = squad_v2_scores(preds, gold, na, na_threshold=0.6)
    assert out["exact"] == pytest.approx(75.0) and out["f1"] == pytest.approx(95.0)
    assert out["NoAns_exact"] == 100.0
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(75.0), 0.1)
    assert (out["best_f1"], out["best_f1_thresh"]) == (pytest.approx(95.0), 0.5)


def test_only_answerable_questions_have_no_noans_keys():
    out = squad_v2_scores({"a": "x"}, {"a": ["x"]})
    assert out == {"exact": 100.0, "f1": 100.0, "total": 1,
                   "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": 1}


@pytest.mark.parametrize("preds", [{"a": "x"}, {"a": "x", "b": "", "c": "y"}])
def test_missing_or_unknown_predictions_are_errors(preds):
    with pytest.raises(ValueError, match="missing|unknown"):
        squad_v2_scores(preds, {"a": ["x"], "b": []})
