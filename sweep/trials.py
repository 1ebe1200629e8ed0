"""Every trial of a sweep stage as one record, read through Tune's own ``ExperimentAnalysis``: the one
reader of Ray's on-disk layout (experiment state, trial dirs, result rows, Ray Train's checkpoints).

Tune's experiment state gives each trial's status, config, path and result rows (a DataFrame per
trial). Two files of the trial's own complete what Tune cannot know after a stop and a resume:
the loop's ``metrics.json`` (rank 0's history of every epoch, however often the trial was resumed;
Tune starts ``result.json`` again in a resumed driver) and the driver's ``trial_params.json`` (a
trial stopped before Tune's first save has no state yet). Paths and URIs (``s3://...``) alike.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from plumbing import storage
from sweep.layout import ERROR_FILE, PARAMS_FILE, STOPS_FILE, TRAIN_RUN_NAME
from trainable.session import METRIC, METRICS_FILE, MODE, VAL_PREFIX
from trainable.stop_reason import StopReason, classify

_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b[^:]*:?")
_SCALAR_PREFIXES = (VAL_PREFIX, "train_loss", "lr", "samples_per_s", "tokens_per_s")


@dataclass
class TrialRecord:
    trial_id: str
    experiment: str
    params: dict[str, Any]
    state: str
    stop_reason: StopReason
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
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, metric and scalars: plots, ASHA's replay

    @property
    def dir_name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def summary(self) -> dict[str, Any]:
        """The trial as summary.json lists it."""
        return {k: v for k, v in asdict(self).items() if k != "history"}

    def row(self) -> dict[str, Any]:
        """The trial as a trials.parquet row: params and best-epoch scalars flattened into columns."""
        out = {k: v for k, v in asdict(self).items() if k not in ("params", "best_result", "history")}
        out.update({f"param:{k}": v for k, v in self.params.items()})
        out.update({f"best:{k}": v for k, v in self.best_result.items()})
        return out


def load_trials(run_dir: str, experiment: str, cfg: DictConfig) -> list[TrialRecord]:
    """The stage's trials in creation order (empty before it started)."""
    exp_dir = storage.join(run_dir, experiment)
    tune_trials, frames = analysis_of(exp_dir)
    stops = read_stops(run_dir)
    listed = storage.list_dir(exp_dir) if storage.exists(exp_dir) else []
    names = sorted(set(tune_trials) | {n for n in listed if storage.exists(storage.join(exp_dir, n, PARAMS_FILE))})
    records = []
    for name in names:
        trial_dir = storage.join(exp_dir, name)
        trial = tune_trials.get(name)
        params = dict(trial.config) if trial else json.loads(storage.read_text(storage.join(trial_dir, PARAMS_FILE)))
        history = epochs_of(frames.get(name, pd.DataFrame()), trial_dir)
        trial_id = trial.trial_id if trial else _id_from_dir(name)
        state = trial.status if trial else "UNKNOWN"
        records.append(record(cfg, experiment, trial_id, trial_dir, params, state, history,
                              stops.get((experiment, trial_id))))
    return records


def analysis_of(exp_dir: str) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Trial dir name -> Tune's Trial, and -> its result rows; empty before Tune saved any state."""
    if not storage.exists(exp_dir) or not any(n.startswith("experiment_state-") for n in storage.list_dir(exp_dir)):
        return {}, {}
    from ray.tune import ExperimentAnalysis

    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a trial stopped before its first result has no result file: said below
    try:
        path, fs = storage.for_ray(exp_dir)
        analysis = ExperimentAnalysis(path, storage_filesystem=fs)
    finally:
        quiet.setLevel(level)
    trials = {t.storage.trial_dir_name: t for t in analysis.trials}
    frames = analysis.trial_dataframes
    return trials, {name: frames.get(t.trial_id, pd.DataFrame()) for name, t in trials.items()}


def epochs_of(frame: pd.DataFrame, trial_dir: str) -> pd.DataFrame:
    """One row per epoch, in order: the loop's own history over Tune's rows (the last report of an
    epoch reported twice wins)."""
    rows = frame[frame["epoch"].notna()] if "epoch" in frame else pd.DataFrame(columns=["epoch"])
    own_path = storage.join(trial_dir, METRICS_FILE)
    if storage.exists(own_path):
        try:
            own = pd.DataFrame(json.loads(storage.read_text(own_path)))
        except (json.JSONDecodeError, ValueError):  # replaced atomically; never half-written
            own = pd.DataFrame()
        if "epoch" in own:
            rows = pd.concat([rows, own], ignore_index=True)
    if METRIC not in rows or rows.empty:
        return pd.DataFrame(columns=["epoch", METRIC])
    rows = rows.astype({"epoch": int}).groupby("epoch", sort=True).last()  # last non-null per column
    return rows.reset_index()


