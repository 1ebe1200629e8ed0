"""The sweep's record of each trial as it happens: one line per event, and how it ended in TensorBoard.

A Tune callback in the sweep's own process. It sees every trial start, every epoch's result and
every end, including the ends the training loop never sees: ASHA stops a trial by killing its
workers (no ``finally`` runs), and a trial errors only after Ray Train's retries. So this is where
a trial's stop reason (summary.json's vocabulary) reaches its TensorBoard run, when the loop has
not written it itself (``trainable.tensorboard.write_end`` keeps the first record).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from plumbing import storage
from sweep.config import EVENTS, train_dict
from sweep.driver import trial_config, trial_dir_of
from sweep.output import fmt_value
from sweep.scheduler import keep_best
from sweep.space import apply_params
from sweep.trials import ended_reason, read_error
from trainable.session import BEST_METRIC, METRIC, val_key
from trainable.tensorboard import TB_DIR, flat_hparams, write_end


class TrialEvents(Callback):
    """Prints ``<experiment> trial <id>: <event>`` lines (sweep.verbose >= 1) and records every trial's
    stop reason in its TensorBoard run and the stage's first result in timings.json (always)."""

    first_result_seen = False  # a class default: a callback pickled by an older sweep lacks the attribute

    def __init__(self, base: dict[str, Any], run_dir: str | Path, experiment: str, metric_label: str,
                 verbose: int = EVENTS, rung_label: str | None = None):
        self.base, self.run_dir, self.experiment = base, str(run_dir), experiment
        # what ASHA's rungs compare; by default the trial's own metric (then its lines need not name it)
        self.metric_label, self.verbose, self.rung_label = metric_label, verbose, rung_label or metric_label
        self.started: set[str] = set()
        self.rung_best: dict[str, float] = {}  # running trials' best so far of the rung metric (what ASHA compares)
        self._base_cfg = None  # the typed base config, built once: a merge takes 20-80 ms
        self._cfgs: dict[str, Any] = {}  # running trials' configs, built once each (every result needs one)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment: no caches
        return {**self.__dict__, "_base_cfg": None, "_cfgs": {}}

    # ------------------------------------------------------------ Tune's hooks

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id in self.started:  # Tune restarted a driver lost with its node
            self.say(trial, "restarted (its driver was lost); it goes on from its last checkpoint")
            return
        self.started.add(trial.trial_id)
        params = " ".join(f"{k.split('.')[-1]}={fmt_value(v)}" for k, v in sorted(trial.config.items()))
        self.say(trial, f"started: {params}" if params else "started")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if not self.first_result_seen:  # when the sweep's first result came (timings.json)
            from sweep.stages import update_timings

            self.first_result_seen = True
            update_timings(self.run_dir, first_result_at=time.time(), keep=True)
        keep_best(self.rung_best, trial.trial_id, result.get(val_key(self.rung_label)))
        if "epoch" in result and METRIC in result:
            best = result.get(BEST_METRIC, result[METRIC])
            self.say(trial, f"epoch {result['epoch']}/{self.planned(trial)}: {self.metric_label} "
                            f"{_fmt4(result[METRIC])} (best {_fmt4(best)})")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        reason = self.end_reason(trial)
        last = trial.last_result or {}
        epoch, planned = int(last.get("epoch", 0)), self.planned(trial)
        best = f"best {self.metric_label} {_fmt4(last.get(BEST_METRIC))}"
        if reason == "finished":
            self.say(trial, f"finished {epoch}/{planned} epochs ({best})")
        elif reason == "asha":
            compared = self.rung_best.get(trial.trial_id)
            if self.rung_label != self.metric_label and compared is not None:  # say what the rung compared
                best = f"{self.rung_label} so far {compared:.4f}, {best}"
            self.say(trial, f"stopped by ASHA after epoch {epoch}/{planned} ({best})")
        else:
            patience = self.trial_cfg(trial).training.patience
            self.say(trial, f"stopped early after epoch {epoch}/{planned}: no better {self.metric_label} "
                            f"in {patience} epoch(s) ({best})")
        self.record_end(trial, reason)
        self._cfgs.pop(trial.trial_id, None)
        self.rung_best.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        error = read_error(self.trial_dir(trial))
        self.say(trial, f"errored: {error or 'see the trial directory'} ({trial.storage.trial_dir_name})")
        self.record_end(trial, "error")
        self._cfgs.pop(trial.trial_id, None)
        self.rung_best.pop(trial.trial_id, None)

    # ------------------------------------------------------------ helpers

    def say(self, trial, message: str) -> None:
        if self.verbose >= EVENTS:
            print(f"{self.experiment} trial {trial.trial_id}: {message}", flush=True)

    def trial_dir(self, trial) -> str:
        return trial_dir_of(self.run_dir, trial.storage)

    def trial_cfg(self, trial):
        cfg = self._cfgs.get(trial.trial_id)
        if cfg is None:
            if self._base_cfg is None:
                self._base_cfg = trial_config(self.base, {})
            cfg = self._cfgs[trial.trial_id] = apply_params(self._base_cfg, dict(trial.config))
        return cfg

    def planned(self, trial) -> int:
        return int(self.trial_cfg(trial).training.epochs)

    def end_reason(self, trial) -> str:
        """How a trial that Tune completed (not errored) ended; an interrupted sweep completes none."""
        epochs = int((trial.last_result or {}).get("epoch", 0))
        return ended_reason(self.run_dir, self.experiment, trial.trial_id, epochs, self.planned(trial))

    def record_end(self, trial, reason: str) -> None:
        """The stop reason into the trial's TensorBoard run; a failure to write it never fails the sweep."""
        try:
            hparams = flat_hparams(train_dict(self.trial_cfg(trial)))
            write_end(storage.join(self.trial_dir(trial), TB_DIR), hparams, reason)
        except Exception as e:  # TensorBoard is a record of the result, not part of it
            print(f"sweep: could not record the end of trial {trial.trial_id} in TensorBoard: {e}",
                  file=sys.stderr)


def _fmt4(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"
