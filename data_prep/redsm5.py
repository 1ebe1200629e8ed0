"""Load and validate the ReDSM5 files (posts as CSV or JSONL, annotations as CSV).

Every value is read as the exact string in the file, so nothing is coerced silently. Row problems
of a file are collected first and reported together in one ``DataError`` (the first one, plus a
short list of the others), so a user fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from data_prep.records import Annotation, Corpus, Post
from data_prep.symptoms import SYMPTOMS
from plumbing.errors import DataError, ProblemLog
from plumbing.files import read_text

POSTS_CSV = "redsm5_posts.csv"
POSTS_JSONL = "redsm5_posts.jsonl"
ANNOTATIONS_CSV = "redsm5_annotations.csv"
POST_COLUMNS = ("post_id", "text")
ANNOTATION_COLUMNS = ("post_id", "sentence_id", "sentence_text", "DSM5_symptom", "status")
STATUS_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
Rows = list[tuple[int, dict[str, str]]]


def read_csv_rows(path: Path, required: tuple[str, ...]) -> tuple[Rows, ProblemLog]:
    """(1-based data row, {column: raw string}) for each well-formed non-blank record, after header
    checks, and the log holding the malformed records (the caller adds its own checks to it)."""
    text = read_text(path)
    if not text.strip():
        raise DataError(str(path), f"the file is empty; expected a header row with {', '.join(required)}")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
        records = [rec for rec in reader if rec]
    except csv.Error as e:
        raise DataError(str(path), f"malformed CSV near line {reader.line_num}: {e}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            str(path),
            f"missing column(s) {', '.join(missing)} in the header row; "
            f"the header has {', '.join(header) or 'nothing'}",
            field=missing[0],
        )
    if not records:
        raise DataError(str(path), "the file has a header but no data rows")
    rows, log = [], ProblemLog(path)
    for i, rec in enumerate(records, start=1):
        if len(rec) != len(header):
            log.add(f"has {len(rec)} fields but the header has {len(header)} (check quoting of commas)", i)
            continue
        rows.append((i, dict(zip(header, rec, strict=True))))
    return rows, log


def _jsonl_posts(path: Path) -> tuple[Rows, ProblemLog]:
    """(line number, {post_id, text}) of each well-formed non-blank JSONL line, and the log of the
    others."""
    text = read_text(path)
    rows, log = [], ProblemLog(path)
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            log.add(f"malformed JSON line: {e.msg} at column {e.colno}", i)
            continue
        if not isinstance(obj, dict):
            log.add(f"expected a JSON object with post_id and text, got {type(obj).__name__}", i)
            continue
        missing = [k for k in POST_COLUMNS if k not in obj]
        if missing:
            log.add(f"missing key(s) {', '.join(missing)}; the object has {', '.join(obj) or 'none'}",
                    i, missing[0])
            continue
        post_id, body = obj["post_id"], obj["text"]
        if isinstance(post_id, int) and not isinstance(post_id, bool):
            post_id = str(post_id)
        if not isinstance(post_id, str):
            log.add(f"post_id must be a string, got {type(post_id).__name__}", i, "post_id")
            continue
        if not isinstance(body, str):
            log.add(f"text must be a string, got {type(body).__name__}", i, "text")
            continue
        rows.append((i, {"post_id": post_id, "text": body}))
    if not rows and not log.items:
        raise DataError(str(path), "the file has no posts (expected one JSON object per line)")
    return rows, log


def read_posts(path: str | Path) -> list[Post]:
    """Posts of one .csv (header post_id,text) or .jsonl file; every problem reported in one DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found; give a .csv (header post_id,text) or .jsonl posts file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows, log = read_csv_rows(path, POST_COLUMNS)
    elif suffix in (".jsonl", ".ndjson"):
        rows, log = _jsonl_posts(path)
    else:
        raise DataError(str(path), f"unknown posts file type {suffix or '(none)'!r}: write the posts as .csv "
                                   "with a header post_id,text or as .jsonl with one {\"post_id\", \"text\"} "
                                   "object per line")
    posts: list[Post] = []
    first_row: dict[str, int] = {}
    for row, values in rows:
        post_id, body = values["post_id"].strip(), values["text"]
        if not post_id:
            log.add("empty post_id", row, "post_id")
        elif not body.strip():
            log.add(f"post {post_id!r} has no text", row, "text")
        elif post_id in first_row:
            log.add(f"duplicate post_id {post_id!r}: rows {first_row[post_id]} and {row}", row, "post_id")
        else:
            first_row[post_id] = row
            posts.append(Post(post_id, body))
    log.raise_first()
    return posts


def _posts(directory: Path) -> list[Post]:
    for name in (POSTS_CSV, POSTS_JSONL):
        if (directory / name).is_file():
            return read_posts(directory / name)
    raise DataError(str(directory), f"no posts file: looked for {POSTS_CSV} and {POSTS_JSONL}")


def parse_status(value: str) -> int | None:
    """0 or 1 from the spellings exports use ("1", "1.0"); None for anything else."""
    return STATUS_VALUES.get(value.strip())


def parse_symptom(value: str) -> str | None:
    name = value.strip().upper()
    return name if name in SYMPTOMS else None


def _annotation(row: int, values: dict[str, str], post_ids: set[str], log: ProblemLog,
                corpus: Corpus, file: str) -> Annotation | None:
    """One validated annotation, or None after logging why the row cannot be used."""
    post_id = values["post_id"].strip()
    status, symptom = parse_status(values["status"]), parse_symptom(values["DSM5_symptom"])
    ok = True
    if post_id not in post_ids:
        ok = False
        log.add(f"post_id {post_id!r} is not in the posts file", row, "post_id")
    if symptom is None:
        ok = False
        log.add(f"unknown symptom {values['DSM5_symptom']!r}; valid: {', '.join(SYMPTOMS)}",
                row, "DSM5_symptom")
    if status is None:
        ok = False
        log.add(f"status must be 0 or 1, got {values['status']!r}", row, "status")
    if not values["sentence_text"].strip():
        ok = False
        log.add("empty sentence_text", row, "sentence_text")
    if not ok:
        return None
    sentence_id = values["sentence_id"].strip()
    if not re.fullmatch(re.escape(post_id) + r"_\d+", sentence_id):
        corpus.warn("bad_sentence_id", f"{file} row {row}")
    return Annotation(post_id, sentence_id, values["sentence_text"], symptom, status,
                      values.get("explanation", ""), row)


def load_redsm5(directory: str | Path) -> Corpus:
    """Posts and annotations of a ReDSM5 folder, validated; a sentence_id that does not follow
    ``<post_id>_<k>`` is kept (alignment falls back to the text) and counted as a warning."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(str(folder), f"directory not found; it should hold {POSTS_CSV} (or {POSTS_JSONL}) "
                                     f"and {ANNOTATIONS_CSV}")
    ann_path = folder / ANNOTATIONS_CSV
    if not ann_path.is_file():
        raise DataError(str(folder), f"no annotations file: looked for {ANNOTATIONS_CSV}")
    posts = _posts(folder)
    corpus = Corpus(posts, [], source=str(directory))
    post_ids = {p.post_id for p in posts}
    rows, log = read_csv_rows(ann_path, ANNOTATION_COLUMNS)
    for row, values in rows:
        ann = _annotation(row, values, post_ids, log, corpus, ann_path.name)
        if ann is not None:
            corpus.annotations.append(ann)
    log.raise_first()
    return corpus
