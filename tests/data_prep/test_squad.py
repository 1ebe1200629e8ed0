"""load_squad_v2 on small SQuAD v2.0 files written here: answers, impossible questions, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from data_prep.records import Answer
from data_prep.squad import load_squad_v2
from plumbing.errors import DataError

CONTEXT = "Normans came from Normandy in France. They gave their name to the region."


def question(qid: str, text: str, answers: list[tuple[str, int]], impossible: bool = False, **extra) -> dict:
    qa = {"id": qid, "question": text, "answers": [{"text": t, "answer_start": s} for t, s in answers],
          "is_impossible": impossible}
    return {**qa, **extra}


def dataset(prefix: str = "q") -> dict:
    return {
        "version": "v2.0",
        "data": [
            {"title": "Normans", "paragraphs": [{"context": CONTEXT, "qas": [
                question(f"{prefix}1", "Where is Normandy?",
                         [("France", 30), ("in France", 27), ("France", 30)]),
                question(f"{prefix}2", "Who named Mars?", [], True,
                         plausible_answers=[{"text": "Normans", "answer_start": 0}]),
            ]}]},
            {"title": "Normans2", "paragraphs": [{"context": CONTEXT, "qas": [
                question(f"{prefix}3", "Who came from Normandy?", [("Normans", 0)]),
            ]}]},
        ],
    }


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def error_of(path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_squad_v2(path)
    return info.value


def test_one_file_gives_train_with_every_gold_answer(tmp_path):
    out = load_squad_v2(write(tmp_path / "any.json", dataset()))
    assert list(out) == ["train"]
    q1, q2, q3 = out["train"]
    assert q1.answers == (Answer("France", 30), Answer("in France", 27), Answer("France", 30))
    assert (q1.example_id, q1.question, q1.context, q1.group, q1.symptom) == (
        "q1", "Where is Normandy?", CONTEXT, "train:Normans", "")
    assert q2.answers == ()  # plausible answers are never gold
    assert q3.group == "train:Normans2"


def test_folder_gives_train_and_dev_with_distinct_groups(tmp_path):
    write(tmp_path / "train-v2.0.json", dataset("t"))
    write(tmp_path / "dev-v2.0.json", dataset("d"))
    out = load_squad_v2(tmp_path)
    assert sorted(out) == ["dev", "train"]
    assert {e.group for e in out["train"]}.isdisjoint({e.group for e in out["dev"]})
    assert [e.example_id for e in out["dev"]] == ["d1", "d2", "d3"]


def test_folder_without_dev(tmp_path):
    write(tmp_path / "train-v2.0.json", dataset())
    assert list(load_squad_v2(tmp_path)) == ["train"]


def test_missing_path_and_missing_train_file(tmp_path):
    assert "nope.json" in str(error_of(tmp_path / "nope.json"))
    write(tmp_path / "dev-v2.0.json", dataset())
    assert "train-v2.0.json" in str(error_of(tmp_path))


def test_invalid_json_gives_line_and_column(tmp_path):
    err = error_of(write(tmp_path / "bad.json", '{"data": [\n  {"title": }\n]}'))
    assert "bad.json" in str(err) and "line 2, column 13" in str(err)


def _broken(edit) -> dict:
    data = copy.deepcopy(dataset())
    edit(data)
    return data


def qa(data: dict, article: int, index: int) -> dict:
    return data["data"][article]["paragraphs"][0]["qas"][index]


QA = "data[0].paragraphs[0].qas[0]"
BAD = {
    "missing key": (lambda d: qa(d, 0, 1).pop("question"),
                    "data[0].paragraphs[0].qas[1]", "question", ["missing key"]),
    "missing context": (lambda d: d["data"][1]["paragraphs"][0].pop("context"),
                        "data[1].paragraphs[0]", "context", ["missing key"]),
    "wrong type": (lambda d: qa(d, 0, 0)["answers"][1].update(answer_start="27"),
                   QA + ".answers[1]", "answer_start", ["must be of type int", "str"]),
    "bool is not int": (lambda d: qa(d, 1, 0)["answers"][0].update(answer_start=True),
                        "data[1].paragraphs[0].qas[0].answers[0]", "answer_start", ["bool"]),
    "answer not at start": (lambda d: qa(d, 0, 0)["answers"][0].update(answer_start=29),
                            QA + ".answers[0]", "answer_start", ["'France'", "' Franc'"]),
    "impossible with answers": (
        lambda d: qa(d, 0, 0).update(is_impossible=True),
        QA, "answers", ["is_impossible is true"]),
    "possible without answers": (
        lambda d: qa(d, 0, 1).update(is_impossible=False),
        "data[0].paragraphs[0].qas[1]", "answers", ["no answers"]),
    "duplicate id": (lambda d: qa(d, 1, 0).update(id="q1"),
                     "data[1].paragraphs[0].qas[0]", "id", ["'q1'", QA]),
    "paragraphs not a list": (lambda d: d["data"][1].update(paragraphs={}),
                              "data[1]", "paragraphs", ["list", "dict"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_path_and_field(tmp_path, case):
    edit, row, field, words = BAD[case]
    err = error_of(write(tmp_path / "train-v2.0.json", _broken(edit)))
    message = str(err)
    assert "train-v2.0.json" in message
    assert (err.row, err.field) == (row, field)
    assert f"row {row}, field '{field}'" in message
    for word in words:
        assert word in message


def test_top_level_without_data(tmp_path):
    err = error_of(write(tmp_path / "x.json", {"version": "v2.0"}))
    assert err.field == "data" and "x.json" in str(err)


def test_duplicate_id_across_train_and_dev(tmp_path):
    write(tmp_path / "train-v2.0.json", dataset())
    write(tmp_path / "dev-v2.0.json", dataset())
    err = error_of(tmp_path)
    assert "dev-v2.0.json" in err.file and err.field == "id"
    assert "train-v2.0.json" in str(err)  # names where the first copy is


def test_several_problems_are_reported_together(tmp_path):
    def edit(d):
        for qa in d["data"][0]["paragraphs"][0]["qas"]:
            qa.pop("is_impossible")
    err = error_of(write(tmp_path / "train-v2.0.json", _broken(edit)))
    assert err.row == QA and err.field == "is_impossible"
    rest = "(and 1 more problems in this file: row data[0].paragraphs[0].qas[1] field 'is_impossible')"
    assert str(err).endswith(rest)
