"""One trial: a Tune function trainable that builds and fits a Ray Train ``TorchTrainer``.

Tune cannot tune a V2 ``TorchTrainer`` directly; this driver (0 CPUs, so it never takes a worker's
slot) runs one inside the trial, with its Train run stored in the trial's own directory. Rank 0's
reports reach Tune through ``TuneReportCallback``; ``FailureConfig`` restarts a failed worker
group from the trial's last checkpoint; a driver restarted by ``Tuner.restore`` finds the same
Train run (same name and storage path) and resumes it.

Losing a node: workers on it fail their group, which Ray Train restarts on the nodes left. The
driver and its Train controller (Ray puts the controller on the driver's node) may be on it too;
then Tune restarts the driver (``tune.FailureConfig(max_failures=sweep.max_failures)`` in
``sweep.run``), and the new one resumes the same Train run from its last checkpoint. Tune retries
whatever ended a trial, but those retries are meant for a driver that *died*: one that raised has
had Ray Train's retries already, or met an error that repeats (a user error, a worker group the
cluster cannot hold), so a retried driver re-raises that at once (``repeat_failure``). While
``fit()`` runs, the driver errors the trial once the alive nodes cannot hold its worker group for
``sweep.unplaceable_timeout_s`` (``raycluster.placement.PlacementWatch``): Ray Train would wait forever.

With ``sweep.in_process`` (one worker, the default on a local Ray) the driver holds the worker's
resources and runs the loop itself (``train_here``), reporting straight to Tune: no controller,
placement group or worker process to start, about 8 s less per trial on 2 CPU cores.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from omegaconf import DictConfig

from plumbing import storage
from plumbing.cli import typed
from plumbing.errors import UserError
from plumbing.jsonio import write_json
from raycluster.placement import PlacementWatch, TrialResources, UnplaceableTrialError
from sweep.config import RAY_OUTPUT, SweepConfig, train_dict
from sweep.layout import DONE_FILE, FAILURE_FILE, PARAMS_FILE, TRAIN_RUN_NAME
from sweep.space import apply_params, variant_key
from trainable.session import METRIC, MODE

DRIVER_RESOURCES = {"cpu": 0, "memory": 1}  # {"cpu": 0} alone is rejected by Tune (Ray 2.60)
WATCH_S = 5.0  # how often a driver checks that the alive nodes can hold its worker group


def trial_config(base: dict[str, Any], params: dict[str, Any]):
    """The typed config of one trial: the sweep's resolved config with the trial's params applied."""
    return apply_params(typed(SweepConfig, base), params)


def loop_config(cfg: DictConfig, trial_dir: str) -> dict[str, Any]:
    """What ``trainable.loop.train_loop`` takes: the trial's TrainConfig as a dict, in the trial's directory."""
    return {**train_dict(cfg), "out_dir": trial_dir}


def train_run_config(trial_dir: str, max_failures: int, verbose: int = 1):
    """Ray Train's own INFO lines (each report's metrics, state transitions, worker start) only at
    ``sweep.verbose=2``; the sweep prints one line per trial event instead."""
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback

    storage_path, filesystem = storage.for_ray(trial_dir)  # a bucket's with bounded timeouts
    return ray.train.RunConfig(
        name=TRAIN_RUN_NAME,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        callbacks=[TuneReportCallback()],
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE),
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        logging_config=ray.train.LoggingConfig(log_level="INFO" if verbose >= RAY_OUTPUT else "WARNING"),
    )


def trial_dir_of(run_dir: str, trial_storage: Any) -> str:
    """Where a trial lives, from the run directory (a path or a URI) and Tune's storage context of
    the trial (whose ``trial_fs_path`` on a bucket is a path without its ``s3://``)."""
    return storage.join(run_dir, trial_storage.experiment_dir_name, trial_storage.trial_dir_name)


def driver(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """``config``: the trial's params (dotted keys); ``setup``: the sweep's config and feature refs.

    ``setup["refs"]`` maps feature-variant names to ObjectRefs (inside a dict, so Tune never
    resolves them); ``build_trainer`` hands the chosen one to the workers wrapped again.
    """
    from ray import tune

    from trainable.ray_train import USER_ERROR_FILE, build_trainer, raise_user_error

    params = dict(config)
    cfg = trial_config(setup["base"], params)
    trial_dir = trial_dir_of(cfg.out_dir, tune.get_context().get_storage())
    done = storage.join(trial_dir, DONE_FILE)
    write_json(storage.join(trial_dir, PARAMS_FILE), params)
    if storage.exists(done):  # finished before the sweep was killed: report it again, train nothing
        tune.report(json.loads(storage.read_text(done)))
        return
    failure = storage.join(trial_dir, FAILURE_FILE)
    repeat_failure(failure)
    if cfg.sweep.in_process:
        write_json(done, train_here(cfg, trial_dir, setup["refs"][variant_key(params)], failure))
        return
    req = TrialResources.from_config(cfg)
    trainer = build_trainer(
        loop_config(cfg, trial_dir), setup["refs"][variant_key(params)],
        num_workers=req.workers, use_gpu=req.gpus_per_worker > 0, resources_per_worker=req.per_worker(),
        run_config=train_run_config(trial_dir, int(cfg.sweep.max_failures), int(cfg.sweep.verbose)))
    storage.delete_file(storage.join(trial_dir, USER_ERROR_FILE))  # from an earlier attempt of this trial
    try:
        result = fit_watched(trainer, PlacementWatch(req, float(cfg.sweep.unplaceable_timeout_s)))
        raise_user_error(trial_dir)  # the trial errors at once: retrying would repeat it
    except Exception as e:
        record_failure(failure, e)
        raise
    final = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float | str | bool)}
    write_json(done, final)


