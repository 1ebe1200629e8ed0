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
    can say "asha") and rebuilds its rungs from the stage's recorded trials when first used.

    A rung stops a trial only once ``reduction_factor`` trials reached it before: Ray's ASHA compares
    a trial with whatever the rung holds, so the second trial to arrive is stopped when it is below
    the first, by however little (on the demo a trial 0.05 behind at epoch 3 that would have won by
    0.05). ASHA's paper never promotes from a rung holding fewer than ``reduction_factor`` trials
    either; it waits, where Ray stops, so here those early arrivals go on."""

    def __init__(self, run_dir: str, experiment: str, stops_path: str, *, max_t: int, grace_period: int,
                 reduction_factor: float):
        super().__init__(time_attr="epoch", metric=BEST_METRIC, mode=MODE, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor)
        self.run_dir, self.experiment, self.stops_path = run_dir, experiment, stops_path
        self.rebuilt = False
        self.min_peers = int(math.ceil(reduction_factor))
        self.milestones = rung_epochs(grace_period, max_t, reduction_factor)
        self.reached: dict[int, set[str]] = {m: set() for m in self.milestones}  # rung -> trials there

    def on_trial_add(self, tune_controller, trial) -> None:
        self.rebuild()
        super().on_trial_add(tune_controller, trial)

    def peers_before(self, trial_id: str, result: dict) -> int | None:
        """How many trials reached the rung this result reaches first (None: it reaches none)."""
        epoch = result.get("epoch") or 0
        for milestone in reversed(self.milestones):  # as Ray's bracket: the highest rung not yet recorded
            if epoch >= milestone and trial_id not in self.reached[milestone]:
                peers = len(self.reached[milestone])
                self.reached[milestone].add(trial_id)
                return peers
        return None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.rebuild()
        peers = self.peers_before(trial.trial_id, result)
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and peers is not None and peers < self.min_peers:
            action = TrialScheduler.CONTINUE  # too few to compare with: go on, as ASHA's paper would
        if action == TrialScheduler.STOP:
            entry = {"experiment": self.experiment, "trial_id": trial.trial_id, "epoch": result.get("epoch")}
            storage.append_text(self.stops_path, json.dumps(entry) + "\n")
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
            self.peers_before(trial_id, result)
            ASHAScheduler.on_trial_result(self, None, trial, result)
        if ended and epochs:
            ASHAScheduler.on_trial_complete(self, None, trial, epochs[-1])


def rung_epochs(grace: int, max_t: int, rf: float) -> list[int]:
    """The epochs of ASHA's rungs, ascending, as Ray's bracket places them (grace x rf^k below max_t)."""
    count = int(math.log(max_t / grace) / math.log(rf) + 1)
    return [int(grace * rf ** k) for k in range(count)]


def recorded_trials(run_dir: str, experiment: str) -> list[tuple[str, list[dict[str, float]], bool]]:
    """(trial id, its epochs as {epoch, BEST_METRIC} results, whether Tune ended it) for each trial of
    the stage, in creation order; the best so far is the running maximum of the recorded metric."""
    from sweep.summary import sweep_config
    from sweep.trials import load_trials

    if not storage.exists(storage.join(run_dir, experiment)):
        return []
    out = []
    for record in load_trials(run_dir, experiment, sweep_config(run_dir)):
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
