"""Evaluation metrics of the ``pair`` (binary classification, and the rank of each evidence sentence's
own criterion among all ten) and ``span_crf`` (BIO spans) tasks.

Every value is a plain Python number (or None), so the dicts go straight into Ray reports,
TensorBoard and JSON files. sklearn (1.3 s to import, with scipy) is imported by the pair metrics
that use it, not by every training worker and command that imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from data_prep.features import TAG_B, TAG_I  # BIO tag ids; anything else is outside
from data_prep.symptoms import SYMPTOMS


def pair_metrics(
    labels: np.ndarray, probs: np.ndarray, symptom_ids: np.ndarray, threshold: float = 0.5
) -> dict:
    """Binary metrics of P(evidence) = ``probs`` vs ``labels`` (1 = evidence), overall and per symptom.

    A pair is predicted positive when ``probs >= threshold``. precision/recall/f1 are those of
    class 1 (0 when undefined, e.g. no positive prediction); roc_auc and pr_auc (average
    precision) are None when ``labels`` hold a single class, where they are undefined.
    ``per_symptom`` lists only the symptoms that occur in ``symptom_ids``.
    """
    labels, probs, symptom_ids = (np.asarray(a).ravel() for a in (labels, probs, symptom_ids))
    if not labels.size or not labels.size == probs.size == symptom_ids.size:
        raise ValueError(f"pair_metrics: need equally long, non-empty arrays; got {labels.size} labels, "
                         f"{probs.size} probs, {symptom_ids.size} symptom ids")
    if symptom_ids.min() < 0 or symptom_ids.max() >= len(SYMPTOMS):
        raise ValueError(f"pair_metrics: symptom ids must index SYMPTOMS (0..{len(SYMPTOMS) - 1})")
    labels, symptom_ids = labels.astype(np.int64), symptom_ids.astype(np.int64)
    preds = (probs >= threshold).astype(np.int64)
    from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, roc_auc_score

    tn, fp, fn, tp = confusion_matrix(labels, preds, labels=[0, 1]).ravel().tolist()
    two_classes = np.unique(labels).size == 2
    out = {
        **_prf(labels, preds),
        "roc_auc": float(roc_auc_score(labels, probs)) if two_classes else None,
        "pr_auc": float(average_precision_score(labels, probs)) if two_classes else None,
        "accuracy": float(accuracy_score(labels, preds)),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "per_symptom": {},
    }
    for sid in np.unique(symptom_ids).tolist():
        rows = symptom_ids == sid
        out["per_symptom"][SYMPTOMS[sid]] = {"n": int(rows.sum()), "positives": int(labels[rows].sum()),
                                             **_prf(labels[rows], preds[rows])}
    return out


def best_f1_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[float | None, float | None]:
    """(best F1, its threshold): the probability threshold (predict evidence when ``probs >=`` it)
    that maximises binary F1 on these examples; (None, None) without a positive label."""
    labels, probs = np.asarray(labels).ravel().astype(np.int64), np.asarray(probs, dtype=np.float64).ravel()
    if not labels.any():
        return None, None
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, probs)
    p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=p + r > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def own_rank_metrics(sentence_keys: np.ndarray, symptom_ids: np.ndarray, labels: np.ndarray,
                     probs: np.ndarray) -> dict:
    """How well the own criterion of each evidence sentence beats the other nine.

    Rows are (criterion, sentence) examples; rows with the same ``sentence_keys`` value are one
    sentence. Every row with label 1 is an evidence sentence and its symptom the own one; it is ranked
    among all ten symptoms by the sentence's probability under each (the highest of a symptom's rows,
    if it has several). Other symptoms the sentence is also evidence for are left out of its ranking,
    and a tie counts against the own symptom (a model that gives every criterion the same score
    ranks last, not first). A sentence lacking a score for some symptom is not ranked (``own_skipped``).

    Returns own_top1 (share ranked first; chance 0.1), own_mrr (mean of 1/rank), own_n (ranked),
    own_skipped, and symptom_confusion: rows = own symptom, columns = the top-ranked symptom, in
    SYMPTOMS order. own_top1 and own_mrr are None when nothing was ranked.
    """
    keys, sids, labels, probs = (np.asarray(a).ravel() for a in (sentence_keys, symptom_ids, labels, probs))
    if not keys.size == sids.size == labels.size == probs.size:
        raise ValueError(f"own_rank_metrics: need equally long arrays; got {keys.size}, {sids.size}, "
                         f"{labels.size}, {probs.size}")
    n = len(SYMPTOMS)
    scores: dict[int, np.ndarray] = {}
    evidence: dict[int, set[int]] = {}
    for key, sid, label, prob in zip(keys.tolist(), sids.tolist(), labels.tolist(), probs.tolist(), strict=True):
        row = scores.setdefault(key, np.full(n, np.nan))
        row[sid] = prob if np.isnan(row[sid]) else max(row[sid], prob)
        if label == 1:
            evidence.setdefault(key, set()).add(sid)
    confusion = np.zeros((n, n), dtype=np.int64)
    reciprocal, skipped = [], 0
    for key, sid, label, prob in zip(keys.tolist(), sids.tolist(), labels.tolist(), probs.tolist(), strict=True):
        if label != 1:
            continue
        others = [s for s in range(n) if s not in evidence[key]]
        rivals = scores[key][others]
        if np.isnan(rivals).any():
            skipped += 1
            continue
        beaten_by = rivals >= prob
        rank = 1 + int(beaten_by.sum())
        reciprocal.append(1.0 / rank)
        confusion[sid, sid if rank == 1 else others[int(np.argmax(rivals))]] += 1
    ranked = len(reciprocal)
    return {
        "own_top1": float(np.mean(np.asarray(reciprocal) == 1.0)) if ranked else None,
        "own_mrr": float(np.mean(reciprocal)) if ranked else None,
        "own_n": ranked,
        "own_skipped": skipped,
        "symptom_confusion": {"symptoms": list(SYMPTOMS), "matrix": confusion.tolist()},
    }


def _prf(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=[1], average="binary",
                                                 pos_label=1, zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def bio_to_token_spans(tags: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive (first, last) token index of each span in a BIO sequence (0=O, 1=B, 2=I).

    B always opens a new span; I continues the open span or, with none open (a window cut inside
    an answer, or a sloppy decoder), opens one; O and any other value (e.g. -100) close it.
    """
    spans: list[tuple[int, int]] = []
    begin = None
    for i, tag in enumerate(list(tags) + [0]):
        if begin is not None and tag != TAG_I:
            spans.append((begin, i - 1))
            begin = None
        if tag == TAG_B or (tag == TAG_I and begin is None):
            begin = i
    return spans


