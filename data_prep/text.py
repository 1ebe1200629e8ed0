"""Text utilities for aligning annotated sentences with posts: normalisation, splitting, similarity.

Pure functions on strings only, so alignment rules can be tested on hand-written text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher

_QUOTES = {c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a`"}
_QUOTES.update({c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb"})
_MINUS = "\u2212\u2043"
_CLOSERS = "\"'\u2019\u201d\u00bb)\\]}"
# A sentence ends after a run of .!? (plus closing quotes/brackets) that is followed by whitespace or
# the end of the text, or at a line break.
_BOUNDARY = re.compile(rf"[.!?]+[{_CLOSERS}]*(?=\s|$)|[\r\n]")
_WORD = re.compile(r"\w+")
_NONSPACE = re.compile(r"\S+")
# Weight of the character-level ratio in ``similarity``; the rest goes to word overlap.
_CHAR_WEIGHT = 0.6


def _clusters(text: str):
    """Yield (start index, cluster) where a cluster is a base char plus its combining marks.

    NFKC composes a base with following marks, so normalising clusters (not single chars) gives the
    same result as normalising the whole string while still knowing where each output char came from.
    """
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        yield i, text[i:j]
        i = j


def _fold(cluster: str) -> str:
    if cluster.isascii():
        return cluster.lower().replace("`", "'")
    out = []
    for c in unicodedata.normalize("NFKC", cluster).casefold():
        if c in _QUOTES:
            out.append(_QUOTES[c])
        elif c in _MINUS or unicodedata.category(c) == "Pd":
            out.append("-")
        elif unicodedata.category(c) != "Cf":  # zero-width spaces, soft hyphens, BOMs are invisible
            out.append(c)
    return "".join(out)


def _normalize_ascii(text: str) -> tuple[str, list[int]]:
    """The common case, without per-char Unicode work: ASCII only needs case and whitespace folding."""
    index: list[int] = []
    prev_end = None
    for m in _NONSPACE.finditer(text):
        if prev_end is not None:
            index.append(prev_end)
        index.extend(range(m.start(), m.end()))
        prev_end = m.end()
    return _fold(" ".join(text.split())), index


def normalize_with_map(text: str) -> tuple[str, list[int]]:
    """Fold case, quotes, dashes, compatibility forms (NFKC) and whitespace runs (stripped).

    Returns the normalised string and, for each of its chars, the index of the original char it came
    from (a collapsed space points at the first char of its whitespace run), so a match in normalised
    text maps back to the original span ``[m[s], span_end(text, m[e - 1]))``.
    """
    if text.isascii():
        return _normalize_ascii(text)
    out: list[str] = []
    index: list[int] = []
    gap: int | None = None  # where pending whitespace started; emitted only before a later char
    prev_end = 0
    for m in _NONSPACE.finditer(text):
        if gap is None and m.start() > 0:
            gap = prev_end
        prev_end = m.end()
        run = m.group()
        if run.isascii():  # fast path: ASCII folds char for char
            if gap is not None and out:
                out.append(" ")
                index.append(gap)
            out.append(_fold(run))
            index.extend(range(m.start(), m.end()))
            gap = None
            continue
        for start, cluster in _clusters(run):
            for c in _fold(cluster):
                if c.isspace():
                    gap = m.start() + start if gap is None else gap
                    continue
                if gap is not None and out:
                    out.append(" ")
                    index.append(gap)
                out.append(c)
                index.append(m.start() + start)
                gap = None
    return "".join(out), index


def normalize(text: str) -> str:
    """``normalize_with_map`` without the map."""
    return normalize_with_map(text)[0]


def span_end(text: str, last: int) -> int:
    """Exclusive end of the original span whose last normalised char came from ``text[last]``.

    Extends over the combining marks of that char, which belong to the same cluster.
    """
    end = last + 1
    while end < len(text) and unicodedata.combining(text[end]):
        end += 1
    return end


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences, trimmed of whitespace; empty pieces are skipped.

    Deliberately simple (``.!?`` runs with closing quotes before whitespace, and line breaks): the
    k-th span is what a ReDSM5 ``sentence_id`` ``<post>_<k>`` is matched against, and the demo corpus
    is generated to split exactly this way.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        end = m.start() if m.group() in "\r\n" else m.end()
        s, e = trim_span(text, start, end)
        if s < e:
            spans.append((s, e))
        start = m.end()
    s, e = trim_span(text, start, len(text))
    if s < e:
        spans.append((s, e))
    return spans


def word_counts(text: str) -> Counter:
    """The word multiset ``similarity`` compares; callers scoring many queries cache it per candidate."""
    return Counter(_WORD.findall(text))


def _word_overlap(a: Counter, b: Counter) -> float:
    total = a.total() + b.total()
    return 2 * (a & b).total() / total if total else 1.0


class SimilarityScorer:
    """Scores candidates against one fixed, already normalised query (see ``similarity``).

    Keeps the query's SequenceMatcher state across candidates and skips the costly ratio when an upper
    bound cannot beat the best score so far, which makes a post-wide search cheap.
    """

    def __init__(self, query: str):
        self.words = word_counts(query)
        self.matcher = SequenceMatcher(None, autojunk=False)
        self.matcher.set_seq2(query)

    def _mix(self, char_ratio: float, words: float) -> float:
        return _CHAR_WEIGHT * char_ratio + (1 - _CHAR_WEIGHT) * words

    def score(self, candidate: str, floor: float = -1.0, words: Counter | None = None) -> float:
        """Similarity of a normalised candidate, or a value below ``floor`` if it cannot reach it."""
        overlap = _word_overlap(self.words, word_counts(candidate) if words is None else words)
        self.matcher.set_seq1(candidate)
        bounds = (self.matcher.real_quick_ratio, self.matcher.quick_ratio) if floor >= 0 else ()
        for bound in (*bounds, self.matcher.ratio):
            value = self._mix(bound(), overlap)
            if value < floor:
                break
        return value

    def best(self, candidates: Sequence[str], words: Sequence[Counter] | None = None) -> tuple[int, float]:
        """Index and score of the most similar candidate (first on ties); (-1, 0.0) if none.

        Visits candidates by decreasing word overlap, so a good match is met early and the rest are
        mostly dismissed by their bounds without running the character ratio.
        """
        words = [word_counts(c) for c in candidates] if words is None else words
        overlaps = [_word_overlap(self.words, w) for w in words]
        best_i, best = -1, 0.0
        for i in sorted(range(len(candidates)), key=lambda i: (-overlaps[i], i)):
            if best_i >= 0 and self._mix(1.0, overlaps[i]) < best:
                break  # no later candidate can reach the best either
            value = self.score(candidates[i], floor=best if best_i >= 0 else -1.0, words=words[i])
            if best_i < 0 or value > best or (value == best and i < best_i):
                best_i, best = i, value
        return best_i, best


def similarity(a: str, b: str) -> float:
    """Similarity in [0, 1] of two texts after ``normalize``.

    A mix: 0.6 x difflib's character ratio (no autojunk) + 0.4 x word-multiset Dice overlap. The
    character ratio forgives changed punctuation, contractions and small edits; the word overlap pulls
    unrelated sentences down, since two English sentences share many letters (ratio ~0.4) but few
    words. A sentence with one word changed or dropped scores >= 0.8, an unrelated one < 0.5.
    """
    return SimilarityScorer(normalize(a)).score(normalize(b))
