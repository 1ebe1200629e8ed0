"""The sweep's trials as one Optuna study: what Optuna's plots and importances read.

The searcher keeps each stage's study in Optuna storage (``sweep.searcher``): what TPE was told, each
trial's best metric as its value and its epochs as intermediate values. The record reads those
trials as they are stored and adds what only the record knows (the trial's directory, stage and stop
reason, its epochs) as user attributes. A trial no searcher proposed (a grid given to a stage, or a
stage whose study is gone) comes from its record: its best validation metric as the value, in the
state the searcher would have told (a trial ASHA stopped COMPLETE with the value it reached, an
errored one FAIL, one an interrupted sweep left running RUNNING).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from plumbing import storage
from sweep.config import SQLITE
from sweep.layout import SEARCH_STAGES, STUDY_FILE
from sweep.trials import TrialRecord
from trainable.session import METRIC, MODE

TRIAL_ID_ATTR = "tune_trial_id"  # the Tune trial an Optuna trial was asked for
DIRECTIONS = {"max": "maximize", "min": "minimize"}


def study_name(run_dir: str, stage: str) -> str:
    """``<out_dir name>/<stage>``: readable in optuna-dashboard, distinct in a database shared by sweeps."""
    return f"{str(run_dir).rstrip('/').rsplit('/', 1)[-1]}/{stage}"


def trial_state(record: TrialRecord) -> TrialState:
    """FAIL for an error; RUNNING for a trial without a result or one a stopped sweep left running."""
    if record.stop_reason == "error":
        return TrialState.FAIL
    if record.best_metric is None or (record.stop_reason == "unfinished" and record.state != "TERMINATED"):
        return TrialState.RUNNING
    return TrialState.COMPLETE


def quiet_study(**kwargs: Any) -> optuna.Study:
    """``optuna.create_study`` without its "A new study created" line (one per stage and per report)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(direction=DIRECTIONS[MODE], **kwargs)
    finally:
        optuna.logging.set_verbosity(verbosity)


def stored_trials(run_dir: str, cfg: DictConfig) -> dict[str, FrozenTrial]:
    """Tune trial id -> the searcher's trial, from every search stage's study in the sweep's storage
    (``sweep.storage``, or the run directory's study.db, fetched when the run directory is a URI)."""
    with tempfile.TemporaryDirectory(prefix="sweep-study-") as tmp:
        url = cfg.sweep.storage or local_study_url(run_dir, Path(tmp))
        if url is None:
            return {}
        names = set(optuna.get_all_study_names(url))
        out = {}
        for stage in SEARCH_STAGES:
            name = study_name(cfg.out_dir, stage)
            if name in names:
                study = optuna.load_study(study_name=name, storage=url)
                out.update({t.user_attrs[TRIAL_ID_ATTR]: t for t in study.get_trials(deepcopy=False)
                            if TRIAL_ID_ATTR in t.user_attrs})
        return out


def local_study_url(run_dir: str, tmp: Path) -> str | None:
    path = storage.join(run_dir, STUDY_FILE)
    if not storage.exists(path):
        return None
    if storage.is_uri(run_dir):
        (tmp / STUDY_FILE).write_bytes(storage.read_bytes(path))
        return SQLITE + str(tmp / STUDY_FILE)
    return SQLITE + str(Path(path).resolve())


def build_study(records: Sequence[TrialRecord], dists: Mapping[str, BaseDistribution], run_dir: str = "",
                stored: Mapping[str, FrozenTrial] | None = None) -> optuna.Study:
    """An in-memory study (in the sweep's direction) with one trial per record, in the records' order:
    the stored trial of the record's Tune trial where ``stored`` has one, else one made from the record."""
    study = quiet_study(study_name=run_dir or "sweep")
    for r in records:
        kept = (stored or {}).get(r.trial_id)
        study.add_trial(from_storage(kept, r) if kept is not None else from_record(r, dists))
    return study


def from_storage(trial: FrozenTrial, record: TrialRecord) -> FrozenTrial:
    return optuna.trial.create_trial(
        state=trial.state, value=trial.value if trial.state == TrialState.COMPLETE else None,
        params=trial.params, distributions=trial.distributions, intermediate_values=trial.intermediate_values,
        user_attrs={**trial.user_attrs, **user_attrs(record)})


def from_record(record: TrialRecord, dists: Mapping[str, BaseDistribution]) -> FrozenTrial:
    params = {k: v for k, v in record.params.items() if k in dists}
    state = trial_state(record)
    return optuna.trial.create_trial(
        state=state, value=record.best_metric if state == TrialState.COMPLETE else None,
        params=params, distributions={k: dists[k] for k in params},
        intermediate_values={int(h["epoch"]): h[METRIC] for h in record.history if h[METRIC] is not None},
        user_attrs=user_attrs(record))


def user_attrs(record: TrialRecord) -> dict[str, Any]:
    return {"trial": f"{record.experiment}/{record.dir_name}", "trial_id": record.trial_id,
            "stage": record.experiment, "stop_reason": record.stop_reason,
            "epochs_run": record.epochs_run, "planned_epochs": record.planned_epochs}
