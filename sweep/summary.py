"""What a sweep leaves, rebuilt from its run directory: summary.json, trials.parquet, best_checkpoint/.

Everything comes from what is stored (``sweep.trials`` reads the trials through Tune's
ExperimentAnalysis), never from a live Tuner, so ``python -m sweep.report`` after a crash or a resume
gives the same picture: every trial once, each epoch once. The run directory may be a local path or
an object-storage URI (``s3://bucket/prefix``).
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from plumbing import storage
from plumbing.cli import CONFIG_FILE, typed
from plumbing.errors import DataError, UserError
from plumbing.jsonio import json_safe, write_json
from sweep.layout import BEST_CHECKPOINT, RETRAIN, SEARCH_STAGES, SPACE_FILE, SUMMARY_FILE, TRIALS_FILE
from sweep.output import fmt_value
from sweep.schema import validate_summary
from sweep.space import describe, space_from_json
from sweep.trials import TrialRecord, best_checkpoint_of, best_trial, load_trials
from trainable.session import METRIC, MODE, TEST_METRICS


def sweep_config(run_dir: str):
    """The sweep's saved config (typed), or a UserError naming what is missing."""
    from sweep.config import SweepConfig

    path = storage.join(run_dir, CONFIG_FILE)
    if not storage.exists(path):
        raise UserError(f"{run_dir} is not a sweep run directory (no {CONFIG_FILE}); give the out_dir "
                        "of a python -m sweep.run")
    return typed(SweepConfig, OmegaConf.create(storage.read_text(path)))


def read_space(run_dir: str) -> dict[str, Any]:
    """The stage-1 search space as Optuna distributions (empty before the sweep saved it)."""
    path = storage.join(run_dir, SPACE_FILE)
    if not storage.exists(path):
        return {}
    try:
        return space_from_json(json.loads(storage.read_text(path)))
    except (ValueError, KeyError, TypeError) as e:  # a hand edit; json's decode error is a ValueError
        raise DataError(path, f"not a search space Optuna can read ({e}); restore the file the sweep "
                              "wrote") from None


def search_trials(run_dir: str, cfg: DictConfig) -> list[TrialRecord]:
    """Every search trial (stage 1, then stage 2), in creation order."""
    return [r for stage in SEARCH_STAGES for r in load_trials(run_dir, stage, cfg)]


def copy_best_checkpoint(run_dir: str, record: TrialRecord) -> str | None:
    """Put the best trial's checkpoint at run_dir/best_checkpoint: what evaluation and prediction load
    (weights, configs, tokenizer, meta). The optimizer, scheduler, scaler and RNG state (most of a
    checkpoint's size) stays in the trial's own checkpoint, for resuming it."""
    from trainable.checkpoint import STATE_FILE
    from trainable.hf_model import write_hf_model

    source = best_checkpoint_of(record)
    if source is None:
        return None
    target = storage.join(run_dir, BEST_CHECKPOINT)
    marker = storage.join(target, ".source")
    if storage.exists(marker) and storage.read_text(marker) == source:
        return target
    with tempfile.TemporaryDirectory(prefix="best-checkpoint-") as tmp:
        local = Path(tmp) / BEST_CHECKPOINT
        storage.download_dir(source, local)
        (local / STATE_FILE).unlink(missing_ok=True)
        write_hf_model(local)  # span, pair: also a standard transformers model (hf_model.HF_TASKS)
        (local / ".source").write_text(source)
        storage.replace_dir(local, target)
    return target


def retrain_summary(records: list[TrialRecord]) -> dict[str, Any] | None:
    if not records:
        return None
    done = [r for r in records if r.best_metric is not None]
    values = [r.best_metric for r in done]
    return {"seeds": [r.params.get("seed") for r in done], "best_metric": values,
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
            "params": {k: v for k, v in records[0].params.items() if k != "seed"},
            "errors": [r.error for r in records if r.stop_reason == "error"]}


