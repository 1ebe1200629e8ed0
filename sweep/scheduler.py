"""The sweep's trial scheduler: Ray's ASHA comparing what trials keep, with rungs that survive a resume.

At each rung ASHA compares the trials' best metric so far (``BEST_METRIC``: the checkpoint a trial
keeps), not the epoch's own value: one noisy epoch neither stops a trial that already reached a good
checkpoint nor saves one that never did (``bench/sweep.py`` prints how well each ranks the trials at
the rungs against their final best).

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

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from plumbing import storage
from trainable.session import BEST_METRIC, METRIC, MODE


class SweepASHA(ASHAScheduler):
    """ASHA on ``epoch`` and ``BEST_METRIC`` that appends each stop to ``stops_path`` (so the record
    can say "asha") and rebuilds its rungs from the stage's recorded trials when first used."""

    def __init__(self, run_dir: str, experiment: str, stops_path: str, **kwargs: Any):
        super().__init__(time_attr="epoch", metric=BEST_METRIC, mode=MODE, **kwargs)
        self.run_dir, self.experiment, self.stops_path = run_dir, experiment, stops_path
        self.rebuilt = False

    def on_trial_add(self, tune_controller, trial) -> None:
        self.rebuild()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.rebuild()
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            entry = {"experiment": self.experiment, "trial_id": trial.trial_id, "epoch": result.get("epoch")}
            before = storage.read_text(self.stops_path) if storage.exists(self.stops_path) else ""
            storage.write_text(self.stops_path, before + json.dumps(entry) + "\n")  # an object store appends so
        return action

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
            ASHAScheduler.on_trial_result(self, None, trial, result)
        if ended and epochs:
            ASHAScheduler.on_trial_complete(self, None, trial, epochs[-1])


def recorded_trials(run_dir: str, experiment: str) -> list[tuple[str, list[dict[str, float]], bool]]:
    """(trial id, its epochs as {epoch, BEST_METRIC} results, whether Tune ended it) for each trial of
    the stage, in creation order; the best so far is the running maximum of the recorded metric."""
    from sweep.summary import run_config
    from sweep.trials import load_trials

    if not storage.exists(storage.join(run_dir, experiment)):
        return []
    out = []
    for record in load_trials(run_dir, experiment, run_config(run_dir)):
        best, epochs = -math.inf, []
        for h in record.history:
            if h[METRIC] is not None:
                best = max(best, h[METRIC])
            if best > -math.inf:
                epochs.append({"epoch": int(h["epoch"]), BEST_METRIC: best})
        out.append((record.trial_id, epochs, record.state in ("TERMINATED", "ERROR")))
    return out


def make_scheduler(cfg: Any, run_dir: str, experiment: str, max_t: int, stops_path: str):
    """ASHA (``sweep.scheduler=asha``) or FIFO (every trial to its end)."""
    if cfg.sweep.scheduler == "fifo":
        return FIFOScheduler()
    return SweepASHA(run_dir, experiment, stops_path, max_t=max_t, grace_period=cfg.sweep.grace_period,
                     reduction_factor=cfg.sweep.reduction_factor)
