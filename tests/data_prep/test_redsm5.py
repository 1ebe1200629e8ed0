"""load_redsm5 on small files written here: the good paths and every kind of bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data_prep.redsm5 import load_redsm5
from data_prep.symptoms import SYMPTOMS
from plumbing.errors import DataError

POSTS = 'post_id,text\np1,"I can\'t sleep. I feel sad."\np2,"Line one.\nLine two, with a comma."\n'
ANNOTATIONS = (
    "post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation\n"
    "p1,p1_0,I can't sleep.,SLEEP_ISSUES,1,clear\n"
    "p1,p1_1,I feel sad.,  depressed_mood ,1.0,\n"
    "p2,p2_0,Line one.,FATIGUE,0,not evidence\n"
)


def write(folder: Path, posts: str | bytes | None = POSTS, annotations: str | bytes | None = ANNOTATIONS,
          posts_name: str = "redsm5_posts.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in ((posts_name, posts), ("redsm5_annotations.csv", annotations)):
        if content is not None:
            data = content.encode("utf-8") if isinstance(content, str) else content
            (folder / name).write_bytes(data)
    return folder


def error_of(folder: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_redsm5(folder)
    return info.value


def test_loads_csv_posts_and_annotations(tmp_path):
    corpus = load_redsm5(write(tmp_path))
    assert [p.post_id for p in corpus.posts] == ["p1", "p2"]
    assert corpus.posts[1].text == "Line one.\nLine two, with a comma."
    first, second, third = corpus.annotations
    assert (first.sentence_text, first.symptom, first.status, first.explanation, first.row) == (
        "I can't sleep.", "SLEEP_ISSUES", 1, "clear", 1)
    assert (second.symptom, second.status, second.row) == ("DEPRESSED_MOOD", 1, 2)
    assert (third.status, third.sentence_id, third.row) == (0, "p2_0", 3)
    assert corpus.source == str(tmp_path)
    assert corpus.warnings == {}


def test_bom_is_stripped_and_explanation_is_optional(tmp_path):
    annotations = ("\ufeffpost_id,sentence_id,sentence_text,DSM5_symptom,status\n"
                   "p1,p1_0,I can't sleep.,SLEEP_ISSUES,1\n")
    corpus = load_redsm5(write(tmp_path, posts="\ufeff" + POSTS, annotations=annotations))
    assert corpus.posts[0].post_id == "p1"
    assert corpus.annotations[0].explanation == ""


def test_values_are_not_coerced(tmp_path):
    posts = "post_id,text\n007,NA\n"
    annotations = "post_id,sentence_id,sentence_text,DSM5_symptom,status\n007,007_0,NA,FATIGUE,0\n"
    corpus = load_redsm5(write(tmp_path, posts=posts, annotations=annotations))
    assert corpus.posts[0].post_id == "007" and corpus.posts[0].text == "NA"
    assert corpus.annotations[0].sentence_text == "NA"


def test_jsonl_posts_when_no_csv(tmp_path):
    lines = [{"post_id": "p1", "text": "I can't sleep. I feel sad."}, {"post_id": "p2", "text": "Line one."}]
    jsonl = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    corpus = load_redsm5(write(tmp_path, posts=jsonl, posts_name="redsm5_posts.jsonl"))
    assert [p.text for p in corpus.posts] == ["I can't sleep. I feel sad.", "Line one."]
    assert len(corpus.annotations) == 3


def test_csv_wins_over_jsonl(tmp_path):
    write(tmp_path, posts='{"post_id": "zzz", "text": "x."}\n', posts_name="redsm5_posts.jsonl")
    corpus = load_redsm5(write(tmp_path))
    assert [p.post_id for p in corpus.posts] == ["p1", "p2"]


def test_bad_sentence_id_is_kept_with_a_counted_warning(tmp_path):
    annotations = ANNOTATIONS.replace("p1,p1_1,", "p1,sentence 2,").replace("p2,p2_0,", "p2,p1_0,")
    corpus = load_redsm5(write(tmp_path, annotations=annotations))
    assert len(corpus.annotations) == 3
    rows = ["redsm5_annotations.csv row 2", "redsm5_annotations.csv row 3"]
    assert corpus.warnings["bad_sentence_id"] == rows


def test_missing_directory(tmp_path):
    err = error_of(tmp_path / "nowhere")
    assert "nowhere" in str(err) and "redsm5_posts.csv" in str(err)


def test_missing_posts_file_names_both_candidates(tmp_path):
    err = error_of(write(tmp_path, posts=None))
    assert "redsm5_posts.csv" in str(err) and "redsm5_posts.jsonl" in str(err)


def test_missing_annotations_file(tmp_path):
    assert "redsm5_annotations.csv" in str(error_of(write(tmp_path, annotations=None)))


# (posts, annotations, posts file name, expected file, row, field, words the message must contain)
BAD = {
    "missing column": (POSTS, ANNOTATIONS.replace("DSM5_symptom", "symptom"), None,
                       "redsm5_annotations.csv", None, "DSM5_symptom", ["header", "explanation"]),
    "empty posts": ("", ANNOTATIONS, None, "redsm5_posts.csv", None, None, ["empty"]),
    "header only": (POSTS, ANNOTATIONS.splitlines()[0] + "\n", None,
                    "redsm5_annotations.csv", None, None, ["no data rows"]),
    "not utf-8": (POSTS.replace("sad", "s\xe4d").encode("latin-1"), ANNOTATIONS, None,
                  "redsm5_posts.csv", None, None, ["UTF-8", "byte 40", "line 2"]),
    "not utf-8 after a BOM": (b"\xef\xbb\xbf" + POSTS.replace("sad", "s\xe4d").encode("latin-1"), ANNOTATIONS,
                              None, "redsm5_posts.csv", None, None, ["byte 43", "line 2", "\\xe4"]),
    "malformed jsonl": ('{"post_id": "p1", "text": "I can\'t sleep. I feel sad."}\n{"post_id": "p2", text}\n',
                        ANNOTATIONS, "redsm5_posts.jsonl", "redsm5_posts.jsonl", 2, None, ["JSON"]),
    "jsonl missing key": ('{"post_id": "p1", "text": "I can\'t sleep. I feel sad."}\n{"post_id": "p2"}\n',
                          ANNOTATIONS, "redsm5_posts.jsonl", "redsm5_posts.jsonl", 2, "text", ["missing"]),
    "empty text": (POSTS + "p3,\"  \"\n", ANNOTATIONS, None, "redsm5_posts.csv", 3, "text", ["no text"]),
    "duplicate post": (POSTS + "p1,again.\n", ANNOTATIONS, None, "redsm5_posts.csv", 3, "post_id",
                       ["rows 1 and 3"]),
    "wrong field count": (POSTS + "p3,one,two\n", ANNOTATIONS, None, "redsm5_posts.csv", 3, None, ["fields"]),
    "unknown post": (POSTS, ANNOTATIONS + "p9,p9_0,x.,FATIGUE,1,\n", None,
                     "redsm5_annotations.csv", 4, "post_id", ["p9"]),
    "bad status": (POSTS, ANNOTATIONS.replace(",0,not", ",2,not"), None,
                   "redsm5_annotations.csv", 3, "status", ["0 or 1", "'2'"]),
    "unknown symptom": (POSTS, ANNOTATIONS.replace("FATIGUE", "TIREDNESS"), None,
                        "redsm5_annotations.csv", 3, "DSM5_symptom", list(SYMPTOMS)),
    "empty sentence": (POSTS, ANNOTATIONS.replace("I feel sad.", " "), None,
                       "redsm5_annotations.csv", 2, "sentence_text", ["empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_row_and_field(tmp_path, case):
    posts, annotations, posts_name, file, row, field, words = BAD[case]
    err = error_of(write(tmp_path, posts, annotations, posts_name or "redsm5_posts.csv"))
    message = str(err)
    assert file in message and Path(err.file).name == file
    assert err.row == row and err.field == field
    if row is not None:
        assert f"row {row}" in message
    if field is not None:
        assert f"field '{field}'" in message
    for word in words:
        assert word in message


def test_all_row_problems_are_reported_together(tmp_path):
    bad_rows = "".join(f"p1,p1_{i},x.,FATIGUE,{i + 5},\n" for i in range(8))
    err = error_of(write(tmp_path, annotations=ANNOTATIONS + bad_rows))
    message = str(err)
    assert err.row == 4 and err.field == "status"
    assert "(and 7 more problems in this file: row 5 field 'status'; row 6 field 'status'" in message
    assert re.search(r"row 9 field 'status', \.\.\.\)$", message)
    assert "row 10" not in message


def test_malformed_and_invalid_rows_are_reported_in_row_order(tmp_path):
    # row 2: too many fields; row 3: fine; row 4: duplicate of row 1; row 5: too many fields
    posts = POSTS.replace("p2,", "p2,x,y\np4,", 1) + "p1,again.\n" + "p3,one,two\n"
    err = error_of(write(tmp_path, posts=posts))
    assert err.row == 2 and "fields" in str(err)
    assert "(and 2 more problems in this file: row 4 field 'post_id'; row 5)" in str(err)
