"""Task examples from posts, aligned annotations and the criterion texts.

Span tasks ask one question per (post, symptom) over the whole post, so a post with no positive
evidence for a symptom is a no-answer example (SQuAD v2 style); the pair task classifies every
annotated sentence against its symptom's criterion, plus every evidence sentence against other
symptoms' criteria (``cross_negatives``): without those, nothing shows the model an evidence
sentence under the wrong criterion, and it learns "is this sentence depressive" instead of "is it
evidence for this symptom".
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from data_prep.records import Alignment, Annotation, Answer, PairExample, QAExample
from data_prep.symptoms import SYMPTOM_ID, SYMPTOMS, criteria, question_for
from data_prep.text import normalize
from plumbing.errors import ConfigError

ANNOTATED, CROSS = "annotated", "cross"  # the ``kind`` of a pair example (examples table column)


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


@dataclass(frozen=True)
class CrossPair(PairExample):
    """An evidence sentence under another symptom's criterion: label 0, built, not annotated.

    ``hard``: that symptom has evidence elsewhere in the same post (symptoms that co-occur are the
    ones a model that ignores the criterion confuses).
    """

    hard: bool = False


def kind_of(example: PairExample) -> str:
    return CROSS if isinstance(example, CrossPair) else ANNOTATED


def sentence_key(post_id: str, sentence: str) -> tuple[str, str]:
    """What makes two annotation rows the same sentence: the post and the normalised text (a row
    copied with other quotes, case or spacing is the same sentence; a reworded one is not)."""
    return post_id, normalize(sentence)


def cross_negatives(annotations: Sequence[Annotation], ratio: int, seed: int) -> list[CrossPair]:
    """Label-0 pairs of each evidence sentence (status 1) with up to ``ratio`` other symptoms' criteria.

    Never a symptom the same sentence is annotated for (either status: evidence must not become a
    negative, and a status-0 row already is that pair). Symptoms with evidence elsewhere in the post
    come first, then the rest; within each, a sample seeded by ``seed`` and the sentence (post id and
    normalised text), so the choice does not depend on the order or the company of the rows.
    ``ratio`` -1 takes all of them (every evidence sentence then has a score under all ten criteria,
    which the rank metrics need). The sentence text and id are the first evidence row's.
    """
    if ratio < 0 and ratio != -1:
        raise ConfigError("features.cross_negative_ratio", f"must be >= 0 or -1 (all); got {ratio}")
    annotated: dict[tuple[str, str], set[str]] = defaultdict(set)
    evidence: dict[tuple[str, str], Annotation] = {}
    in_post: dict[str, set[str]] = defaultdict(set)
    for a in annotations:
        key = sentence_key(a.post_id, a.sentence_text)
        annotated[key].add(a.symptom)
        if a.status == 1:
            evidence.setdefault(key, a)
            in_post[a.post_id].add(a.symptom)
    out = []
    for key, a in evidence.items():
        others = [s for s in SYMPTOMS if s not in annotated[key]]
        hard = [s for s in others if s in in_post[a.post_id]]
        easy = [s for s in others if s not in in_post[a.post_id]]
        n = len(others) if ratio == -1 else min(ratio, len(others))
        rng = random.Random(f"{seed}/cross/{key[0]}/{key[1]}")
        chosen = set(rng.sample(hard, min(n, len(hard))))
        chosen |= set(rng.sample(easy, n - len(chosen)))
        out += [(a, s, s in in_post[a.post_id]) for s in SYMPTOMS if s in chosen]
    return _cross_pairs(out)


def _cross_pairs(chosen: list[tuple[Annotation, str, bool]]) -> list[CrossPair]:
    """``<sentence_id>/<SYMPTOM>#cross`` (``#cross-row<row>`` when two sentences share an id)."""
    texts = criteria()
    ids = [f"{a.sentence_id}/{s}#cross" for a, s, _ in chosen]
    counts = Counter(ids)
    ids = [x if counts[x] == 1 else f"{x}-row{a.row}" for x, (a, _, _) in zip(ids, chosen, strict=True)]
    return [CrossPair(example_id=eid, criterion=texts[s], sentence=a.sentence_text, label=0, symptom=s,
                      group=a.post_id, hard=hard)
            for eid, (a, s, hard) in zip(ids, chosen, strict=True)]


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
