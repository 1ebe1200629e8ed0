"""Task examples from posts, aligned annotations and the criterion texts.

Span tasks ask one question per (post, symptom) over the whole post, so a post with no positive
evidence for a symptom is a no-answer example (SQuAD v2 style); the pair task classifies every
annotated sentence against its symptom's criterion.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from data_prep.errors import ConfigError
from data_prep.records import Alignment, Annotation, Answer, PairExample, QAExample
from data_prep.symptoms import SYMPTOM_ID, SYMPTOMS, criteria, question_for


def _positive_spans(posts: Mapping[str, str], alignments: Sequence[Alignment]) -> dict:
    """(post_id, symptom) -> sorted unique (start, end) of aligned status-1 evidence.

    Unaligned rows are skipped (the alignment report lists them); rows of posts outside
    ``posts`` are skipped too, since callers pass one split's posts with all alignments.
    """
    spans: dict[tuple[str, str], set[tuple[int, int]]] = defaultdict(set)
    for al in alignments:
        a = al.annotation
        if a.status != 1 or al.start is None or al.end is None or a.post_id not in posts:
            continue
        if a.symptom not in SYMPTOM_ID:
            raise ValueError(f"annotation row {a.row}: unknown symptom {a.symptom!r} passed validation")
        if not 0 <= al.start < al.end <= len(posts[a.post_id]):
            raise ValueError(f"annotation row {a.row}: span {al.start}:{al.end} outside post {a.post_id}")
        spans[(a.post_id, a.symptom)].add((al.start, al.end))
    return {key: sorted(value) for key, value in spans.items()}


def span_examples(
    posts: Mapping[str, str], alignments: Sequence[Alignment], question_mode: str
) -> list[QAExample]:
    """One example per (post, symptom); answers sorted by position, none = no-answer."""
    spans = _positive_spans(posts, alignments)
    examples = []
    for post_id, text in posts.items():
        for symptom in SYMPTOMS:
            answers = tuple(Answer(text=text[s:e], start=s) for s, e in spans.get((post_id, symptom), ()))
            examples.append(QAExample(
                example_id=f"{post_id}/{symptom}",
                question=question_for(symptom, question_mode),
                context=text,
                answers=answers,
                group=post_id,
                symptom=symptom,
            ))
    return examples


def _unique_ids(annotations: Sequence[Annotation]) -> list[str]:
    """``<sentence_id>/<SYMPTOM>``; a repeated one gets ``#row<row>`` (then ``#<index>``) appended."""
    base = [f"{a.sentence_id}/{a.symptom}" for a in annotations]
    counts = Counter(base)
    ids = [b if counts[b] == 1 else f"{b}#row{a.row}" for b, a in zip(base, annotations, strict=True)]
    counts = Counter(ids)
    return [x if counts[x] == 1 else f"{x}#{i}" for i, x in enumerate(ids)]


def pair_examples(annotations: Sequence[Annotation]) -> list[PairExample]:
    """One (criterion, sentence) example per annotation, labelled with its status."""
    texts = criteria()
    return [
        PairExample(example_id=eid, criterion=texts[a.symptom], sentence=a.sentence_text,
                    label=int(a.status), symptom=a.symptom, group=a.post_id)
        for eid, a in zip(_unique_ids(annotations), annotations, strict=True)
    ]


def keep_no_answer(
    examples: list[QAExample], ratio: float, seed: int, prefer: set[str] = frozenset()
) -> list[QAExample]:
    """All answerable examples plus ``round(ratio * n_answerable)`` no-answer ones, in order.

    ReDSM5 has ~9 no-answer (post, symptom) pairs per answerable one; training on all of them
    teaches the model to always abstain, and scoring on all of them lets "always abstain" win,
    so splits are subsampled (ratio -1 keeps all). No-answer examples whose id is in ``prefer``
    (hard negatives: the post was annotated for the symptom, status 0) are kept first; the rest
    is a seeded sample.
    """
    if ratio == -1:
        return list(examples)
    if ratio < 0:
        raise ConfigError("features.no_answer_ratio", f"must be >= 0 or -1 (all); got {ratio}")
    no_answer = [i for i, ex in enumerate(examples) if not ex.answers]
    n_keep = min(len(no_answer), round(ratio * (len(examples) - len(no_answer))))
    rng = random.Random(seed)
    hard = [i for i in no_answer if examples[i].example_id in prefer]
    easy = [i for i in no_answer if examples[i].example_id not in prefer]
    kept = set(rng.sample(hard, min(n_keep, len(hard))))
    kept |= set(rng.sample(easy, n_keep - len(kept)))
    return [ex for i, ex in enumerate(examples) if ex.answers or i in kept]
