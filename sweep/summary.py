"""What a sweep leaves, rebuilt from disk: one record per trial, summary.json and trials.parquet.

Everything is read back from the run directory (Tune's experiment state for trial states, each
trial's result.json for its epochs, error.txt for its exception), never from the live Tuner, so
``python -m sweep.report`` after a crash or a resume gives the same picture: every trial once,
each epoch once (a resumed trial may report an epoch twice; the last report wins).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from plumbing.errors import UserError
from sweep.schema import validate_summary
from trainable.session import METRICS_FILE

SEARCH_STAGES = ("search", "stage2")
RETRAIN = "retrain"
STOPS_FILE = "scheduler_stops.jsonl"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.parquet"
TEST_FILE = "test_metrics.json"
BEST_CHECKPOINT = "best_checkpoint"
SPACE_FILE = "space.json"
DONE_FILE = "trial_done.json"
PARAMS_FILE = "trial_params.json"  # the driver's copy of the trial's params, written where the trial lives
METRIC = "metric"
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b[^:]*:?")


@dataclass
class TrialRecord:
    trial_id: str
    experiment: str
    params: dict[str, Any]
    state: str
    stop_reason: str  # finished | asha | early_stop | error | unfinished
    error: str | None
    epochs_run: int
    planned_epochs: int
    final_metric: float | None
    best_metric: float | None
    best_epoch: int | None
    augment: str = "off"  # the trial's augmentation signature (data_prep.augment.signature)
    best_result: dict[str, float] = field(default_factory=dict)
    time_s: float = 0.0
    path: str = ""
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, metric (for plots)

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("params", "best_result", "history")}
        out.update({f"param:{k}": v for k, v in self.params.items()})
        out.update({f"best:{k}": v for k, v in self.best_result.items()})
        return out


def run_config(run_dir: str | Path):
    """The sweep's saved config (typed), or a UserError naming what is missing."""
    from sweep.config import SweepConfig

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a sweep run directory (no config.yaml); give the out_dir "
                        "of a python -m sweep.run")
    return OmegaConf.merge(OmegaConf.structured(SweepConfig), OmegaConf.load(path))


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """One result per epoch, in epoch order (the last report of a repeated epoch wins).

    Tune's result.json gives each epoch its bookkeeping (trial id, times); the loop's own
    metrics.json (written by rank 0 where the trial lives) is the authority on which epochs ran:
    Tune stages result.json on the driver and starts it again in a resumed driver, so after a
    stop and resume it can lack the epochs before the stop.
    """
    by_epoch: dict[int, dict] = {}
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if "epoch" in r and METRIC in r:
                    by_epoch[int(r["epoch"])] = r
    own = trial_dir / METRICS_FILE
    if own.is_file():
        try:
            for r in json.loads(own.read_text()):
                by_epoch[int(r["epoch"])] = {**by_epoch.get(int(r["epoch"]), {}), **r}
        except (json.JSONDecodeError, KeyError, TypeError):  # replaced atomically; never half-written
            pass
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_error(trial_dir: Path) -> str | None:
    """The exception's own message (the last 'XError: ...' line of error.txt), or None."""
    path = trial_dir / "error.txt"
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_LINE.match(ln)]
    return (hits[-1] if hits else (lines[-1] if lines else "error (empty error.txt)"))[:2000]


def read_stops(run_dir: Path) -> dict[tuple[str, str], int]:
    """(experiment, trial_id) -> epoch at which the scheduler stopped the trial."""
    path = run_dir / STOPS_FILE
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                s = json.loads(line)
                out[(s["experiment"], s["trial_id"])] = int(s["epoch"])
    return out


def trial_states(exp_dir: Path) -> dict[str, str]:
    """Trial dir name -> Tune status from the newest experiment state (empty if none was saved)."""
    if not any(exp_dir.glob("experiment_state-*.json")):
        return {}
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(exp_dir))
    return {Path(t.path).name: t.status for t in analysis.trials}


def stop_reason(state: str, history: list[dict], planned: int, stopped_at: int | None,
                patience: int, error: str | None) -> str:
    if state == "ERROR" or (error and state not in ("TERMINATED",)):
        return "error"
    epochs = int(history[-1]["epoch"]) if history else 0
    if epochs >= planned:
        return "finished"
    if state != "TERMINATED":
        return "unfinished"
    if stopped_at is not None:
        return "asha"
    if patience and history:
        best = max(range(len(history)), key=lambda i: history[i][METRIC])
        if len(history) - 1 - best >= patience:
            return "early_stop"
    return "unfinished"


