"""Optional MLflow tracking of a sweep (``tracking.mlflow=true``): one MLflow run per trial.

A Tune callback in the sweep's controller process does the logging (trials never talk to MLflow,
so a sqlite file on the controller's disk works for a cluster too): at a trial's start its
searched params and its resolved config (``config.yaml`` artifact), at each epoch every numeric
value of the result (step = epoch, which survives retries and resumes, unlike
``training_iteration``), at its end FINISHED or FAILED; after the search the best trial's run
gets the best checkpoint path (tag ``best_checkpoint``) and the test metrics. MLflow's own client
is used rather than Ray's ``MLflowLoggerCallback`` because that one fails the sweep when the store
does, steps by ``training_iteration``, and opens a second run for a trial after a resume.

Tracking is a convenience, never a reason to fail a sweep: when mlflow is missing or the store
cannot be opened or written, one warning says what failed and how to fix it, and the sweep goes
on untracked.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from ray.tune.logger import LoggerCallback

from sweep.config import SQLITE
from sweep.layout import ARTIFACT_DIR

log = logging.getLogger(__name__)

CONFIG_ARTIFACT = "config.yaml"
TAG_RUN_DIR, TAG_STAGE, TAG_TRIAL = "sweep.run_dir", "sweep.stage", "sweep.trial_id"
TAG_BEST, TAG_BEST_CHECKPOINT = "sweep.best", "best_checkpoint"
# Tune's bookkeeping, not a measurement of the trial (epoch is the step).
NOT_METRICS = frozenset({"epoch", "timestamp", "pid", "done", "training_iteration", "iterations_since_restore",
                         "time_since_restore", "timesteps_since_restore"})
_warned: set[str] = set()  # stores already warned about: one warning per sweep, not per stage or trial


def experiment_name(cfg: DictConfig) -> str:
    return cfg.tracking.experiment or Path(cfg.out_dir).name


def warn_once(uri: str, problem: str, fix: str) -> None:
    if uri in _warned:
        return
    _warned.add(uri)
    log.warning("sweep: MLflow tracking is off: %s. %s. The sweep goes on without tracking.", problem, fix)


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database file (MLflow would use the cwd's ./mlruns)."""
    if uri.startswith(SQLITE) and uri != SQLITE + ":memory:":
        return str(Path(uri[len(SQLITE):]).parent / ARTIFACT_DIR)
    return None


