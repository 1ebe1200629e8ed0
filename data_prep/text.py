"""Text utilities for aligning annotated sentences with posts: normalisation, splitting, similarity.

Pure functions on strings (and a TF-IDF space fitted on them), so alignment rules can be tested on
hand-written text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

_QUOTES = {c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a`"}
_QUOTES.update({c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb"})
_MINUS = "\u2212\u2043"
_CLOSERS = "\"'\u2019\u201d\u00bb)\\]}"
# A sentence ends after a run of .!? (plus closing quotes/brackets) that is followed by whitespace or
# the end of the text, or at a line break.
_BOUNDARY = re.compile(rf"[.!?]+[{_CLOSERS}]*(?=\s|$)|[\r\n]")
_NONSPACE = re.compile(r"\S+")


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


# Contractions, with or without their apostrophe (Reddit often drops it), spelled out before
# vectorizing, so that "can't", "cant" and "cannot" or "I'm" and "I am" share their words.
_CONTRACTIONS = tuple((re.compile(pattern), repl) for pattern, repl in (
    (r"\b(?:can'?t|cannot)\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"\b(do|does|did|is|was|are|were|has|have|had|could|would|should)n'?t\b", r"\1 not"),
    (r"n't\b", " not"),
    (r"\bi'?m\b", "i am"),
    (r"\bive\b", "i have"),
    (r"'ve\b", " have"),
    (r"'ll\b", " will"),
    (r"'re\b", " are"),
    (r"'d\b", " would"),
))
_PUNCTUATION = re.compile(r"[^\w\s]+")
# The two views of a text that similarity averages: words and word pairs survive reordered clauses,
# character n-grams inside words (char_wb) survive typos, inflections and spelling variants. 3-4 grams
# rank the right sentence first for every reworded copy of the paraphrase set (3-5: all but one).
_VIEWS = (
    {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b"},
    {"analyzer": "char_wb", "ngram_range": (3, 4)},
)


def similarity_form(text: str) -> str:
    """What similarity compares: ``normalize`` with contractions spelled out and punctuation dropped
    (so that "lot." and "lot" share their character n-grams)."""
    # ASCII text needs only case and whitespace folding; skipping normalize's offset map halves the
    # time of fitting a corpus.
    text = _fold(" ".join(text.split())) if text.isascii() else normalize(text)
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return " ".join(_PUNCTUATION.sub(" ", text).split())


class _View:
    """One vectorizer fitted on the space's texts: sublinear tf x smooth idf, rows L2-normalised."""

    def __init__(self, options: dict, forms: list[str]):
        from scipy import sparse  # imported here: the common exact/normalized path never needs them
        from sklearn.feature_extraction.text import CountVectorizer

        vectorizer = CountVectorizer(lowercase=False, dtype=np.float64, **options)
        self.analyze = vectorizer.build_analyzer()
        try:
            self.counts = vectorizer.fit_transform(forms).tocsr()
            self.vocabulary = vectorizer.vocabulary_
        except ValueError:  # no term in any text (punctuation only): every score is 0
            self.counts, self.vocabulary = sparse.csr_matrix((len(forms), 0)), {}
        df = np.bincount(self.counts.indices, minlength=self.counts.shape[1])
        self.idf = np.log((1 + len(forms)) / (1 + df)) + 1
        # A query term no fitted text has gets the idf of a term in no text: it counts in the query's
        # norm (so a query made mostly of words foreign to the post scores low) but matches nothing.
        self.unseen_idf = np.log(1 + len(forms)) + 1

    def weigh(self, counts):
        weighted = counts.tocsr(copy=True)
        weighted.data = (1 + np.log(weighted.data)) * self.idf[weighted.indices]
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        weighted.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(weighted.indptr))
        return weighted

    def query(self, form: str) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, weights) of the query's known terms, the weights divided by its full norm."""
        ids, weights, norm2 = [], [], 0.0
        for term, count in Counter(self.analyze(form)).items():
            j = self.vocabulary.get(term)
            weight = (1 + np.log(count)) * (self.unseen_idf if j is None else self.idf[j])
            norm2 += weight * weight
            if j is not None:
                ids.append(j)
                weights.append(weight)
        norm = np.sqrt(norm2) if norm2 > 0 else 1.0
        return np.asarray(ids, dtype=np.int64), np.asarray(weights) / norm


class TfidfSpace:
    """Texts (a corpus's sentences) as TF-IDF vectors: word 1-2 grams and char_wb 3-4 grams of their
    ``similarity_form``, each with sublinear tf and a smooth idf fitted on these texts (a corpus's idf
    tells the words that carry a sentence from "I", "my", "and"). ``scores`` gives the mean of a
    query's cosines in the two views. Deterministic: the vocabularies are sorted, nothing is sampled.
    """

    def __init__(self, texts: Sequence[str]):
        forms = [similarity_form(t) for t in texts]
        self.size = len(forms)
        self._views = [_View(options, forms) for options in _VIEWS]

    def vectors(self, windows: Sequence[tuple[int, int]]) -> list:
        """Vectors of windows of consecutive texts, ``(i, j)`` being texts i..j-1 (their counts summed)."""
        from scipy import sparse

        rows = np.repeat(np.arange(len(windows)), [j - i for i, j in windows])
        cols = np.concatenate([np.arange(i, j) for i, j in windows]) if windows else np.zeros(0, np.int64)
        select = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(windows), self.size))
        return [view.weigh(select @ view.counts) for view in self._views]

    def scores(self, vectors: list, query: str) -> np.ndarray:
        """Similarity in [0, 1] of ``query`` to each row of ``vectors`` (from ``self.vectors``)."""
        form = similarity_form(query)
        total = np.zeros(vectors[0].shape[0])
        for view, matrix in zip(self._views, vectors, strict=True):
            ids, weights = view.query(form)
            if len(ids):
                total += matrix[:, ids] @ weights
        return np.clip(total / len(self._views), 0.0, 1.0)


def similarity(a: str, b: str) -> float:
    """Similarity in [0, 1] of two texts: ``TfidfSpace`` cosine with the idf fitted on the two alone.

    Alignment fits the idf on the whole corpus instead, which weighs words better; this pairwise form
    is for tests and quick checks. Case, quotes, punctuation and contractions do not matter; reordered
    words cost only the word pairs they break.
    """
    space = TfidfSpace([a, b])
    return float(space.scores(space.vectors([(0, 1)]), b)[0])
