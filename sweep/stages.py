"""The stages of a sweep, each one Tune experiment under the run directory: the search (Optuna TPE
+ ASHA), the narrowed second stage, the multi-seed retrain of the best config, and the one test
evaluation of the best checkpoint. An experiment that exists already is continued (``Tuner.restore``),
so a resumed sweep re-enters each stage where it stopped and finished trials stay finished."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from plumbing import storage
from plumbing.cli import typed
from plumbing.jsonio import write_json
from raycluster.placement import TrialResources
from sweep.config import RAY_OUTPUT, retrain_seed_count, rung_metric, startup_trials, train_dict
from sweep.driver import DRIVER_RESOURCES, driver
from sweep.layout import RETRAIN, STAGE1, STAGE2, STAGE2_SPACE_FILE, STOPS_FILE, TIMINGS_FILE
from sweep.output import info, tune_output
from sweep.sharing import Shared
from sweep.space import (
    apply_params,
    combinations,
    describe,
    max_epochs,
    narrow,
    space_from_json,
    space_to_json,
    variant_key,
)
from sweep.summary import search_trials
from sweep.trials import analysis_of, best_checkpoint_of, best_trial, load_trials
from trainable.session import METRIC, MODE, TEST_METRICS


def searcher_for(cfg: DictConfig, run_dir: str, stage: str, dists, seed: int, n_startup: int):
    """The stage's searcher over its study in Optuna storage (``sweep.searcher``, ``sweep.storage``)."""
    from sweep.layout import STUDY_FILE
    from sweep.searcher import StudyLabels, check_new_study, fetch_mirror, make_searcher, storage_url
    from sweep.study import study_name

    url, name = storage_url(run_dir, cfg.sweep.storage, cfg.cache_dir), study_name(run_dir, stage)
    mirror = storage.join(run_dir, STUDY_FILE) if storage.is_uri(run_dir) and not cfg.sweep.storage else None
    fetch_mirror(url, mirror)  # a resumed sweep on a bucket whose stage had not started: its study comes down
    if cfg.resume is None and cfg.sweep.storage:
        check_new_study(url, name)
    from trainable.config import metric_name

    labels = StudyLabels(run_dir, stage, int(cfg.training.epochs), metric_name(cfg))
    searcher = make_searcher(dists, seed, n_startup, kind=cfg.sweep.searcher, url=url, name=name, mirror_to=mirror,
                             labels=labels)
    if cfg.sweep.warm_start and stage == STAGE1 and not searcher.study.trials:  # once, into a new study
        from sweep.warm_start import warm_start

        info(cfg, warm_start(searcher.study, cfg.sweep.warm_start, dists, cfg.sweep.top_k).describe(
            cfg.sweep.warm_start, cfg.sweep.top_k))
    return searcher


def scheduler_for(cfg: DictConfig, run_dir: str, stage: str, dists):
    from sweep.scheduler import make_scheduler  # Ray is imported after sweep.output.quiet_libraries

    return make_scheduler(cfg, run_dir, stage, max_epochs(cfg, dists), storage.join(run_dir, STOPS_FILE))


def update_timings(run_dir: str, keep: bool = False, **values: float) -> None:
    """timings.json's phases (``keep``: a phase's first time stands), for the benchmarks and the log."""
    path = storage.join(run_dir, TIMINGS_FILE)
    timings = json.loads(storage.read_text(path)) if storage.exists(path) else {}
    for k, v in values.items():
        if not (keep and k in timings):
            timings[k] = v
    write_json(path, timings)


def trainable_for(cfg: DictConfig, shared: Shared):
    """Each trial's driver: with ``sweep.in_process`` (one worker) it trains itself and holds the worker's
    resources, else it holds none and starts a Ray Train worker group (``sweep.driver``)."""
    from ray import tune

    setup = {"base": OmegaConf.to_container(cfg, resolve=True), "refs": shared.refs}
    per_worker = TrialResources.from_config(cfg).per_worker()
    resources = {**DRIVER_RESOURCES, **{k.lower(): v for k, v in per_worker.items()}} if cfg.sweep.in_process \
        else DRIVER_RESOURCES
    return tune.with_resources(tune.with_parameters(driver, setup=setup), resources)