def trial_dirs(exp_dir: Path) -> list[Path]:
    """Every trial directory of an experiment: with Tune's params.json, or the driver's own copy of the
    params (Tune syncs its files from the driver in batches; a stop can come before the first sync)."""
    return sorted({p.parent for name in ("params.json", PARAMS_FILE) for p in exp_dir.glob(f"*/{name}")})


def trial_params(trial_dir: Path) -> dict[str, Any]:
    tune_file = trial_dir / "params.json"
    return json.loads((tune_file if tune_file.is_file() else trial_dir / PARAMS_FILE).read_text())


def load_trials(run_dir: Path, experiment: str, cfg) -> list[TrialRecord]:
    exp_dir = run_dir / experiment
    if not exp_dir.is_dir():
        return []
    states = trial_states(exp_dir)
    stops = read_stops(run_dir)
    records = []
    for trial_dir in trial_dirs(exp_dir):
        params = trial_params(trial_dir)
        history = read_results(trial_dir)
        trial_id = next((r["trial_id"] for r in reversed(history) if "trial_id" in r), _id_from_dir(trial_dir.name))
        state = states.get(trial_dir.name, "UNKNOWN")
        error = read_error(trial_dir) if state != "TERMINATED" else None
        planned = int(params.get("training.epochs", cfg.training.epochs))
        reason = stop_reason(state, history, planned, stops.get((experiment, trial_id)),
                             cfg.training.patience, error)
        best = max(history, key=lambda r: r[METRIC]) if history else None
        records.append(TrialRecord(
            trial_id=trial_id, experiment=experiment, params=params, state=state, stop_reason=reason,
            error=error, epochs_run=int(history[-1]["epoch"]) if history else 0, planned_epochs=planned,
            final_metric=_num(history[-1][METRIC]) if history else None,
            best_metric=_num(best[METRIC]) if best else None,
            best_epoch=int(best["epoch"]) if best else None, augment=trial_augment(cfg, params),
            best_result=_scalars(best) if best else {},
            time_s=float(next((r["time_total_s"] for r in reversed(history) if "time_total_s" in r), 0.0)),
            path=str(trial_dir), history=[{"epoch": r["epoch"], METRIC: r[METRIC]} for r in history]))
    return records


def trial_augment(cfg, params: dict[str, Any]) -> str:
    """The augmentation a trial trained with: the sweep's augment section with its searched keys."""
    from data_prep.augment import signature

    searched = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("augment.")}
    return signature(OmegaConf.merge(cfg.augment, searched))


def _id_from_dir(name: str) -> str:
    """trial_<index>_<id> (sweep.run's names) or <trainable>_<id>_<index>_... (Tune's default)."""
    parts = name.split("_")
    if name.startswith("trial_") and len(parts) == 3:
        return parts[2]
    return parts[1] if len(parts) > 1 else name


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _scalars(result: dict) -> dict[str, float]:
    keep = ("val_", "train_loss", "lr", "samples_per_s", "tokens_per_s")
    return {k: float(v) for k, v in result.items()
            if k.startswith(keep) and isinstance(v, int | float) and not isinstance(v, bool)}


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    scored = [r for r in records if r.best_metric is not None]
    return max(scored, key=lambda r: r.best_metric) if scored else None


def best_checkpoint_of(record: TrialRecord) -> Path | None:
    """The trial's best checkpoint as Ray Train recorded it (one kept per trial)."""
    train_dir = Path(record.path) / "train"
    if not train_dir.is_dir():
        return None
    from ray.train import Result

    quiet = logging.getLogger("ray.train")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # from_path logs a paragraph about resuming per call
    try:
        ckpt = Result.from_path(str(train_dir)).get_best_checkpoint(METRIC, "max")
    except (RuntimeError, ValueError, FileNotFoundError):
        ckpt = None
    finally:
        quiet.setLevel(level)
    if ckpt is not None:
        return Path(ckpt.path)
    found = sorted(p for p in train_dir.glob("checkpoint_*") if p.is_dir())
    return found[-1] if found else None


