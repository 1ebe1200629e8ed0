"""The DSM-5 symptom vocabulary and the criterion texts used as questions / first segments."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SYMPTOMS: tuple[str, ...] = (
    "DEPRESSED_MOOD",
    "ANHEDONIA",
    "APPETITE_CHANGE",
    "SLEEP_ISSUES",
    "PSYCHOMOTOR",
    "FATIGUE",
    "WORTHLESSNESS",
    "COGNITIVE_ISSUES",
    "SUICIDAL_THOUGHTS",
    "SPECIAL_CASE",
)
SYMPTOM_ID: dict[str, int] = {name: i for i, name in enumerate(SYMPTOMS)}


@lru_cache(maxsize=1)
def criteria() -> dict[str, str]:
    """Criterion text per symptom, kept in a data file so wording changes need no code change."""
    text = resources.files("data_prep").joinpath("criteria.json").read_text(encoding="utf-8")
    table = json.loads(text)
    missing = set(SYMPTOMS) - set(table)
    if missing:  # a packaging bug, not a user error
        raise RuntimeError(f"criteria.json lacks {sorted(missing)}")
    return {name: table[name] for name in SYMPTOMS}


def question_for(symptom: str, mode: str) -> str:
    """The question text of a span example: the criterion, the symptom's name, or nothing."""
    if mode == "criterion":
        return criteria()[symptom]
    if mode == "symptom":
        return symptom.replace("_", " ").lower()
    return ""
