"""One trial: a Tune function trainable that builds and fits a Ray Train ``TorchTrainer``.

Tune cannot tune a V2 ``TorchTrainer`` directly; this driver (0 CPUs, so it never takes a worker's
slot) runs one inside the trial, with its Train run stored in the trial's own directory. Rank 0's
reports reach Tune through ``TuneReportCallback``; ``FailureConfig`` restarts a failed worker
group from the trial's last checkpoint; a driver restarted by ``Tuner.restore`` finds the same
Train run (same name and storage path) and resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sweep.config import RAY_OUTPUT, SweepConfig, train_dict
from sweep.space import apply_params, variant_key
from sweep.summary import DONE_FILE, METRIC, PARAMS_FILE

DRIVER_RESOURCES = {"cpu": 0, "memory": 1}  # {"cpu": 0} alone is rejected by Tune; see RAY-NOTES
TRAIN_RUN_NAME = "train"
TB_DIR = "tb"


def trial_config(base: dict[str, Any], params: dict[str, Any]):
    """The typed config of one trial: the sweep's resolved config with the trial's params applied."""
    return apply_params(OmegaConf.merge(OmegaConf.structured(SweepConfig), base), params)


def loop_config(cfg, trial_dir: str) -> dict[str, Any]:
    """What ``trainable.loop.train_loop`` takes: the TrainConfig dict plus where TensorBoard goes."""
    return {**train_dict(cfg), "out_dir": trial_dir, "tb_dir": str(Path(trial_dir) / TB_DIR)}


def train_run_config(trial_dir: str, max_failures: int, verbose: int = 1):
    """Ray Train's own INFO lines (each report's metrics, state transitions, worker start) only at
    ``sweep.verbose=2``; the sweep prints one line per trial event instead."""
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback

    return ray.train.RunConfig(
        name=TRAIN_RUN_NAME,
        storage_path=trial_dir,
        callbacks=[TuneReportCallback()],
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"),
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        logging_config=ray.train.LoggingConfig(log_level="INFO" if verbose >= RAY_OUTPUT else "WARNING"),
    )


def driver(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """``config``: the trial's params (dotted keys); ``setup``: base config, feature refs, resources.

    ``setup["refs"]`` maps feature-variant names to ObjectRefs (inside a dict, so Tune never
    resolves them); ``build_trainer`` hands the chosen one to the workers wrapped again.
    """
    from ray import tune

    from trainable.ray_train import USER_ERROR_FILE, build_trainer, raise_user_error

    params = dict(config)
    cfg = trial_config(setup["base"], params)
    trial_dir = tune.get_context().get_storage().trial_fs_path
    done = Path(trial_dir) / DONE_FILE
    Path(trial_dir).mkdir(parents=True, exist_ok=True)
    (Path(trial_dir) / PARAMS_FILE).write_text(json.dumps(params))
    if done.is_file():  # finished before the sweep was killed: report it again, train nothing
        tune.report(json.loads(done.read_text()))
        return
    res = setup["resources"]
    trainer = build_trainer(
        loop_config(cfg, trial_dir), setup["refs"][variant_key(params)],
        num_workers=res["workers"], use_gpu=res["gpus_per_worker"] > 0,
        resources_per_worker=res["per_worker"],
        run_config=train_run_config(trial_dir, int(cfg.sweep.max_failures), int(cfg.sweep.verbose)))
    (Path(trial_dir) / USER_ERROR_FILE).unlink(missing_ok=True)  # from an earlier attempt of this trial
    result = trainer.fit()
    raise_user_error(trial_dir)  # the trial errors at once: retrying would repeat it
    final = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float | str | bool)}
    done.write_text(json.dumps(final))