def open_store(uri: str, experiment: str) -> tuple[Any, str] | None:
    """(MlflowClient, experiment id), creating the experiment if needed; None (warned) if unusable."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        warn_once(uri, f"mlflow cannot be imported ({e})", "Install it with pip install '.[mlflow]'")
        return None
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return client, client.create_experiment(experiment, artifact_location=_artifact_root(uri))
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return client, exp.experiment_id
    except Exception as e:  # any store failure (path, scheme, server, schema) means: no tracking
        warn_once(uri, f"the store {uri} cannot be opened ({type(e).__name__}: {e})",
                  "Give a writable tracking.tracking_uri (e.g. sqlite:///mlflow.db, kept in out_dir)")
        return None


def stage_runs(client: Any, experiment_id: str, run_dir: str, stage: str) -> dict[str, str]:
    """trial_id -> run id of the runs this sweep's stage already has (a resumed sweep reuses them)."""
    out: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_STAGE}` = '{stage}'",
                                  max_results=1000, page_token=token)
        for run in page:
            if run.data.tags.get(TAG_RUN_DIR) == run_dir:
                out.setdefault(run.data.tags[TAG_TRIAL], run.info.run_id)
        token = page.token
        if not token:
            return out


def metrics_of(result: dict[str, Any], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in result.items()
            if k not in NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)]


class MlflowCallback(LoggerCallback):
    """Logs one Tune experiment (a stage of the sweep) to MLflow; pickled into Tune's state for resume."""

    def __init__(self, uri: str, experiment: str, run_dir: str, stage: str, base: dict[str, Any]):
        self.uri, self.experiment, self.run_dir, self.stage, self.base = uri, experiment, run_dir, stage, base
        self._store: tuple[Any, str] | None = None
        self._runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_runs": {}}  # the client is reopened by setup()

    def setup(self, *args, **kwargs) -> None:
        self._store = open_store(self.uri, self.experiment)
        self._runs = self._guard(stage_runs, self.run_dir, self.stage) or {}

    def _guard(self, fn, *args):
        """Call fn(client, experiment_id, *args); the first failure warns and turns tracking off."""
        if self._store is None:
            return None
        try:
            return fn(*self._store, *args)
        except Exception as e:
            self._store = None
            warn_once(self.uri, f"writing to {self.uri} failed ({type(e).__name__}: {e})",
                      "Check the store is writable and reachable (tracking.tracking_uri)")
            return None

    def log_trial_start(self, trial) -> None:
        self._guard(self._start, trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            step = int(result.get("epoch") or result.get("training_iteration") or 0)
            self._guard(lambda client, _: client.log_batch(run_id, metrics=metrics_of(result, step)))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            status = "FAILED" if failed else "FINISHED"
            self._guard(lambda client, _: client.set_terminated(run_id, status))

    def _start(self, client, experiment_id: str, trial) -> None:
        from mlflow.entities import Param

        from sweep.driver import trial_config

        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:  # resumed, or restarted by Tune
            client.update_run(run_id, status="RUNNING")
            return
        tags = {TAG_RUN_DIR: self.run_dir, TAG_STAGE: self.stage, TAG_TRIAL: trial.trial_id,
                "task": str(self.base.get("task")), "model": str(self.base.get("model", {}).get("name"))}
        run = client.create_run(experiment_id, run_name=f"{self.stage}_{trial.trial_id}", tags=tags)
        run_id = self._runs[trial.trial_id] = run.info.run_id
        params = dict(trial.config)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        resolved = OmegaConf.to_yaml(trial_config(self.base, params))
        client.log_text(run_id, resolved, CONFIG_ARTIFACT)


def callbacks(cfg: DictConfig, run_dir: Path, stage: str) -> list[MlflowCallback]:
    """The tracking callbacks of one stage: none unless tracking.mlflow is on."""
    if not cfg.tracking.mlflow:
        return []
    base = OmegaConf.to_container(cfg, resolve=True)
    return [MlflowCallback(cfg.tracking.tracking_uri, experiment_name(cfg), str(run_dir), stage, base)]


def record_best(cfg: DictConfig, summary: dict[str, Any]) -> None:
    """Mark the best trial's run: its best checkpoint's path and, when run, the test-split metrics."""
    best = summary.get("best")
    if not cfg.tracking.mlflow or not best:
        return
    uri = cfg.tracking.tracking_uri
    store = open_store(uri, experiment_name(cfg))
    if store is None:
        return
    client, experiment_id = store
    try:
        run_id = stage_runs(client, experiment_id, str(cfg.out_dir), best["experiment"]).get(best["trial_id"])
        if run_id is None:
            warn_once(uri, f"the best trial {best['trial_id']} has no run in {uri}",
                      "Its runs were logged elsewhere, or the store was replaced during the sweep")
            return
        client.set_tag(run_id, TAG_BEST, "true")
        if best.get("checkpoint"):
            client.set_tag(run_id, TAG_BEST_CHECKPOINT, best["checkpoint"])
        test = {f"test_{k}": v for k, v in (summary.get("test") or {}).items()}
        if test:
            client.log_batch(run_id, metrics=metrics_of(test, int(best.get("epoch") or 0)))
    except Exception as e:
        warn_once(uri, f"writing to {uri} failed ({type(e).__name__}: {e})",
                  "Check the store is writable and reachable (tracking.tracking_uri)")
