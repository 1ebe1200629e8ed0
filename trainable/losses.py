"""The ``pair`` task's loss: class-weighted focal loss, with weights from training-class frequencies.

ReDSM5's annotations are mostly ``status = 0``; alpha re-balances the classes and gamma turns
the loss towards the examples the model still gets wrong.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_REDUCTIONS = ("mean", "sum", "none")


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: torch.Tensor | None = None,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss ``-alpha[y] * (1 - p_y) ** gamma * log p_y`` over logits [N, C], float32 result.

    Normalisation, chosen to match ``F.cross_entropy(logits, targets, weight=alpha)``:
    ``reduction="mean"`` is the *weighted* mean ``sum_i w_i * l_i / sum_i w_i`` with
    ``w_i = alpha[y_i]`` (the plain mean when alpha is None), so with ``gamma=0`` the result equals
    cross-entropy with the same weights for every reduction. "sum" sums the weighted terms,
    "none" returns them per example. Runs in float32 with autocast off, since ``log p`` of a
    confident half-precision softmax rounds to 0 and the focal factor then loses the gradient.
    """
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"focal_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    with torch.autocast(logits.device.type, enabled=False):
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
        loss = -log_p
        if gamma > 0:  # skipped at 0: d/dp (1-p)^0 is 0 * inf = nan where p rounds to 1
            # -expm1(log p) = 1 - p without cancellation; the clamp keeps gamma < 1 gradients finite
            loss = (-torch.expm1(log_p)).clamp_min(1e-12) ** gamma * loss
        weights = None
        if alpha is not None:
            weights = alpha.to(device=loss.device, dtype=torch.float32)[targets.long()]
            loss = weights * loss
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        return loss.sum() / weights.sum() if weights is not None else loss.mean()


def class_alpha(labels: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency class weights, float32 [num_classes], summing to ``num_classes``.

    Classes present in ``labels`` get weights proportional to 1 / count, scaled to sum to the
    number of present classes; a class that never occurs gets 1 (it never weighs a term in the
    loss, and 1 keeps the total at ``num_classes`` without dividing by a zero count).
    """
    labels = np.asarray(labels).astype(np.int64, copy=False).ravel()
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class_alpha: labels must be in [0, {num_classes}), "
                         f"got values from {labels.min()} to {labels.max()}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.ones(num_classes, dtype=np.float64)
    present = counts > 0
    if present.any():
        inverse = 1.0 / counts[present]
        weights[present] = inverse * present.sum() / inverse.sum()
    return torch.tensor(weights, dtype=torch.float32)


def marginal_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log of the probability mass on every gold position (mean over the batch).

    A window can hold several evidence sentences of one symptom; cross-entropy on the first one
    would teach that the others are wrong. With one gold position this is cross-entropy.
    """
    gold = logits.float().masked_fill(targets == 0, float("-inf"))
    return (torch.logsumexp(logits.float(), -1) - torch.logsumexp(gold, -1)).mean()


def inside_targets(start_targets: torch.Tensor, end_targets: torch.Tensor) -> torch.Tensor:
    """1 on every token from a gold start through its end, from the start/end multi-hot rows.

    Gold answers of one question never overlap (they are distinct sentences), so a token is inside
    when more answers have started at or before it than have ended before it.
    """
    started = start_targets.long().cumsum(-1)
    ended_before = end_targets.long().cumsum(-1) - end_targets.long()
    return (started - ended_before > 0).float()


def inside_bce(logits: torch.Tensor, start_targets: torch.Tensor, end_targets: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of "this token is part of a gold answer", summed over each window's real
    tokens after [CLS] and averaged over the windows.

    The start/end loss teaches two positions per answer; this teaches every token of it, which is
    what lets a small encoder learn which sentence answers the question from a few hundred posts
    (the CRF head gets the same dense signal from its BIO tags). Summed per window like the CRF's
    sequence log-likelihood: a per-token mean is ~100 times weaker than the start/end loss and
    teaches next to nothing. [CLS], the no-answer position, is left to the start/end loss.
    """
    mask = attention_mask.bool().clone()
    mask[:, 0] = False
    target = inside_targets(start_targets, end_targets)
    per_token = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (per_token * mask).sum() / logits.shape[0]
