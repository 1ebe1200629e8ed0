"""Score a split's model outputs with the task's metric: plain NumPy, no torch.

``trainable.model_pass`` runs the model and hands over one output per feature row; here they become
metrics and per-example predictions through the post-processing and metric modules: span ->
best_char_spans + SQuAD v2; span_crf -> BIO paths -> character spans, span P/R/F1 + the same SQuAD
EM/F1; pair -> pair_metrics, the F1-best threshold and the own criterion's rank (own_rank_metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig

from data_prep.examples import CROSS
from trainable.metrics import (
    best_f1_threshold,
    bio_to_token_spans,
    own_rank_metrics,
    pair_metrics,
    span_prf,
    token_spans_to_chars,
)
from trainable.postprocess import apply_null_threshold, best_char_spans, span_texts
from trainable.squad_metric import squad_v2_scores

if TYPE_CHECKING:
    from trainable.batching import Columns


def score(cfg: DictConfig, outputs: list, cols: Columns, examples: pa.Table) -> tuple[dict[str, Any], list[dict]]:
    """(metrics, per-example predictions) of one split's outputs, for ``cfg.task``."""
    if cfg.task == "span":
        return score_span(outputs, cols, examples, cfg.training.n_best_size, cfg.training.max_answer_length)
    if cfg.task == "span_crf":
        return score_span_crf(outputs, cols, examples)
    return score_pair(outputs, cols, examples)


def _gold(examples: pa.Table) -> dict[str, list[str]]:
    return dict(zip(examples.column("example_id").to_pylist(), examples.column("answer_texts").to_pylist(),
                    strict=True))


