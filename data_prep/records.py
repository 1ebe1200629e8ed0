"""Typed records that flow between the data_prep stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Post:
    post_id: str
    text: str


@dataclass(frozen=True)
class Annotation:
    """One row of redsm5_annotations.csv; ``row`` is its 1-based data row (header excluded)."""

    post_id: str
    sentence_id: str
    sentence_text: str
    symptom: str
    status: int
    explanation: str = ""
    row: int = 0


@dataclass(frozen=True)
class Alignment:
    """Where an annotation's sentence sits in its post, and which rule found it."""

    annotation: Annotation
    start: int | None  # character offsets into the post text; None when unaligned
    end: int | None
    rule: str  # exact | normalized | sentence_id | fuzzy | unaligned
    similarity: float


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context


@dataclass(frozen=True)
class QAExample:
    """A span example: a question over a context with zero (no-answer) or more gold answers.

    ReDSM5 gives one per (post, symptom); SQuAD v2 one per question. ``group`` is the unit the
    split keeps together (the post, or the SQuAD article).
    """

    example_id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    group: str
    symptom: str = ""


@dataclass(frozen=True)
class PairExample:
    example_id: str
    criterion: str
    sentence: str
    label: int
    symptom: str
    group: str


@dataclass
class Corpus:
    """Posts and annotations of a ReDSM5-format source, plus where they came from."""

    posts: list[Post]
    annotations: list[Annotation]
    source: str
    warnings: dict[str, list[str]] = field(default_factory=dict)  # kind -> ids / messages

    def warn(self, kind: str, item: str) -> None:
        self.warnings.setdefault(kind, []).append(item)
