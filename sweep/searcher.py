"""The sweep's searcher: Optuna told what each trial keeps, its study in Optuna storage.

Ray's ``OptunaSearch`` tells Optuna a trial's *last* result and keys intermediate values by Tune's
``training_iteration``. A trial here keeps its best epoch (the checkpoint that improved last), and
a resumed or restarted trial counts Tune's iterations from 1 again, so this searcher (Tune's public
``Searcher`` interface over Optuna's ask-and-tell) tells Optuna the best-so-far metric
(``BEST_METRIC``, reported by the loop each epoch) as the trial's value and each epoch's metric at
step = epoch.

The study lives in Optuna storage: ``sqlite:///<out_dir>/study.db`` by default, or ``sweep.storage``.
``optuna.load_study`` then reads what TPE learned, ``optuna-dashboard`` shows it, and a resumed
sweep continues it. On an object-store run directory the SQLite file sits beside the driver (under
``cache_dir``) and is copied into the run directory whenever Tune saves the searcher's state.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sqlite3
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from ray.tune.search import Searcher

from plumbing import storage
from plumbing.errors import ConfigError
from sweep.config import SQLITE
from sweep.layout import STUDY_FILE
from sweep.study import TRIAL_ID_ATTR, quiet_study
from trainable.session import BEST_METRIC, METRIC, MODE

log = logging.getLogger(__name__)


def storage_url(run_dir: str, user_url: str | None, cache_dir: str) -> str:
    """The study's Optuna storage: the user's URL, or study.db in the run directory; for a run directory
    on object storage, a local mirror keyed by its URI (``sync_study`` copies it up and down)."""
    if user_url:
        return user_url
    if not storage.is_uri(run_dir):
        return SQLITE + str(Path(run_dir).resolve() / STUDY_FILE)
    return SQLITE + str(local_mirror(run_dir, cache_dir))


def local_mirror(run_dir: str, cache_dir: str) -> Path:
    key = hashlib.sha256(run_dir.encode()).hexdigest()[:16]
    return (Path(cache_dir) / "studies" / key / STUDY_FILE).resolve()


def sampler_for(kind: str, seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    """Seeded TPE (random for its first ``n_startup`` trials), or seeded random search."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)


@dataclass(frozen=True)
class StudyLabels:
    """What the searcher writes on each trial of its study for a reader (optuna-dashboard, the record):
    the stage, and when a trial ends its epochs and why it stopped (``sweep.trials.ended_reason``)."""

    run_dir: str
    stage: str
    planned_epochs: int  # the config's training.epochs; a searched training.epochs wins per trial
    metric: str = METRIC  # the value's name (training.metric): optuna-dashboard's axis, not "Objective 0"


