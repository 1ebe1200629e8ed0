import importlib.util
import random
from pathlib import Path

import pytest

from trainable.squad_metric import exact_match, f1, normalize_answer, squad_v2_scores

_spec = importlib.util.spec_from_file_location(
    "squad_v2_official", Path(__file__).parent / "reference" / "squad_v2_official.py")
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)

WORDS = ["cat", "dog", "sleep", "tired", "mood", "The", "a", "an", "night", "Sad", "sad", "x"]
PUNCT = ["", ",", ".", "!", "'", '"', " -", "?"]


def _official(gold, preds, na_probs=None, thresh=1.0):
    dataset = [{"paragraphs": [{"qas": [{"id": q, "answers": [{"text": t} for t in answers]}
                                        for q, answers in gold.items()]}]}]
    return dict(official.evaluate(dataset, preds, na_probs, thresh))


def _phrase(rng):
    words = [rng.choice(WORDS) + rng.choice(PUNCT) for _ in range(rng.randint(1, 5))]
    return rng.choice(["", " ", "  "]).join(words) if len(words) > 1 else words[0]


def _perturb(rng, text):
    """A variant that often normalises to the same answer or overlaps it partly."""
    kind = rng.randrange(5)
    if kind == 0:
        return text.upper() + rng.choice(PUNCT)
    if kind == 1:
        return "the " + text
    if kind == 2:
        return " ".join(text.split()[: max(1, len(text.split()) // 2)])
    if kind == 3:
        return text + " " + rng.choice(WORDS)
    return text


def _random_case(seed, n=60):
    rng = random.Random(seed)
    gold, preds, na_probs = {}, {}, {}
    for i in range(n):
        qid = f"q{i}"
        n_answers = rng.choice([0, 0, 1, 1, 2, 3])
        answers = [_phrase(rng) for _ in range(n_answers)]
        if answers and rng.random() < 0.1:
            answers.append(rng.choice(["the", "a.", "!"]))  # normalises to nothing
        if rng.random() < 0.05:
            answers = ["an", "."]  # has answers, but none survive normalisation
        gold[qid] = answers
        r = rng.random()
        if r < 0.25:
            preds[qid] = ""
        elif r < 0.7 and answers:
            preds[qid] = _perturb(rng, rng.choice(answers))
        else:
            preds[qid] = _phrase(rng)
        na_probs[qid] = round(rng.random(), 1)  # coarse values: many ties
    return gold, preds, na_probs


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thresh", [1.0, 0.5, 0.0])
def test_matches_official_script_on_random_sets(seed, thresh):
    gold, preds, na_probs = _random_case(seed)
    ours = squad_v2_scores(preds, gold, na_probs, thresh)
    theirs = _official(gold, preds, na_probs, thresh)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("seed", range(4))
def test_matches_official_script_without_na_probs(seed):
    gold, preds, _ = _random_case(seed + 100)
    ours = squad_v2_scores(preds, gold)
    theirs = _official(gold, preds)
    assert ours == pytest.approx(theirs)
    assert "best_f1" not in ours


def test_random_sets_exercise_every_rule():
    """Guard against an oracle comparison that passes because the data never hits a branch."""
    gold, preds, _ = _random_case(0)
    ex = [max(exact_match(preds[q], g) for g in (a or [""])) for q, a in gold.items()]
    f1s = [max(f1(preds[q], g) for g in (a or [""])) for q, a in gold.items()]
    assert 0 < sum(ex) < len(ex)
    assert any(0 < v < 1 for v in f1s)
    assert any(not a for a in gold.values()) and any(len(a) > 1 for a in gold.values())


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
