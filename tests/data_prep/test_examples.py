"""Cross negatives of the pair task: evidence sentences under other symptoms' criteria."""

from __future__ import annotations

import random

import pytest

from data_prep.examples import CROSS, CrossPair, cross_negatives, pair_examples
from data_prep.features import pair_examples_table
from data_prep.records import Annotation
from data_prep.symptoms import SYMPTOMS, criteria
from plumbing.errors import ConfigError

SLEEP = "I can't fall asleep until 3am most nights."
TIRED = "I'm exhausted all the time."
BOTH = "I'm too tired to even enjoy gaming anymore."
FINE = "I sleep fine these days."


def _rows(*rows: tuple[str, int, str, str, int]) -> list[Annotation]:
    return [Annotation(post, f"{post}_{k}", text, symptom, status, row=i)
            for i, (post, k, text, symptom, status) in enumerate(rows, 1)]


# p1: SLEEP and TIRED are evidence, BOTH for two symptoms, FINE annotated as not SLEEP_ISSUES evidence;
# p2: one evidence sentence, also annotated (status 0) for FATIGUE, once more with other quotes and case.
ANNOTATIONS = _rows(
    ("p1", 0, SLEEP, "SLEEP_ISSUES", 1),
    ("p1", 1, TIRED, "FATIGUE", 1),
    ("p1", 2, BOTH, "FATIGUE", 1),
    ("p1", 2, BOTH, "ANHEDONIA", 1),
    ("p1", 3, FINE, "SLEEP_ISSUES", 0),
    ("p2", 0, SLEEP, "SLEEP_ISSUES", 1),
    ("p2", 0, SLEEP.lower().replace("'", "\u2019"), "FATIGUE", 0),
)


def _by_sentence(cross: list[CrossPair]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for ex in cross:
        out.setdefault((ex.group, ex.sentence), []).append(ex.symptom)
    return out


def test_cross_negatives_pair_each_evidence_sentence_with_other_criteria():
    cross = cross_negatives(ANNOTATIONS, 2, seed=42)
    assert all(isinstance(ex, CrossPair) and ex.label == 0 and ex.criterion == criteria()[ex.symptom]
               for ex in cross)
    found = _by_sentence(cross)
    # every evidence sentence once (BOTH's two rows are one sentence), FINE (status 0) never
    assert set(found) == {("p1", SLEEP), ("p1", TIRED), ("p1", BOTH), ("p2", SLEEP)}
    assert all(len(symptoms) == 2 for symptoms in found.values())
    ids = [ex.example_id for ex in cross]
    assert len(set(ids)) == len(ids) and all(i.endswith("#cross") for i in ids)
    assert "p1_0/FATIGUE#cross" in ids  # <sentence_id>/<SYMPTOM>, like the annotated ids


def test_cross_negatives_never_contradict_an_annotation():
    found = _by_sentence(cross_negatives(ANNOTATIONS, -1, seed=42))
    assert not {"FATIGUE", "ANHEDONIA"} & set(found[("p1", BOTH)])  # evidence for both: never a negative
    assert "SLEEP_ISSUES" not in found[("p1", SLEEP)]
    # p2's sentence is already a status-0 FATIGUE example (a copy with other quotes and case)
    assert set(found[("p2", SLEEP)]) == set(SYMPTOMS) - {"SLEEP_ISSUES", "FATIGUE"}
    assert len(found[("p1", SLEEP)]) == 9 and len(found[("p1", BOTH)]) == 8


def test_cross_negatives_take_symptoms_of_the_same_post_first():
    # p1 has evidence for SLEEP_ISSUES, FATIGUE and ANHEDONIA: SLEEP's sentence gets those two first
    cross = cross_negatives(ANNOTATIONS, 2, seed=42)
    sleep = [ex for ex in cross if ex.group == "p1" and ex.sentence == SLEEP]
    assert {ex.symptom for ex in sleep} == {"FATIGUE", "ANHEDONIA"} and all(ex.hard for ex in sleep)
    one = [ex for ex in cross_negatives(ANNOTATIONS, 1, seed=7) if ex.group == "p1" and ex.sentence == SLEEP]
    assert len(one) == 1 and one[0].symptom in {"FATIGUE", "ANHEDONIA"}
    four = [ex for ex in cross_negatives(ANNOTATIONS, 4, seed=42) if ex.group == "p1" and ex.sentence == SLEEP]
    assert sum(ex.hard for ex in four) == 2 and len(four) == 4  # then two others
    assert not any(ex.hard for ex in cross_negatives(ANNOTATIONS, -1, seed=42) if ex.group == "p2")


def test_cross_negatives_are_seeded_and_independent_of_row_order():
    annotations = _rows(*((f"p{i}", 0, f"Sentence number {i} of the corpus.", SYMPTOMS[i % 10], 1)
                          for i in range(40)))
    first = cross_negatives(annotations, 3, seed=1)
    shuffled = annotations.copy()
    random.Random(0).shuffle(shuffled)
    assert sorted(cross_negatives(shuffled, 3, seed=1), key=lambda e: e.example_id) == \
        sorted(first, key=lambda e: e.example_id)
    assert cross_negatives(annotations, 3, seed=1) == first
    other = cross_negatives(annotations, 3, seed=2)
    assert {e.example_id for e in other} != {e.example_id for e in first}
    assert all(len(v) == 3 for v in _by_sentence(other).values())


def test_all_ten_criteria_per_evidence_sentence_with_ratio_minus_one():
    examples = pair_examples(ANNOTATIONS) + cross_negatives(ANNOTATIONS, -1, seed=3)
    table = pair_examples_table(examples).to_pylist()
    by_key: dict[int, set[str]] = {}
    for row in table:
        by_key.setdefault(row["sentence_key"], set()).add(row["symptom"])
    evidence_keys = {row["sentence_key"] for row in table if row["label"] == 1}
    assert all(by_key[k] == set(SYMPTOMS) for k in evidence_keys)
    assert len(evidence_keys) == 4  # p1: SLEEP, TIRED, BOTH; p2: SLEEP (p1's and p2's SLEEP differ by post)
    assert {row["kind"] for row in table if row["example_id"].endswith("#cross")} == {CROSS}


def test_cross_negative_ratio_zero_and_bad_values():
    assert cross_negatives(ANNOTATIONS, 0, seed=1) == []
    with pytest.raises(ConfigError, match="cross_negative_ratio"):
        cross_negatives(ANNOTATIONS, -2, seed=1)