def run_stage(cfg: DictConfig, run_dir: str, name: str, trainable, *, concurrency: int, num_samples: int = 1,
              searcher=None, scheduler=None, param_space: dict | None = None) -> None:
    """One Tune experiment under run_dir/name; continues it when it already exists (``searcher`` makes
    the searcher of a new one; a restored experiment brings its own back)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from sweep import tracking
    from sweep.progress import TrialEvents
    from trainable.config import metric_name

    exp = storage.join(run_dir, name)
    exp_path, fs = storage.for_ray(exp)
    if tune.Tuner.can_restore(exp_path, storage_filesystem=fs):  # its callbacks and verbosity come back
        print(f"sweep: resuming {exp}", flush=True)
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True,
                                   param_space=param_space, storage_filesystem=fs)
    else:
        events = TrialEvents(OmegaConf.to_container(cfg, resolve=True), run_dir, name, metric_name(cfg),
                             verbose=cfg.sweep.verbose, rung_label=rung_metric(cfg))
        tuner = tune.Tuner(
            trainable, param_space=param_space or {},
            tune_config=tune.TuneConfig(search_alg=searcher() if searcher else None, scheduler=scheduler,
                                        num_samples=num_samples, max_concurrent_trials=concurrency,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=storage.for_ray(run_dir)[0], storage_filesystem=fs,
                                      verbose=1 if cfg.sweep.verbose >= RAY_OUTPUT else 0,
                                      callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), events,
                                                 *tracking.callbacks(cfg, run_dir, name)],
                                      failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
                                      # an in-process trial's checkpoints (a Train run keeps its own)
                                      checkpoint_config=tune.CheckpointConfig(
                                          num_to_keep=1, checkpoint_score_attribute=METRIC,
                                          checkpoint_score_order=MODE)))
    with tune_output(cfg.sweep.verbose):
        tuner.fit()
    states = {trial_dir: t.status for trial_dir, t in analysis_of(exp)[0].items()}
    unfinished = [t for t, s in states.items() if s not in ("TERMINATED", "ERROR")]
    if unfinished or len(states) < num_samples:
        raise Interrupted(f"{name}: {len(unfinished)} trial(s) unfinished, {len(states)}/{num_samples} "
                          "started")


def trial_dirname(trial) -> str:
    """Short names that sort in creation order, numbered from 0 as Optuna numbers its trials (the
    params are in params.json and summary.json)."""
    index = str(getattr(trial, "experiment_tag", "") or "").split("_")[0]
    return f"trial_{int(index) - 1 if index.isdigit() else 0:04d}_{trial.trial_id}"


class Interrupted(Exception):
    """The sweep stopped before its trials did (Ctrl-C, SIGTERM); resume it."""


def search(cfg: DictConfig, run_dir: str, dists, trainable, concurrency: int) -> None:
    run_stage(cfg, run_dir, STAGE1, trainable, concurrency=concurrency, num_samples=cfg.sweep.num_samples,
              searcher=lambda: searcher_for(cfg, run_dir, STAGE1, dists, cfg.seed,
                                            startup_trials(cfg, combinations(dists))),
              scheduler=scheduler_for(cfg, run_dir, STAGE1, dists))


def second_stage(cfg: DictConfig, run_dir: str, dists, trainable, concurrency: int) -> None:
    """Narrow the space around stage 1's top-k configs and search it again (seed + 1)."""
    path = storage.join(run_dir, STAGE2_SPACE_FILE)
    if storage.exists(path):  # resumed: the narrowed space was fixed when stage 2 began
        narrowed = space_from_json(json.loads(storage.read_text(path)))
    else:
        records = [r for r in load_trials(str(run_dir), STAGE1, cfg) if r.best_metric is not None]
        top = sorted(records, key=lambda r: -r.best_metric)[: cfg.sweep.top_k]
        narrowed = narrow(dists, [r.params for r in top])
        write_json(path, space_to_json(narrowed))
    info(cfg, f"sweep: stage 2 space {describe(narrowed)}")
    n = cfg.sweep.stage2_samples
    run_stage(cfg, run_dir, STAGE2, trainable, concurrency=min(concurrency, n), num_samples=n,
              searcher=lambda: searcher_for(cfg, run_dir, STAGE2, narrowed, cfg.seed + 1,
                                            min(startup_trials(cfg, combinations(narrowed)), n)),
              scheduler=scheduler_for(cfg, run_dir, STAGE2, narrowed))


def retrain(cfg: DictConfig, run_dir: str, params: dict[str, Any], trainable, concurrency: int) -> None:
    """The best config again with fresh seeds, every run to the end (FIFO)."""
    from ray import tune

    seeds = [cfg.seed + i for i in range(1, retrain_seed_count(cfg) + 1)]
    space = {**{k: v for k, v in params.items() if k != "seed"}, "seed": tune.grid_search(seeds)}
    run_stage(cfg, run_dir, RETRAIN, trainable, concurrency=min(concurrency, len(seeds)),
              num_samples=1, param_space=space)


def final_test(cfg: DictConfig, run_dir: str, shared: Shared) -> dict[str, Any] | None:
    """The best checkpoint on the test split, once, in a task with a trial's worker resources."""
    import ray

    path = storage.join(run_dir, TEST_METRICS)
    if storage.exists(path):
        return json.loads(storage.read_text(path))
    best = best_trial(search_trials(str(run_dir), cfg))
    checkpoint = best_checkpoint_of(best) if best else None
    if checkpoint is None:
        info(cfg, "sweep: no checkpoint to test (no trial finished an epoch)")
        return None
    config = train_dict(apply_params(cfg, best.params))  # cfg is typed already: the trial's params over it
    req = TrialResources.from_config(cfg)
    task = ray.remote(_test_task).options(num_cpus=req.cpus_per_worker, num_gpus=req.gpus_per_worker)
    metrics = ray.get(task.remote(config, shared.refs[variant_key(best.params)], str(checkpoint)))
    metrics = {"trial_id": best.trial_id, "checkpoint": str(checkpoint), **metrics}
    write_json(path, metrics)
    return metrics


def _test_task(config: dict[str, Any], features, checkpoint: str) -> dict[str, Any]:
    from trainable.config import TrainConfig
    from trainable.inference import test_best

    cfg = typed(TrainConfig, config)
    with tempfile.TemporaryDirectory(prefix="sweep-test-") as tmp:
        local = Path(tmp) / "checkpoint"
        if storage.is_uri(checkpoint):  # on a bucket: the model is read from local files
            storage.download_dir(checkpoint, local)
        return test_best(cfg, features, local if storage.is_uri(checkpoint) else Path(checkpoint), Path(tmp))

