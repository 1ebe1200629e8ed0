"""Run a model over a split (the torch half of evaluation) and score its outputs (``trainable.scoring``).

The model pass yields one output per feature row (sharded over ranks, gathered back in row order):
span -> start/end logits, span_crf -> the Viterbi path and a per-token margin, pair -> the evidence
probability. Scoring is then plain NumPy on those outputs, apart from torch.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from omegaconf import DictConfig

from data_prep.features import TAG_IGNORE
from trainable.batching import BucketBatchSampler, Collator, Columns
from trainable.checkpoint import unwrap
from trainable.scoring import score


@dataclass
class EvalResult:
    metrics: dict[str, Any]  # scalars and details (confusion matrix, per-symptom table)
    # per example: id, prediction, score, gold (what trainable.evaluate writes as JSONL)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    loss: float = float("nan")

    @property
    def scalars(self) -> dict[str, float]:
        """The flat numbers (what goes into a Ray report and TensorBoard)."""
        return {k: float(v) for k, v in self.metrics.items()
                if isinstance(v, int | float | np.number) and not isinstance(v, bool)}


def evaluate(model: torch.nn.Module, cols: Columns, examples: pa.Table, cfg: DictConfig, *, device: torch.device,
             autocast=None, pad_token_id: int = 0, rank: int = 0, world_size: int = 1) -> EvalResult:
    """Metrics of ``model`` on one split (``cols``: its features, ``examples``: its example table)."""
    outputs, loss = model_outputs(model, cols, cfg.task, batch_size=cfg.training.eval_batch_size,
                                  device=device, autocast=autocast, pad_token_id=pad_token_id,
                                  rank=rank, world_size=world_size)
    return EvalResult(*score(cfg, outputs, cols, examples), loss=loss)


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