def span_logits(outputs: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-window (start, end) logits stacked into [windows, longest] arrays, padding at -1e4."""
    width = max((len(s) for s, _ in outputs), default=1)
    start = np.full((len(outputs), width), -1e4, dtype=np.float32)
    end = np.full_like(start, -1e4)
    for i, (s, e) in enumerate(outputs):
        start[i, : len(s)], end[i, : len(e)] = s, e
    return start, end


def span_answers(outputs: list, cols: Columns, contexts: dict[str, str], n_best_size: int,
                 max_answer_length: int) -> tuple[dict[str, tuple[int, int] | None], dict[str, float]]:
    """Best character span and null-minus-best score of every example (see postprocess)."""
    start, end = span_logits(outputs)
    offsets_s = [cols.row("offset_start", i) for i in range(len(cols))]
    offsets_e = [cols.row("offset_end", i) for i in range(len(cols))]
    return best_char_spans(start, end, cols.example_ids, offsets_s, offsets_e, contexts, n_best_size,
                           max_answer_length)


def crf_spans(outputs: list, cols: Columns) -> dict[str, dict[tuple[int, int], float]]:
    """Decoded BIO spans of every example as character spans with a score (mean emission margin);
    overlapping windows may find a span twice: the best score is kept."""
    spans: dict[str, dict[tuple[int, int], float]] = {}
    for i, (tags, margin) in enumerate(outputs):
        token_spans = bio_to_token_spans(tags.tolist())
        chars = token_spans_to_chars(token_spans, cols.row("offset_start", i), cols.row("offset_end", i))
        found = spans.setdefault(cols.example_ids[i], {})
        for (first, last), char_span in zip(token_spans, chars, strict=True):
            found[char_span] = max(found.get(char_span, -np.inf), float(margin[first:last + 1].mean()))
    return spans


def score_span(outputs: list, cols: Columns, examples: pa.Table, n_best_size: int,
               max_answer_length: int) -> tuple[dict, list[dict]]:
    """SQuAD v2 scores with the model's own null decision (threshold 0) plus the tuned best_*."""
    contexts = dict(zip(examples.column("example_id").to_pylist(), examples.column("context").to_pylist(),
                        strict=True))
    spans, diffs = span_answers(outputs, cols, contexts, n_best_size, max_answer_length)
    texts = span_texts(spans, contexts)
    gold = _gold(examples)
    final = apply_null_threshold(texts, diffs, 0.0)
    metrics = squad_v2_scores(final, gold, na_probs=diffs, na_threshold=0.0)
    predictions = [{"id": k, "prediction": final[k], "best_span": texts[k], "score": -diffs[k],
                    "gold": gold[k]} for k in gold]
    return metrics, predictions


def score_span_crf(outputs: list, cols: Columns, examples: pa.Table) -> tuple[dict, list[dict]]:
    """Span-level P/R/F1 of the decoded character spans, and SQuAD EM/F1 of each example's best span."""
    spans = crf_spans(outputs, cols)
    ids = examples.column("example_id").to_pylist()
    contexts = dict(zip(ids, examples.column("context").to_pylist(), strict=True))
    gold_spans = {
        k: {(s, s + len(t)) for s, t in zip(starts, texts, strict=True)}
        for k, starts, texts in zip(ids, examples.column("answer_starts").to_pylist(),
                                    examples.column("answer_texts").to_pylist(), strict=True)
    }
    prf = span_prf({k: set(v) for k, v in spans.items()}, gold_spans)
    texts = {}
    for k in ids:
        found = spans.get(k, {})
        best = max(found, key=found.get) if found else None
        texts[k] = contexts[k][best[0]:best[1]] if best else ""
    gold = _gold(examples)
    metrics = {f"span_{key}": value for key, value in prf.items()}
    metrics.update(squad_v2_scores(texts, gold))
    predictions = [{"id": k, "prediction": texts[k], "spans": sorted(spans.get(k, {})),
                    "score": max(spans.get(k, {}).values(), default=None), "gold": gold[k]} for k in ids]
    return metrics, predictions


def score_pair(outputs: list, cols: Columns, examples: pa.Table) -> tuple[dict, list[dict]]:
    """Binary metrics at 0.5 over every example (annotated and cross negatives), the F1-best threshold
    (best_f1, best_f1_thresh: what a checkpoint keeps as its evidence threshold), the binary F1 of the
    annotated examples alone, the share of cross negatives called evidence, and the rank of each
    evidence sentence's own criterion among all ten (own_top1, own_mrr, symptom_confusion)."""
    probs = np.asarray(outputs, dtype=np.float64)
    labels, symptom_ids = cols.scalars["label"], cols.scalars["symptom_id"]
    metrics = pair_metrics(labels, probs, symptom_ids)
    metrics["best_f1"], metrics["best_f1_thresh"] = best_f1_threshold(labels, probs)
    kinds = _example_column(examples, "kind", cols.example_ids)
    if kinds is not None:
        cross = kinds == CROSS
        metrics["annotated_f1"] = pair_metrics(labels[~cross], probs[~cross], symptom_ids[~cross])["f1"] \
            if (~cross).any() else None
        metrics["cross_evidence_rate"] = float((probs[cross] >= 0.5).mean()) if cross.any() else None
    keys = _example_column(examples, "sentence_key", cols.example_ids)
    if keys is not None:
        metrics.update(own_rank_metrics(keys, symptom_ids, labels, probs))
    predictions = [{"id": k, "prediction": int(p >= 0.5), "score": float(p), "gold": int(y)}
                   for k, p, y in zip(cols.example_ids, probs, labels, strict=True)]
    if kinds is not None:
        for record, kind in zip(predictions, kinds.tolist(), strict=True):
            record["kind"] = kind
    return metrics, predictions


def _example_column(examples: pa.Table, name: str, ids: list[str]) -> np.ndarray | None:
    """``examples[name]`` in the order of the feature rows ``ids``; None for a table without it."""
    if name not in examples.column_names:
        return None
    where = {k: i for i, k in enumerate(examples.column("example_id").to_pylist())}
    return examples.column(name).to_numpy(zero_copy_only=False)[[where[k] for k in ids]]


def chosen_thresholds(task: str, metrics: dict) -> dict[str, float | None]:
    """What a checkpoint keeps of its validation metrics to decide with later: for pair, the
    F1-best evidence threshold (trainable.predict uses it instead of 0.5)."""
    return {"evidence_threshold": metrics.get("best_f1_thresh")} if task == "pair" else {}