def build_summary(run_dir: str, records: list[TrialRecord], cfg: DictConfig) -> dict[str, Any]:
    """summary.json's content for the search trials ``records`` of ``run_dir``."""
    from trainable.config import metric_name

    best = best_trial(records)
    best_dir = storage.join(run_dir, BEST_CHECKPOINT)
    test_path = storage.join(run_dir, TEST_METRICS)
    counts = pd.Series([r.stop_reason for r in records], dtype=object).value_counts()
    summary = {
        "run_dir": run_dir, "task": cfg.task, "metric": METRIC, "mode": MODE, "primary_metric": metric_name(cfg),
        "best": None if best is None else {
            "trial_id": best.trial_id, "experiment": best.experiment, "metric": best.best_metric,
            "epoch": best.best_epoch, "params": best.params, "result": best.best_result,
            "checkpoint": best_dir if storage.exists(best_dir) else None, "path": best.path},
        "counts": {str(k): int(v) for k, v in counts.items()}, "num_trials": len(records),
        "total_epochs": sum(r.epochs_run for r in records),
        "trials": [r.summary() for r in records],
        "retrain": retrain_summary(load_trials(run_dir, RETRAIN, cfg)),
        "test": json.loads(storage.read_text(test_path)) if storage.exists(test_path) else None,
        "space": describe(read_space(run_dir)),
    }
    return json_safe(summary)


def write_summary(run_dir: str) -> tuple[dict[str, Any], list[TrialRecord]]:
    """Rewrite summary.json, trials.parquet and best_checkpoint/ from the run directory."""
    cfg = sweep_config(run_dir)
    records = search_trials(run_dir, cfg)
    best = best_trial(records)
    if best is not None:
        copy_best_checkpoint(run_dir, best)
    summary = build_summary(run_dir, records, cfg)
    validate_summary(summary)
    write_json(storage.join(run_dir, SUMMARY_FILE), summary)
    fs, path = storage.resolve(storage.join(run_dir, TRIALS_FILE))
    pd.DataFrame([r.row() for r in records]).to_parquet(path, filesystem=fs, index=False)
    return summary, records


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    """The trials ranked by best metric, as a text table, then errors, retrain and test lines."""
    trials = pd.DataFrame(summary["trials"], columns=["trial_id", "experiment", "best_metric", "best_epoch",
                                                      "epochs_run", "planned_epochs", "stop_reason",
                                                      "params", "error"])
    ranked = trials.sort_values("best_metric", ascending=False, na_position="last", kind="stable")
    table = pd.DataFrame({
        "rank": range(1, len(ranked) + 1), "trial": ranked["trial_id"], "stage": ranked["experiment"],
        "best": ranked["best_metric"].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}"),
        "epoch": ranked["best_epoch"].map(lambda v: "-" if pd.isna(v) else str(int(v))),
        "run": [f"{a}/{b}" for a, b in zip(ranked["epochs_run"], ranked["planned_epochs"], strict=True)],
        "stopped": ranked["stop_reason"]})
    params = pd.DataFrame(list(ranked["params"]), index=ranked.index)
    for key in sorted(params.columns):
        table[key.split(".")[-1]] = params[key].map(fmt_value).to_numpy()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    out = [f"{_count(summary['num_trials'], 'trial')}, {_count(summary['total_epochs'], 'epoch')}; stopped: {counts}"]
    if len(table):
        out += _text_table(table.head(top).astype(str))
    out += [f"trial {t.trial_id} error: {t.error}" for t in trials.itertuples() if t.error]
    retrained = summary.get("retrain")
    if retrained and retrained["mean"] is not None:
        out.append(f"retrain of the best config over seeds {retrained['seeds']}: "
                   f"{retrained['mean']:.4f} +- {retrained['std']:.4f}")
    if summary.get("test"):
        primary = summary["primary_metric"]
        out.append(f"test {primary} of the best checkpoint: {summary['test'].get(primary, math.nan):.4f}")
    return "\n".join(out)


def _text_table(table: pd.DataFrame) -> list[str]:
    """Left-aligned columns two spaces apart (pandas right-aligns values under left-aligned heads)."""
    widths = [max([len(str(c)), *table[c].str.len()]) for c in table.columns]
    rows = [list(table.columns), *table.to_numpy().tolist()]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