def record(cfg: DictConfig, experiment: str, trial_id: str, trial_dir: str, params: dict[str, Any], state: str,
           history: pd.DataFrame, stopped_at: int | None) -> TrialRecord:
    """One trial's record from its Tune status and its epochs."""
    error = read_error(trial_dir) if state != "TERMINATED" else None
    planned = int(params.get("training.epochs", cfg.training.epochs))
    scored = history[history[METRIC].notna()] if not history.empty else history
    best = scored.loc[scored[METRIC].idxmax()] if not scored.empty else None
    times = history["time_total_s"].dropna() if "time_total_s" in history else pd.Series(dtype=float)
    return TrialRecord(
        trial_id=trial_id, experiment=experiment, params=params, state=state,
        stop_reason=stop_reason(state, history, planned, stopped_at, cfg.training.patience, error),
        error=error, epochs_run=int(history["epoch"].iloc[-1]) if not history.empty else 0,
        planned_epochs=planned, final_metric=_num(history[METRIC].iloc[-1]) if not history.empty else None,
        best_metric=None if best is None else _num(best[METRIC]),
        best_epoch=None if best is None else int(best["epoch"]), augment=trial_augment(cfg, params),
        best_result={} if best is None else _scalars(best.to_dict()),
        time_s=float(times.iloc[-1]) if not times.empty else 0.0, path=trial_dir,
        history=[{**_scalars(row), "epoch": int(row["epoch"]), METRIC: _num(row[METRIC])}
                 for row in history.to_dict("records")])


def stop_reason(state: str, history: pd.DataFrame, planned: int, stopped_at: int | None,
                patience: int, error: str | None) -> StopReason:
    """Why a trial ended, from its Tune status and its epochs (the record's view, after the fact)."""
    metric = history[METRIC].fillna(-math.inf).tolist() if not history.empty else []
    return classify(epochs=int(history["epoch"].iloc[-1]) if not history.empty else 0, planned=planned,
                    errored=state == "ERROR" or bool(error and state != "TERMINATED"),
                    running=state != "TERMINATED", scheduler_stopped=stopped_at is not None,
                    early_stopped=bool(patience and metric
                                       and len(metric) - 1 - metric.index(max(metric)) >= patience))


def ended_reason(run_dir: str, experiment: str, trial_id: str, epochs: int, planned: int) -> StopReason:
    """How a trial Tune completed (not errored) ended, when it ends: it returns after its last epoch
    or on early stopping, or the scheduler stopped it (then scheduler_stops.jsonl says so)."""
    return classify(epochs=epochs, planned=planned,
                    scheduler_stopped=epochs < planned and (experiment, trial_id) in read_stops(run_dir))


def best_checkpoint_of(record: TrialRecord) -> str | None:
    """The trial's best checkpoint as Ray Train recorded it, or Tune for a trial that trained in its own
    process (one kept per trial; the loop checkpoints only on improvement, so the latest is the best)."""
    from ray.train import Result

    train_dir = storage.join(record.path, TRAIN_RUN_NAME)
    if not storage.exists(train_dir):
        return _latest_checkpoint(record.path)
    quiet = logging.getLogger("ray.train")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # from_path logs a paragraph about resuming per call
    try:
        ckpt = Result.from_path(*storage.for_ray(train_dir)).get_best_checkpoint(METRIC, MODE)
    except (RuntimeError, ValueError, FileNotFoundError):
        ckpt = None
    finally:
        quiet.setLevel(level)
    if ckpt is not None:
        return storage.join(train_dir, ckpt.path.rstrip("/").rsplit("/", 1)[-1])
    return _latest_checkpoint(train_dir)


def _latest_checkpoint(run_dir: str) -> str | None:
    names = storage.list_dir(run_dir) if storage.exists(run_dir) else []
    found = sorted(n for n in names if n.startswith("checkpoint_"))
    return storage.join(run_dir, found[-1]) if found else None


def read_error(trial_dir: str) -> str | None:
    """The exception's own message (the last 'XError: ...' line of error.txt), or None."""
    path = storage.join(trial_dir, ERROR_FILE)
    if not storage.exists(path):
        return None
    lines = [ln.strip() for ln in storage.read_text(path).splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_LINE.match(ln)]
    return (hits[-1] if hits else (lines[-1] if lines else "error (empty error.txt)"))[:2000]


def read_stops(run_dir: str) -> dict[tuple[str, str], int]:
    """(experiment, trial_id) -> epoch at which the scheduler stopped the trial."""
    path = storage.join(run_dir, STOPS_FILE)
    if not storage.exists(path):
        return {}
    stops = [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
    return {(s["experiment"], s["trial_id"]): int(s["epoch"]) for s in stops}


def trial_augment(cfg: DictConfig, params: dict[str, Any]) -> str:
    """The augmentation a trial trained with: the sweep's augment section with its searched keys."""
    from data_prep.augment import signature

    searched = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("augment.")}
    return signature(OmegaConf.merge(cfg.augment, searched))


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    scored = [r for r in records if r.best_metric is not None]
    return max(scored, key=lambda r: r.best_metric) if scored else None


def _id_from_dir(name: str) -> str:
    """trial_<index>_<id> (sweep.run's names) or <trainable>_<id>_<index>_... (Tune's default)."""
    parts = name.split("_")
    if name.startswith("trial_") and len(parts) == 3:
        return parts[2]
    return parts[1] if len(parts) > 1 else name


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _scalars(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if k.startswith(_SCALAR_PREFIXES)
            and isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)}
