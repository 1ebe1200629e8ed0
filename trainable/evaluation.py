"""Run a model over a split and score it with the task's metric.

The model pass yields one output per feature row (sharded over ranks, gathered back in row
order); scoring is then plain NumPy on those outputs, through the post-processing and metric
modules: span -> best_char_spans + SQuAD v2; span_crf -> Viterbi paths, BIO -> character
spans, span P/R/F1 + the same SQuAD EM/F1; pair -> softmax probabilities, pair_metrics, the
F1-best threshold and the own criterion's rank (own_rank_metrics).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from data_prep.examples import CROSS
from data_prep.features import TAG_IGNORE
from trainable.batching import BucketBatchSampler, Collator, Columns
from trainable.checkpoint import unwrap
from trainable.metrics import (
    best_f1_threshold,
    bio_to_token_spans,
    own_rank_metrics,
    pair_metrics,
    span_prf,
    token_spans_to_chars,
)
from trainable.postprocess import best_char_spans
from trainable.squad_metric import squad_v2_scores


@dataclass
class EvalResult:
    metrics: dict[str, Any]  # scalars and details (confusion matrix, per-symptom table)
    loss: float
    # per example: id, prediction, score, gold (what trainable.evaluate writes as JSONL)
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scalars(self) -> dict[str, float]:
        """The flat numbers (what goes into a Ray report and TensorBoard)."""
        return {k: float(v) for k, v in self.metrics.items()
                if isinstance(v, int | float | np.number) and not isinstance(v, bool)}


def evaluate(model: torch.nn.Module, cols: Columns, examples: pa.Table, cfg, *, device: torch.device,
             autocast=None, pad_token_id: int = 0, rank: int = 0, world_size: int = 1) -> EvalResult:
    """Metrics of ``model`` on one split (``cols``: its features, ``examples``: its example table)."""
    outputs, loss = model_outputs(model, cols, cfg.task, batch_size=cfg.training.eval_batch_size,
                                  device=device, autocast=autocast, pad_token_id=pad_token_id,
                                  rank=rank, world_size=world_size)
    if cfg.task == "span":
        metrics, predictions = score_span(outputs, cols, examples, cfg.training.n_best_size,
                                          cfg.training.max_answer_length)
    elif cfg.task == "span_crf":
        metrics, predictions = score_span_crf(outputs, cols, examples)
    else:
        metrics, predictions = score_pair(outputs, cols, examples)
    return EvalResult(metrics, loss, predictions)


@torch.no_grad()
def model_outputs(model: torch.nn.Module, cols: Columns, task: str, *, batch_size: int,
                  device: torch.device, autocast=None, pad_token_id: int = 0, rank: int = 0,
                  world_size: int = 1) -> tuple[list[Any], float]:
    """One output per row of ``cols`` (in row order) and the mean loss over rows (nan without targets)."""
    was_training = model.training
    model.eval()
    crf = unwrap(model).crf
    collate = Collator(cols, pad_token_id)
    mine: dict[int, Any] = {}
    loss_sum, loss_rows = 0.0, 0
    for rows in BucketBatchSampler(cols.lengths, batch_size, shuffle=False, rank=rank, world_size=world_size):
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        with autocast or nullcontext():
            out = model(**batch)
        if "loss" in out:
            loss_sum += float(out["loss"]) * len(rows)
            loss_rows += len(rows)
        mine.update(zip(rows.tolist(), _row_outputs(task, out, cols, rows, crf), strict=True))
    model.train(was_training)
    if world_size > 1:
        gathered: list = [None] * world_size
        torch.distributed.all_gather_object(gathered, (mine, loss_sum, loss_rows))
        mine = {i: o for part, _, _ in gathered for i, o in part.items()}
        loss_sum, loss_rows = sum(g[1] for g in gathered), sum(g[2] for g in gathered)
    return [mine[i] for i in range(len(cols))], loss_sum / loss_rows if loss_rows else float("nan")


def _row_outputs(task: str, out: dict, cols: Columns, rows: np.ndarray, crf) -> list[Any]:
    lengths = cols.lengths[rows]
    if task == "pair":
        return torch.softmax(out["logits"].float(), -1)[:, 1].cpu().numpy().tolist()
    if task == "span":
        start, end = out["start_logits"].float().cpu().numpy(), out["end_logits"].float().cpu().numpy()
        return [(start[j, :k], end[j, :k]) for j, k in enumerate(lengths)]
    emissions = out["emissions"].float()
    context = torch.zeros(emissions.shape[:2], dtype=torch.bool)
    for j, i in enumerate(rows):
        context[j, : lengths[j]] = torch.from_numpy(cols.row("offset_start", i) >= 0)
    paths = crf.decode(emissions, context.to(emissions.device))
    # Per-token confidence that the token is inside an answer (best of B/I over O), for ranking spans.
    margin = (emissions[..., 1:].max(-1).values - emissions[..., 0]).cpu().numpy()
    results = []
    for j in range(len(rows)):
        tags = np.full(lengths[j], TAG_IGNORE, dtype=np.int64)
        tags[context[j, : lengths[j]].numpy()] = paths[j]
        results.append((tags, margin[j, : lengths[j]]))
    return results


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
    texts = {k: contexts[k][span[0]:span[1]] if span else "" for k, span in spans.items()}
    gold = _gold(examples)
    final = {k: "" if diffs[k] > 0 else t for k, t in texts.items()}
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