def train_here(cfg: DictConfig, trial_dir: str, features_ref: Any, failure: str) -> dict[str, Any]:
    """The loop in this process, reporting to Tune (``TuneSession``): no Train controller, placement group
    or worker process to start, so the trial's first epoch begins seconds sooner. Tune's retries
    (``tune.FailureConfig``) stand in for Ray Train's and resume from Tune's latest checkpoint; only a
    user error is remembered so that a retry raises it again at once. (The sweep's ``resume`` is its run dir;
    a trial resumes from Tune's checkpoint.) Returns the last epoch's report."""
    import ray

    from trainable.loop import train_loop
    from trainable.session import TuneSession

    session = TuneSession(trial_dir)
    try:
        train_loop(loop_config(cfg, trial_dir), session=session, features=ray.get(features_ref))
    except UserError as e:
        record_failure(failure, e)
        raise
    return session.last


def fit_watched(trainer, watch: PlacementWatch, every_s: float = WATCH_S):
    """``trainer.fit()``, in a thread while ``watch`` checks the cluster can still hold the workers.

    When the watch raises, the driver's trial errors and Tune ends the driver's process; the Train
    controller it owns, that controller's workers and placement group go with it.
    """
    out: dict[str, Any] = {}

    def fit() -> None:
        try:
            out["result"] = trainer.fit()
        except BaseException as e:  # handed to the driver's thread below
            out["error"] = e

    thread = threading.Thread(target=fit, name="train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every_s)
        if thread.is_alive():
            watch.check()
    if "error" in out:
        raise out["error"]
    return out["result"]


def sweep_id() -> str:
    """This sweep on this cluster: the Ray session and the job (the ``sweep.run`` process)."""
    import ray

    context = ray.get_runtime_context()
    return f"{context.get_session_name()}/{context.get_job_id()}"


def record_failure(path: str, error: Exception) -> None:
    """Remember what the driver raised, unless its Train controller died (a system failure, which
    Tune's retry of the driver may get past)."""
    from ray.exceptions import RayActorError

    if not isinstance(error, RayActorError):
        write_json(path, {"sweep": sweep_id(), "type": type(error).__name__,
                          "user_error": isinstance(error, UserError), "error": str(error)})


def repeat_failure(path: str) -> None:
    """Raise again what this trial's driver raised earlier in this sweep (a Tune retry of a driver that
    raised); a resumed sweep (another job) trains again, since the user may have fixed the cause."""
    if not storage.exists(path):
        return
    earlier = json.loads(storage.read_text(path))
    if earlier.get("sweep") != sweep_id():
        storage.delete_file(path)
        return
    message = f"{earlier['error']} (raised by this trial's driver before Tune retried it; not retried)"
    if earlier["type"] == UnplaceableTrialError.__name__:
        raise UnplaceableTrialError(message)
    if earlier.get("user_error"):
        raise UserError(message)
    raise RuntimeError(f"{earlier['type']}: {message}")
