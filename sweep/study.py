"""The sweep's trials as one Optuna study: what Optuna's plots and importances read.

Each sweep trial becomes an Optuna trial with the space's own distributions (steps and log scales
included), its best validation metric as the value and its per-epoch metric as intermediate values,
in the state Ray's OptunaSearch gives it (a trial ASHA stopped is COMPLETE with the value it reached,
an errored one FAIL, one an interrupted sweep left running RUNNING). The trial's directory, id,
stage and stop reason ride along as user attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from sweep.trials import TrialRecord
from trainable.session import METRIC, MODE

_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def trial_state(record: TrialRecord) -> TrialState:
    """FAIL for an error; RUNNING for a trial without a result or one a stopped sweep left running."""
    if record.stop_reason == "error":
        return TrialState.FAIL
    if record.best_metric is None or (record.stop_reason == "unfinished" and record.state != "TERMINATED"):
        return TrialState.RUNNING
    return TrialState.COMPLETE


def build_study(records: Sequence[TrialRecord], dists: Mapping[str, BaseDistribution],
                run_dir: str = "") -> optuna.Study:
    """An in-memory study (in the sweep's direction) with one trial per record, in the records' order."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per rebuild ("A new study created")
    try:
        study = optuna.create_study(direction=_DIRECTIONS[MODE], study_name=run_dir or "sweep")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for r in records:
        params = {k: v for k, v in r.params.items() if k in dists}
        state = trial_state(r)
        study.add_trial(optuna.trial.create_trial(
            state=state, value=r.best_metric if state == TrialState.COMPLETE else None,
            params=params, distributions={k: dists[k] for k in params},
            intermediate_values={int(h["epoch"]): h[METRIC] for h in r.history if h[METRIC] is not None},
            user_attrs=user_attrs(r)))
    return study


def user_attrs(record: TrialRecord) -> dict[str, Any]:
    return {"trial": f"{record.experiment}/{record.dir_name}", "trial_id": record.trial_id,
            "stage": record.experiment, "stop_reason": record.stop_reason,
            "epochs_run": record.epochs_run, "planned_epochs": record.planned_epochs}