def copy_best_checkpoint(run_dir: Path, record: TrialRecord) -> Path | None:
    """Copy (then swap in) the best trial's checkpoint to run_dir/best_checkpoint: what evaluation and
    prediction load (weights, configs, tokenizer, meta). The optimizer, scheduler, scaler and RNG
    state (most of a checkpoint's size) stays in the trial's own checkpoint, for resuming it."""
    from trainable.checkpoint import STATE_FILE

    source = best_checkpoint_of(record)
    if source is None:
        return None
    target = run_dir / BEST_CHECKPOINT
    marker = target / ".source"
    if marker.is_file() and marker.read_text() == str(source):
        return target
    tmp = run_dir / (BEST_CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(STATE_FILE))
    (tmp / ".source").write_text(str(source))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def retrain_summary(records: list[TrialRecord]) -> dict[str, Any] | None:
    done = [r for r in records if r.best_metric is not None]
    if not records:
        return None
    values = [r.best_metric for r in done]
    return {"seeds": [r.params.get("seed") for r in done], "best_metric": values,
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
            "params": {k: v for k, v in records[0].params.items() if k != "seed"},
            "errors": [r.error for r in records if r.stop_reason == "error"]}


def build_summary(run_dir: str | Path) -> tuple[dict[str, Any], list[TrialRecord]]:
    """summary.json's content and the search trials' records, from what is on disk."""
    from plumbing.jsonio import json_safe  # NaN/inf (a loss over no rows) become null
    from trainable.config import metric_name

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    records = [r for stage in SEARCH_STAGES for r in load_trials(run_dir, stage, cfg)]
    best = best_trial(records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.stop_reason] = counts.get(r.stop_reason, 0) + 1
    test_path = run_dir / TEST_FILE
    space = json.loads((run_dir / SPACE_FILE).read_text()) if (run_dir / SPACE_FILE).is_file() else {}
    summary = {
        "run_dir": str(run_dir), "task": cfg.task, "metric": METRIC, "mode": "max",
        "primary_metric": metric_name(cfg),
        "best": None if best is None else {
            "trial_id": best.trial_id, "experiment": best.experiment, "metric": best.best_metric,
            "epoch": best.best_epoch, "params": best.params, "result": best.best_result,
            "checkpoint": str(run_dir / BEST_CHECKPOINT) if (run_dir / BEST_CHECKPOINT).is_dir() else None,
            "path": best.path},
        "counts": counts, "num_trials": len(records), "total_epochs": sum(r.epochs_run for r in records),
        "trials": [{k: v for k, v in asdict(r).items() if k != "history"} for r in records],
        "retrain": retrain_summary(load_trials(run_dir, RETRAIN, cfg)),
        "test": json.loads(test_path.read_text()) if test_path.is_file() else None,
        "space": space,
    }
    return json_safe(summary), records


def write_summary(run_dir: str | Path) -> tuple[dict[str, Any], list[TrialRecord]]:
    """Rewrite summary.json, trials.parquet and best_checkpoint/ from disk."""
    run_dir = Path(run_dir)
    summary, records = build_summary(run_dir)
    best = best_trial(records)
    if best is not None and copy_best_checkpoint(run_dir, best) is not None:
        summary["best"]["checkpoint"] = str(run_dir / BEST_CHECKPOINT)
    validate_summary(summary)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=str, allow_nan=False))
    frame = pd.DataFrame([r.row() for r in records])
    frame.to_parquet(run_dir / TRIALS_FILE, index=False)
    return summary, records


def leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    """The trials ranked by best metric, as a text table."""
    trials = sorted(summary["trials"], key=lambda t: -(t["best_metric"] if t["best_metric"] is not None
                                                       else -math.inf))
    keys = sorted({k for t in trials for k in t["params"]})
    head = ["rank", "trial", "stage", "best", "epoch", "run", "stopped"] + [k.split(".")[-1] for k in keys]
    rows = [head]
    for i, t in enumerate(trials[:top], 1):
        best = "-" if t["best_metric"] is None else f"{t['best_metric']:.4f}"
        rows.append([str(i), t["trial_id"], t["experiment"], best, str(t["best_epoch"] or "-"),
                     f"{t['epochs_run']}/{t['planned_epochs']}", t["stop_reason"]]
                    + [_fmt(t["params"].get(k)) for k in keys])
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    out = [f"{summary['num_trials']} trials, {summary['total_epochs']} epochs; stopped: "
           + ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items())), *lines]
    for t in trials:
        if t["error"]:
            out.append(f"trial {t['trial_id']} error: {t['error']}")
    if summary.get("retrain") and summary["retrain"]["mean"] is not None:
        r = summary["retrain"]
        out.append(f"retrain of the best config over seeds {r['seeds']}: "
                   f"{r['mean']:.4f} +- {r['std']:.4f}")
    if summary.get("test"):
        primary = summary["primary_metric"]
        out.append(f"test {primary} of the best checkpoint: {summary['test'].get(primary, float('nan')):.4f}")
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)