class TrialSearch(Searcher):
    """Optuna's ask-and-tell over a study in storage: each Tune trial one Optuna trial (numbered in the
    order Tune asks, as the trial directories are), told its best metric and its epochs' metrics.

    Tune saves this searcher's state (the sampler with its random state, which trial is which) with
    its experiment state; ``restore`` reopens the study from storage, so a resumed stage proposes
    what the uninterrupted one would have, given the same results.
    """

    def __init__(self, dists: Mapping[str, BaseDistribution], sampler: optuna.samplers.BaseSampler,
                 url: str | None, name: str, mirror_to: str | None = None, labels: StudyLabels | None = None):
        super().__init__(metric=METRIC, mode=MODE)
        self.dists, self.sampler, self.url, self.name, self.mirror_to = dict(dists), sampler, url, name, mirror_to
        self.labels = labels
        self.trials: dict[str, int] = {}  # Tune trial id -> the Optuna trial's id in storage
        self.epochs: dict[str, int] = {}  # Tune trial id -> the last epoch it reported
        self.completed: set[str] = set()
        self.handles: dict[str, optuna.trial.Trial] = {}  # running trials' Trial objects: one costs a read
        self.study = self._open(load_if_exists=True)

    def _open(self, load_if_exists: bool) -> optuna.Study:
        if self.url and self.url.startswith(SQLITE):
            Path(self.url.removeprefix(SQLITE)).parent.mkdir(parents=True, exist_ok=True)  # a fresh mirror's
        db = study_storage(self.url) if self.url else None
        study = quiet_study(storage=db, sampler=self.sampler, study_name=self.name, load_if_exists=load_if_exists)
        if self.labels and study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([f"validation {self.labels.metric}"])
        return study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask(fixed_distributions=self.dists)
        trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        if self.labels:
            trial.set_user_attr("stage", self.labels.stage)
        self.trials[trial_id] = trial._trial_id  # noqa: SLF001 - the handle Optuna's own Trial takes
        self.handles[trial_id] = trial
        return dict(trial.params)

    def _handle(self, trial_id: str) -> optuna.trial.Trial:
        """The trial's Optuna ``Trial``, kept from ``ask`` (one built anew reads the study: after a restore)."""
        if trial_id not in self.handles:
            self.handles[trial_id] = optuna.trial.Trial(self.study, self.trials[trial_id])
        return self.handles[trial_id]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Each epoch's metric at step = epoch (a resumed trial may report an epoch again: kept once)."""
        if trial_id not in self.completed and trial_id in self.trials:
            self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict | None) -> None:
        if not result or result.get(METRIC) is None or "epoch" not in result:
            return
        trial = self._handle(trial_id)
        self.epochs[trial_id] = max(self.epochs.get(trial_id, 0), int(result["epoch"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step already reported": an epoch re-run after a resume
            try:
                trial.report(float(result[METRIC]), int(result["epoch"]))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # told before the sweep was stopped

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """The trial's value is the best metric it reached (its kept checkpoint's), not its last epoch's;
        a trial without one is FAIL (errored) or PRUNED (stopped before its first epoch ended)."""
        if trial_id in self.completed or trial_id not in self.trials:
            return
        self.completed.add(trial_id)
        self._report(trial_id, result)  # Tune hands the result that ends a trial here, not to on_trial_result
        value = (result or {}).get(BEST_METRIC, (result or {}).get(METRIC))
        trial = self._handle(trial_id)
        del self.handles[trial_id]  # an ended trial takes no more reports
        self._label_end(trial, trial_id, error)
        if value is None:
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
            value_args: dict[str, Any] = {"state": state}
        else:
            value_args = {"values": float(value)}
        try:
            self.study.tell(trial, **value_args)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as e:
            log.warning("searcher: trial %s not told (%s)", trial_id, e)

    def _label_end(self, trial: optuna.trial.Trial, trial_id: str, error: bool) -> None:
        """Epochs run, planned, and why it stopped, on the trial (a finished trial cannot take attributes)."""
        if not self.labels:
            return
        from sweep.trials import ended_reason

        epochs = self.epochs.get(trial_id, 0)
        planned = int(trial.params.get("training.epochs", self.labels.planned_epochs))
        reason = "error" if error else ended_reason(self.labels.run_dir, self.labels.stage, trial_id, epochs, planned)
        try:
            for key, value in (("epochs_run", epochs), ("planned_epochs", planned), ("stop_reason", reason)):
                trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told before the sweep was stopped, and labelled then

    def get_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "trials": self.trials, "completed": self.completed, "epochs": self.epochs}

    def set_state(self, state: dict[str, Any]) -> None:
        self.sampler, self.trials, self.completed = state["sampler"], state["trials"], state["completed"]
        self.epochs, self.handles = state.get("epochs", {}), {}
        fetch_mirror(self.url, self.mirror_to)  # the study saved with this state, maybe on another machine
        self.study = self._open(load_if_exists=True)
        close_orphans(self.study, set(self.trials.values()))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)
        if self.mirror_to and self.url:
            storage.write_bytes(self.mirror_to, Path(self.url.removeprefix(SQLITE)).read_bytes())

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def study_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``; a SQLite file without an fsync at each of its commits (a URL with
    query arguments is the user's to tune, and is opened as given)."""
    if not url.startswith(SQLITE) or "?" in url:
        return optuna.storages.RDBStorage(url)
    return optuna.storages.RDBStorage(url, engine_kwargs={"creator": UnsyncedSQLite(url.removeprefix(SQLITE))})


class UnsyncedSQLite:
    """Opens the study's SQLite file with ``synchronous=OFF``: every ask, epoch and tell is a commit,
    and an fsync each made them about a quarter of the searcher's time. The file then survives the driver's
    crash (the OS holds what was written), not the machine's, as Tune's experiment state beside it.
    A class, not a closure: Optuna's storage pickles its engine's arguments with the searcher."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA synchronous=OFF")
        return conn


def fetch_mirror(url: str | None, mirror_to: str | None) -> None:
    """Bring a bucket run directory's study.db down to the local SQLite file ``url`` names."""
    if url and mirror_to and storage.exists(mirror_to):
        local = Path(url.removeprefix(SQLITE))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(mirror_to))


def close_orphans(study: optuna.Study, known: set[int]) -> None:
    """Trials the study holds as RUNNING that the restored searcher never asked (the driver was killed
    after asking and before Tune saved its state) end as FAIL, so TPE does not count them as running."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t._trial_id not in known:  # noqa: SLF001
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def make_searcher(dists: Mapping[str, BaseDistribution], seed: int, n_startup: int, *, kind: str = "tpe",
                  url: str | None = None, name: str = "search", mirror_to: str | None = None,
                  labels: StudyLabels | None = None) -> TrialSearch:
    """The searcher of one stage: the same seed and the same results propose the same configs.

    ``url`` None keeps the study in memory (tests of the proposals alone)."""
    return TrialSearch(dists, sampler_for(kind, seed, n_startup), url, name, mirror_to, labels)


def check_new_study(url: str, name: str) -> None:
    """A new sweep must not continue another sweep's study of the same name in a shared database."""
    try:
        names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    except Exception as e:  # noqa: BLE001 - any storage failure is the user's URL
        raise ConfigError("sweep.storage", f"Optuna cannot open {url!r}: {e}") from None
    if name in names:
        raise ConfigError("sweep.storage", f"{url} already holds a study named {name!r}; resume that sweep "
                                           "(resume=RUN_DIR), give another out_dir, or another sweep.storage")