def token_spans_to_chars(
    spans: Sequence[tuple[int, int]], offset_start: Sequence[int], offset_end: Sequence[int]
) -> list[tuple[int, int]]:
    """Character spans ``(start, end)``, end exclusive, of inclusive token spans.

    The offsets must index the same token positions as the spans; both ends of a span must be
    context tokens (offset >= 0), since a span over a question or special token is a bug.
    """
    out = []
    for first, last in spans:
        if not 0 <= first <= last < len(offset_start):
            raise ValueError(f"token_spans_to_chars: span ({first}, {last}) outside the "
                             f"{len(offset_start)} offsets")
        start, end = int(offset_start[first]), int(offset_end[last])
        if start < 0 or end < 0:
            raise ValueError(f"token_spans_to_chars: span ({first}, {last}) touches a non-context token "
                             "(offset -1); map the decoded positions back to the window's context tokens")
        out.append((start, end))
    return out


def span_prf(pred: Mapping[str, set[tuple[int, int]]], gold: Mapping[str, set[tuple[int, int]]]) -> dict:
    """Micro precision / recall / F1 of exact character spans, pooled over examples.

    An example missing from ``pred`` predicted no span; a predicted example missing from
    ``gold`` is an error. With no predicted and no gold span at all everything is 1.0 (nothing
    to find, nothing wrongly claimed); otherwise an empty denominator gives 0.0.
    """
    unknown = [k for k in pred if k not in gold]
    if unknown:
        raise ValueError(f"span_prf: predictions for unknown examples {unknown[:5]} ({len(unknown)})")
    tp = sum(len(set(pred.get(k, ())) & set(spans)) for k, spans in gold.items())
    n_pred = sum(len(set(spans)) for spans in pred.values())
    n_gold = sum(len(set(spans)) for spans in gold.values())
    if n_pred == 0 and n_gold == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "n_pred": n_pred, "n_gold": n_gold}
