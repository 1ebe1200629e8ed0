"""The sweep's trial scheduler: Ray's ASHA comparing the trials' best so far, with rungs that survive a resume.

At each rung ASHA compares each trial's best so far of the rung metric (``sweep.config.rung_metric``:
ROC-AUC for ``pair``, the trial's metric otherwise), not the epoch's own value: one noisy epoch neither
stops a trial that already reached a good checkpoint nor saves one that never did. For ``pair`` a
threshold-free metric ranks early: after two epochs most scores still sit on one side of 0.5, so F1
there says more about where they sit than about what was learned (``bench/sweep.py`` prints how well
each choice ranks the trials at the rungs against their final best).

``Tuner.restore`` restores the searcher and the callbacks but not the scheduler: it comes back as it
was pickled before the first trial, with empty rungs (ray-project/ray#30838). So before it places its
first trial this scheduler replays every recorded epoch of the stage's trials through ASHA's own
``on_trial_add`` / ``on_trial_result`` / ``on_trial_complete``, in creation order: a resumed stage
compares new results with the same rungs the uninterrupted stage would have.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from plumbing import storage
from sweep.config import rung_metric
from trainable.session import MODE, val_key


class SweepASHA(ASHAScheduler):
    """ASHA on ``epoch`` and the best so far of ``rung_key`` (a result's ``val_*`` key) that appends each
    stop to ``stops_path`` (so the record can say "asha") and rebuilds its rungs from the stage's recorded
    trials when first used. A rung decides as Ray's does: against whatever trials reached it before."""

    def __init__(self, run_dir: str, experiment: str, stops_path: str, *, rung_key: str, max_t: int,
                 grace_period: int, reduction_factor: float):
        super().__init__(time_attr="epoch", metric=rung_key, mode=MODE, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor)
        self.run_dir, self.experiment, self.stops_path = run_dir, experiment, stops_path
        self.rung_key, self.best_so_far = rung_key, {}
        self.rebuilt = False

    def on_trial_add(self, tune_controller, trial) -> None:
        self.rebuild()
        super().on_trial_add(tune_controller, trial)

    def with_best(self, trial_id: str, result: dict) -> dict:
        """``result`` with the rung metric replaced by the trial's best so far (a missing or NaN epoch adds
        nothing). Replaced, not added under a key of its own: Tune checks that each reported result holds
        the scheduler's metric before the scheduler sees it."""
        best = keep_best(self.best_so_far, trial_id, result.get(self.rung_key))
        return result if best is None else {**result, self.rung_key: best}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.rebuild()
        action = super().on_trial_result(tune_controller, trial, self.with_best(trial.trial_id, result))
        if action == TrialScheduler.STOP:
            entry = {"experiment": self.experiment, "trial_id": trial.trial_id, "epoch": result.get("epoch")}
            storage.append_text(self.stops_path, json.dumps(entry) + "\n")
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, self.with_best(trial.trial_id, result))

    def rebuild(self) -> None:
        """Replay the recorded epochs of this stage's trials (none in a new stage) once."""
        if self.rebuilt:
            return
        self.rebuilt = True
        for trial_id, epochs, ended in recorded_trials(self.run_dir, self.experiment):
            self.replay(trial_id, epochs, ended)

    def replay(self, trial_id: str, epochs: list[dict[str, float]], ended: bool) -> None:
        """One trial's epochs as ASHA saw them; its decisions then are already taken, so dropped."""
        trial = SimpleNamespace(trial_id=trial_id)
        ASHAScheduler.on_trial_add(self, None, trial)
        for result in epochs:
            result = self.with_best(trial_id, result)
            ASHAScheduler.on_trial_result(self, None, trial, result)
        if ended and epochs:
            ASHAScheduler.on_trial_complete(self, None, trial, result)


def keep_best(bests: dict[str, float], trial_id: str, value: Any) -> float | None:
    """The trial's best so far in ``bests`` after ``value`` (a missing or NaN value adds nothing)."""
    if isinstance(value, int | float) and math.isfinite(value):
        bests[trial_id] = max(bests.get(trial_id, -math.inf), float(value))
    return bests.get(trial_id)


def recorded_trials(run_dir: str, experiment: str) -> list[tuple[str, list[dict[str, Any]], bool]]:
    """(trial id, its epochs' results, whether Tune ended it) for each trial of the stage, in creation order."""
    from sweep.summary import sweep_config
    from sweep.trials import load_trials

    if not storage.exists(storage.join(run_dir, experiment)):
        return []
    return [(r.trial_id, r.history, r.state in ("TERMINATED", "ERROR"))
            for r in load_trials(run_dir, experiment, sweep_config(run_dir))]


def make_scheduler(cfg: DictConfig, run_dir: str, experiment: str, max_t: int, stops_path: str):
    """ASHA (``sweep.scheduler=asha``) or FIFO (every trial to its end)."""
    if cfg.sweep.scheduler == "fifo":
        return FIFOScheduler()
    return SweepASHA(run_dir, experiment, stops_path, rung_key=val_key(rung_metric(cfg)), max_t=max_t,
                     grace_period=cfg.sweep.grace_period, reduction_factor=cfg.sweep.reduction_factor)
