"""Load and validate SQuAD v2.0 JSON files into span examples.

Every gold answer of a question is kept, duplicates included, because the official metric takes
the maximum over them. Problems are located by a JSON path (``data[3].paragraphs[0].qas[5]``) so a
user can find the entry in a file that is one long line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_prep.records import Answer, QAExample
from plumbing.errors import DataError, ProblemLog
from plumbing.files import read_text

FILES = {"train": "train-v2.0.json", "dev": "dev-v2.0.json"}


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, log: ProblemLog) -> Any:
    """``obj[key]`` when present and of the right type, else None after logging the problem."""
    if key not in obj:
        hint = "; SQuAD v1.1 files lack it, use the v2.0 files" if key == "is_impossible" else ""
        log.add(f"missing key '{key}' (required by the SQuAD v2.0 format{hint})", where, key)
        return None
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        log.add(f"'{key}' must be of type {names}, got {type(value).__name__}", where, key)
        return None
    return value


def _answers(qa: dict, context: str, where: str, log: ProblemLog) -> tuple[Answer, ...] | None:
    raw = _get(qa, "answers", list, where, log)
    if raw is None:
        return None
    answers = []
    for j, ans in enumerate(raw):
        at = f"{where}.answers[{j}]"
        if not isinstance(ans, dict):
            log.add(f"an answer must be an object, got {type(ans).__name__}", at, "answers")
            return None
        text, start = _get(ans, "text", str, at, log), _get(ans, "answer_start", int, at, log)
        if text is None or start is None:
            return None
        found = context[start:start + len(text)]
        if found != text:
            log.add(f"answer text {text!r} is not at answer_start {start}: the context there reads "
                    f"{found!r}; fix answer_start or the answer text", at, "answer_start")
            return None
        answers.append(Answer(text, start))
    return tuple(answers)


def _question(qa: Any, context: str, group: str, where: str, log: ProblemLog) -> QAExample | None:
    if not isinstance(qa, dict):
        log.add(f"a question must be an object, got {type(qa).__name__}", where)
        return None
    qid, question = _get(qa, "id", str, where, log), _get(qa, "question", str, where, log)
    impossible = _get(qa, "is_impossible", bool, where, log)
    if "plausible_answers" in qa:  # read for validation only: they are not gold answers
        _get(qa, "plausible_answers", list, where, log)
    answers = _answers(qa, context, where, log)
    if None in (qid, question, impossible, answers):
        return None
    if impossible and answers:
        log.add(f"is_impossible is true but {len(answers)} answer(s) are given "
                "(unanswerable questions keep theirs in plausible_answers)", where, "answers")
        return None
    if not impossible and not answers:
        log.add("is_impossible is false but there are no answers", where, "answers")
        return None
    return QAExample(qid, question, context, answers, group)


def _paragraphs(article: dict, group: str, where: str, log: ProblemLog) -> list[tuple[str, QAExample]]:
    """(JSON path, example) for every valid question of one article."""
    out = []
    for p, para in enumerate(_get(article, "paragraphs", list, where, log) or []):
        at = f"{where}.paragraphs[{p}]"
        if not isinstance(para, dict):
            log.add(f"a paragraph must be an object, got {type(para).__name__}", at)
            continue
        context, qas = _get(para, "context", str, at, log), _get(para, "qas", list, at, log)
        if context is None or qas is None:
            continue
        for q, qa in enumerate(qas):
            example = _question(qa, context, group, f"{at}.qas[{q}]", log)
            if example is not None:
                out.append((f"{at}.qas[{q}]", example))
    return out


def load_squad_file(path: str | Path, key: str, seen: dict[str, str] | None = None) -> list[QAExample]:
    """The examples of one SQuAD v2.0 file; ``seen`` (id -> where) catches ids repeated across files."""
    path = Path(path)
    try:
        root = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"invalid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    log = ProblemLog(path)
    if not isinstance(root, dict):
        raise DataError(str(path), f"the top level must be an object with 'data', got {type(root).__name__}")
    seen = {} if seen is None else seen
    examples = []
    for a, article in enumerate(_get(root, "data", list, "(top level)", log) or []):
        where = f"data[{a}]"
        if not isinstance(article, dict):
            log.add(f"an article must be an object, got {type(article).__name__}", where)
            continue
        title = _get(article, "title", str, where, log)
        for at, example in _paragraphs(article, f"{key}:{title}", where, log):
            if example.example_id in seen:
                log.add(f"duplicate question id {example.example_id!r}, also at {seen[example.example_id]}; "
                        "question ids must be unique",
                        at, "id")
                continue
            seen[example.example_id] = f"{path.name} {at}"
            examples.append(example)
    log.raise_first()
    if not examples:
        raise DataError(str(path), "the file has no questions")
    return examples


def load_squad_v2(path: str | Path) -> dict[str, list[QAExample]]:
    """{"train": [...]} for one JSON file; {"train", "dev"} for a folder with the official files."""
    source = Path(path)
    if source.is_file():
        return {"train": load_squad_file(source, "train")}
    if not source.is_dir():
        raise DataError(str(source), "not found: give a SQuAD v2.0 JSON file or a folder holding "
                                     f"{FILES['train']} (and optionally {FILES['dev']})")
    if not (source / FILES["train"]).is_file():
        raise DataError(str(source), f"no {FILES['train']} in this folder "
                                     f"(looked for {', '.join(FILES.values())})")
    seen: dict[str, str] = {}
    out = {}
    for key, name in FILES.items():
        if (source / name).is_file():
            out[key] = load_squad_file(source / name, key, seen)
    return out
