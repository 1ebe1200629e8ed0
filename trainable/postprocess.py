"""From start/end logits of windows to one answer per example (SQuAD v2 style), in plain NumPy.

Semantics of Hugging Face's ``utils_qa.postprocess_qa_predictions`` with
``version_2_with_negative=True``:

* a long context is split into several windows (features); each window scores the null answer
  as ``start_logits[0] + end_logits[0]`` ([CLS]); the example's null score is the *minimum*
  over its windows (the window most convinced that there is an answer decides);
* candidate spans pair the ``n_best_size`` highest start positions with the ``n_best_size``
  highest end positions of each window; a span is valid when both ends are context tokens of
  that window (position < the window's length and ``offset_start >= 0``), ``end >= start``
  and it has at most ``max_answer_length`` tokens; its score is ``start_logit + end_logit``;
* the best valid span over all windows is the prediction, its text is
  ``context[offset_start[start]:offset_end[end]]``;
* ``null_score - best_span_score`` measures how much the model prefers "no answer": use it as
  the SQuAD ``na_prob`` (``apply_null_threshold`` answers "" where it is above a threshold).

One deliberate difference: the top-n positions are taken among each window's *valid*
positions, so question, special and padding tokens never crowd real candidates out of the
n-best list (HF ranks all positions and discards invalid ones afterwards). The result is the
same whenever HF's list holds the best valid span, and never worse otherwise.
An example whose windows offer no valid span predicts "" with a difference of +inf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def best_char_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    feature_example_ids: Sequence[str],
    offset_start: Sequence[np.ndarray],
    offset_end: Sequence[np.ndarray],
    contexts: Mapping[str, str],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, tuple[int, int] | None], dict[str, float]]:
    """Character span (start, end) of the best non-null answer (None: no valid span) and
    ``null_score - best_span_score`` per example id.

    ``start_logits`` / ``end_logits`` are [num_features, padded_length]; row i belongs to
    ``feature_example_ids[i]`` and has ``len(offset_start[i])`` real positions. Examples come
    out in the order of their first feature.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    _check_inputs(start_logits, end_logits, feature_example_ids, offset_start, offset_end, contexts,
                  n_best_size, max_answer_length)
    null_scores: dict[str, float] = {}
    best: dict[str, tuple[float, int, int]] = {}
    for i, example_id in enumerate(feature_example_ids):
        null = float(start_logits[i, 0] + end_logits[i, 0])
        null_scores[example_id] = min(null, null_scores.get(example_id, np.inf))
        span = _best_span(start_logits[i], end_logits[i], np.asarray(offset_start[i]), n_best_size,
                          max_answer_length)
        if span is not None and (example_id not in best or span[0] > best[example_id][0]):
            score, s, e = span
            best[example_id] = (score, int(offset_start[i][s]), int(offset_end[i][e]))
    spans: dict[str, tuple[int, int] | None] = {}
    score_diffs: dict[str, float] = {}
    for example_id, null in null_scores.items():
        score, *span = best.get(example_id, (-np.inf, None, None))
        spans[example_id] = tuple(span) if span[0] is not None else None
        score_diffs[example_id] = float(null - score)
    return spans, score_diffs


def span_texts(spans: Mapping[str, tuple[int, int] | None], contexts: Mapping[str, str]) -> dict[str, str]:
    """Each example's best non-null answer text ("" where ``best_char_spans`` found no valid span)."""
    return {k: contexts[k][span[0]:span[1]] if span else "" for k, span in spans.items()}


def apply_null_threshold(
    predictions: Mapping[str, str], score_diffs: Mapping[str, float], threshold: float
) -> dict[str, str]:
    """Answer "" where the null preference ``score_diffs[id]`` is above ``threshold``.

    Same rule as ``squad_v2_scores(..., na_probs=score_diffs, na_threshold=threshold)``, so a
    threshold tuned there (``best_f1_thresh``) can be applied here to produce final answers.
    """
    missing = [k for k in predictions if k not in score_diffs]
    if missing:
        raise ValueError(f"apply_null_threshold: no score difference for {missing[:5]} ({len(missing)})")
    return {k: "" if score_diffs[k] > threshold else text for k, text in predictions.items()}


def _best_span(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, n_best: int,
               max_len: int) -> tuple[float, int, int] | None:
    """Highest-scoring valid (score, start, end) of one window, or None when it has none."""
    valid = np.flatnonzero(offsets >= 0)  # context tokens among the window's real positions
    if valid.size == 0:
        return None
    # stable sort on the negated logits: ties go to the earlier position, run after run
    starts = valid[np.argsort(-start[valid], kind="stable")[:n_best]]
    ends = valid[np.argsort(-end[valid], kind="stable")[:n_best]]
    scores = start[starts][:, None].astype(np.float64) + end[ends][None, :]
    length = ends[None, :] - starts[:, None] + 1
    scores[(length < 1) | (length > max_len)] = -np.inf
    flat = int(np.argmax(scores))
    a, b = divmod(flat, scores.shape[1])
    if not np.isfinite(scores[a, b]):
        return None
    return float(scores[a, b]), int(starts[a]), int(ends[b])


def _check_inputs(start_logits, end_logits, example_ids, offset_start, offset_end, contexts,
                  n_best_size, max_answer_length) -> None:
    if start_logits.ndim != 2 or start_logits.shape != end_logits.shape:
        raise ValueError("best_char_spans: start and end logits must both be [num_features, length], got "
                         f"{start_logits.shape} and {end_logits.shape}")
    n = start_logits.shape[0]
    if not len(example_ids) == len(offset_start) == len(offset_end) == n:
        raise ValueError(f"best_char_spans: {n} logit rows but {len(example_ids)} example ids, "
                         f"{len(offset_start)} offset_start and {len(offset_end)} offset_end rows")
    for i in range(n):
        if len(offset_start[i]) != len(offset_end[i]) or len(offset_start[i]) > start_logits.shape[1]:
            raise ValueError(f"best_char_spans: feature {i} has {len(offset_start[i])} start and "
                             f"{len(offset_end[i])} end offsets for {start_logits.shape[1]} logit columns")
    unknown = sorted(set(example_ids) - set(contexts))
    if unknown:
        raise ValueError(f"best_char_spans: no context for example ids {unknown[:5]} ({len(unknown)})")
    if n_best_size < 1 or max_answer_length < 1:
        raise ValueError("best_char_spans: n_best_size and max_answer_length must be >= 1, got "
                         f"{n_best_size} and {max_answer_length}")
