"""Locate each annotated sentence in its post as a character span, recording the rule that found it.

Copies of ReDSM5 differ from the posts in quotes, case, whitespace and wording, so the rules go from
strict to lenient (exact, normalized, sentence_id, fuzzy) and the first that succeeds wins; the rest
stay ``unaligned`` with the best similarity seen, for the report.

The last two rules score every sentence of the post, and every pair of adjacent sentences, against
the copy with ``TfidfSpace`` (word and character n-gram TF-IDF, idf fitted on all the corpus's
sentences), which survives synonyms, reordered clauses and dropped words. Both take the post's most
similar candidate: ``sentence_id`` when it starts at the k-th sentence of the row's id (two signals
agree, so a lower threshold is enough), ``fuzzy`` anywhere. A wrong id therefore never pulls a copy
to a look-alike sentence that scores lower than the right one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from data_prep.config import DataConfig
from data_prep.records import Alignment, Annotation
from data_prep.text import TfidfSpace, normalize, normalize_with_map, span_end, split_sentences, trim_span

RULES = ("exact", "normalized", "sentence_id", "fuzzy", "unaligned")


@dataclass
class _Post:
    """One post's text with the derived views the rules need, each computed once per post."""

    text: str

    @cached_property
    def sentences(self) -> list[tuple[int, int]]:
        return split_sentences(self.text)

    @cached_property
    def normalized(self) -> tuple[str, list[int]]:
        return normalize_with_map(self.text)

    @cached_property
    def candidates(self) -> list[tuple[int, int]]:
        """Similarity candidates: every sentence, then every window of two consecutive sentences."""
        pairs = [(a[0], b[1]) for a, b in zip(self.sentences, self.sentences[1:], strict=False)]
        return self.sentences + pairs

    @cached_property
    def windows(self) -> list[tuple[int, int]]:
        """``candidates`` as (first, last + 1) sentence numbers within the post."""
        n = len(self.sentences)
        return [(i, i + 1) for i in range(n)] + [(i, i + 2) for i in range(n - 1)]


class _Corpus:
    """The posts, and the TF-IDF space of all their sentences, fitted on first use (a corpus whose rows
    are all exact or normalized copies never pays for it)."""

    def __init__(self, posts: Mapping[str, str]):
        self.posts = {post_id: _Post(text) for post_id, text in posts.items()}
        self._vectors: dict[str, list] = {}

    @cached_property
    def space(self) -> tuple[TfidfSpace, dict[str, int]]:
        """The space and, per post, the index of its first sentence in it."""
        texts, first = [], {}
        for post_id, post in self.posts.items():
            first[post_id] = len(texts)
            texts += [post.text[s:e] for s, e in post.sentences]
        return TfidfSpace(texts), first

    def scores(self, post_id: str, query: str) -> np.ndarray:
        """Similarity of ``query`` to each of the post's ``candidates``."""
        space, first = self.space
        if post_id not in self._vectors:
            offset = first[post_id]
            windows = [(i + offset, j + offset) for i, j in self.posts[post_id].windows]
            self._vectors[post_id] = space.vectors(windows)
        return space.scores(self._vectors[post_id], query)


def sentence_index(sentence_id: str) -> int | None:
    """k of a ``<post_id>_<k>`` id (post ids may contain underscores), or None if there is none."""
    _, sep, tail = sentence_id.rpartition("_")
    return int(tail) if sep and tail.isascii() and tail.isdigit() else None


def _occurrences(haystack: str, needle: str) -> Iterable[int]:
    start = haystack.find(needle)
    while start >= 0:
        yield start
        start = haystack.find(needle, start + 1)


def _pick(starts: Iterable[int], kth: tuple[int, int] | None, to_original=lambda i: i) -> int | None:
    """The first occurrence starting inside the k-th sentence, else the first occurrence."""
    first = None
    for start in starts:
        if kth is None or kth[0] <= to_original(start) < kth[1]:
            return start
        first = start if first is None else first
    return first


def _align_one(ann: Annotation, corpus: _Corpus, sentence_threshold: float, fuzzy_threshold: float):
    """(start, end, rule, similarity) for one annotation."""
    post = corpus.posts.get(ann.post_id)
    query = ann.sentence_text.strip()
    if post is None or not query:
        return None, None, "unaligned", 0.0
    k = sentence_index(ann.sentence_id)
    kth = post.sentences[k] if k is not None and k < len(post.sentences) else None

    start = _pick(_occurrences(post.text, query), kth)
    if start is not None:
        return start, start + len(query), "exact", 1.0

    norm_query = normalize(query)
    if not norm_query or not post.candidates:  # only invisible chars (or no sentence): nothing to look for
        return None, None, "unaligned", 0.0
    norm_text, index = post.normalized
    start = _pick(_occurrences(norm_text, norm_query), kth, lambda i: index[i])
    if start is not None:
        s, e = trim_span(post.text, index[start], span_end(post.text, index[start + len(norm_query) - 1]))
        return s, e, "normalized", 1.0

    scores = corpus.scores(ann.post_id, query)
    best = int(np.argmax(scores))  # the first of equals: a sentence before a pair, an earlier one first
    span, similarity = post.candidates[best], float(scores[best])
    if kth is not None and span[0] == kth[0] and similarity >= sentence_threshold:
        return *span, "sentence_id", similarity
    if similarity >= fuzzy_threshold:
        return *span, "fuzzy", similarity
    return None, None, "unaligned", similarity


def align_annotations(
    posts: Mapping[str, str],
    annotations: Sequence[Annotation],
    sentence_threshold: float = DataConfig.sentence_threshold,
    fuzzy_threshold: float = DataConfig.fuzzy_threshold,
) -> list[Alignment]:
    """One Alignment per annotation, in order. An annotation whose post is missing or whose sentence
    text is empty stays unaligned (similarity 0.0), so the report lists it instead of losing it.
    Similarity weighs words by their idf over the sentences of all ``posts``."""
    corpus = _Corpus(posts)
    out = []
    for ann in annotations:
        start, end, rule, sim = _align_one(ann, corpus, sentence_threshold, fuzzy_threshold)
        out.append(Alignment(annotation=ann, start=start, end=end, rule=rule, similarity=float(sim)))
    return out


def rule_counts(alignments: Iterable[Alignment]) -> dict[str, int]:
    """How many annotations each rule aligned; every rule is a key, zeros included."""
    counts = dict.fromkeys(RULES, 0)
    for a in alignments:
        counts[a.rule] += 1
    return counts


def unaligned_ids(alignments: Iterable[Alignment]) -> list[str]:
    """``<sentence_id>/<symptom>`` of each unaligned annotation (``row <n>/<symptom>`` without an id)."""
    ids = []
    for a in alignments:
        if a.rule == "unaligned":
            ann = a.annotation
            ids.append(f"{ann.sentence_id or f'row {ann.row}'}/{ann.symptom}")
    return ids
