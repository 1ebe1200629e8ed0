"""Locate each annotated sentence in its post as a character span, recording the rule that found it.

Copies of ReDSM5 differ from the posts in quotes, case, whitespace and wording, so the rules go from
strict to lenient (exact, normalized, sentence_id, fuzzy) and the first that succeeds wins; the rest
stay ``unaligned`` with the best similarity seen, for the report.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from data_prep.records import Alignment, Annotation
from data_prep.text import (
    SimilarityScorer,
    normalize,
    normalize_with_map,
    span_end,
    split_sentences,
    trim_span,
    word_counts,
)

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
        """Fuzzy candidates: every sentence, then every window of two consecutive sentences."""
        pairs = [(a[0], b[1]) for a, b in zip(self.sentences, self.sentences[1:], strict=False)]
        return self.sentences + pairs

    @cached_property
    def candidate_texts(self) -> list[str]:
        """Normalised candidates, sliced from the normalised post (its map is sorted by origin)."""
        norm, index = self.normalized
        return [norm[bisect_left(index, s) : bisect_left(index, e)] for s, e in self.candidates]

    @cached_property
    def candidate_words(self) -> list[Counter]:
        return [word_counts(t) for t in self.candidate_texts]


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


def _align_one(ann: Annotation, post: _Post | None, sentence_threshold: float, fuzzy_threshold: float):
    """(start, end, rule, similarity) for one annotation."""
    query = ann.sentence_text.strip()
    if post is None or not query:
        return None, None, "unaligned", 0.0
    k = sentence_index(ann.sentence_id)
    kth = post.sentences[k] if k is not None and k < len(post.sentences) else None

    start = _pick(_occurrences(post.text, query), kth)
    if start is not None:
        return start, start + len(query), "exact", 1.0

    norm_query = normalize(query)
    if not norm_query:  # only invisible chars: nothing to look for
        return None, None, "unaligned", 0.0
    norm_text, index = post.normalized
    start = _pick(_occurrences(norm_text, norm_query), kth, lambda i: index[i])
    if start is not None:
        s, e = trim_span(post.text, index[start], span_end(post.text, index[start + len(norm_query) - 1]))
        return s, e, "normalized", 1.0

    scorer = SimilarityScorer(norm_query)
    seen = 0.0
    if kth is not None:
        seen = scorer.score(post.candidate_texts[k], words=post.candidate_words[k])
        if seen >= sentence_threshold:
            return kth[0], kth[1], "sentence_id", seen

    best_i, best = scorer.best(post.candidate_texts, post.candidate_words)
    if best_i >= 0 and best >= fuzzy_threshold:
        return *post.candidates[best_i], "fuzzy", best
    return None, None, "unaligned", max(seen, best)


def align_annotations(
    posts: Mapping[str, str],
    annotations: Sequence[Annotation],
    sentence_threshold: float = 0.6,
    fuzzy_threshold: float = 0.75,
) -> list[Alignment]:
    """One Alignment per annotation, in order. An annotation whose post is missing or whose sentence
    text is empty stays unaligned (similarity 0.0), so the report lists it instead of losing it."""
    cache: dict[str, _Post] = {}
    out = []
    for ann in annotations:
        if ann.post_id in posts and ann.post_id not in cache:
            cache[ann.post_id] = _Post(posts[ann.post_id])
        post = cache.get(ann.post_id)
        start, end, rule, sim = _align_one(ann, post, sentence_threshold, fuzzy_threshold)
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
