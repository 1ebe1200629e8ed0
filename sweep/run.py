"""``python -m sweep.run``: an Optuna (TPE) + ASHA sweep over Ray Train trials, resumable.

The controller checks the whole config and space, connects to Ray, checks the cluster can hold
a trial, prepares and shares every feature variant once, then runs the search (and, when on, a
narrowed second stage, a multi-seed retrain of the best config and one test evaluation of the
best checkpoint). Each stage is a Tune experiment under the run directory, so an interrupted
sweep continues with ``resume=true``: finished trials stay finished.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from plumbing import storage
from plumbing.cli import CONFIG_FILE, parse_config, run_cli, save_config
from plumbing.errors import ConfigError
from plumbing.jsonio import write_json
from sweep.config import (
    EVENTS,
    RAY_OUTPUT,
    SweepConfig,
    leaf_diff,
    resolve_tracking_uri,
    retrain_seed_count,
    startup_trials,
    train_dict,
    two_stage_on,
    validate_sweep,
)
from sweep.driver import DRIVER_RESOURCES, driver, trial_config
from sweep.lock import hold_run_dir
from sweep.resources import TrialResources, cluster_plan, connect
from sweep.space import (
    METRIC,
    MODE,
    apply_params,
    check_space,
    describe,
    feature_variants,
    make_searcher,
    max_epochs,
    narrow,
    nested_space,
    resolve_space,
    space_from_json,
    space_to_json,
    to_distributions,
    variant_key,
)
from sweep.summary import SPACE_FILE, TEST_FILE, best_checkpoint_of, run_config, search_trials
from sweep.trials import RETRAIN, STAGE1, STAGE2, STOPS_FILE, best_trial, load_trials, tune_states

DESCRIPTION = """
Search hyper-parameters of one task (span | span_crf | pair) with Optuna's seeded TPE and ASHA
early stopping, each trial a Ray Train run. Defaults: the demo corpus, the tiny model and a
6-trial sweep that finishes in a few minutes on 2 CPU cores. The search space is
sweep/spaces/<task>.yaml, overridable key by key (sweep.space.training.lr.high=1e-2). Connects to
the cluster in RAY_ADDRESS, else starts a local Ray. Resume an interrupted sweep with resume=true
(its out_dir) or resume=RUN_DIR. Leaves in out_dir: config.yaml, summary.json, trials.parquet,
plots, best_checkpoint/ and the Tune experiments (tensorboard --logdir out_dir shows every trial).
Ctrl-C or SIGTERM stops a sweep with its state saved. One driver per run directory: a second one
exits at once (status 2) naming the first (the lock file out_dir/driver.lock). Prints one line per
trial event and the final leaderboard (sweep.verbose=0: the leaderboard only; 2: Ray's own output too).
"""
TIMINGS_FILE = "timings.json"
STAGE2_SPACE_FILE = "stage2_space.json"


# ---------------------------------------------------------------- config


def load_config(argv: list[str]):
    """The validated config (the saved one when resuming) and its search space."""
    return checked_config(parse_config(SweepConfig, argv, "sweep.run", DESCRIPTION))


def checked_config(cfg):
    """``load_config`` for an already parsed command line."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    elif storage.exists(storage.join(cfg.out_dir, STAGE1)):
        raise ConfigError("out_dir", f"{cfg.out_dir} already holds a sweep; continue it with resume=true, "
                                     "or give a new out_dir")
    absolute_paths(cfg)
    validate_sweep(cfg)
    space = resolve_space(cfg)
    dists = to_distributions(space, cfg)
    check_space(cfg, dists)
    cfg.sweep.space = nested_space(resolve_space(cfg, keep_removed=True))  # config.yaml: the space in force
    return cfg, dists


def absolute_paths(cfg) -> None:
    """Trials run in Ray's own working directories (and on other nodes): relative paths would
    point elsewhere there, so every path in the config is made absolute here, once."""
    cfg.out_dir = storage.absolute(cfg.out_dir)  # a URI (s3://bucket/prefix) stays as it is
    cfg.cache_dir = str(Path(cfg.cache_dir).expanduser().resolve())
    if cfg.data.dir:
        cfg.data.dir = str(Path(cfg.data.dir).expanduser().resolve())
    cfg.tracking.tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.out_dir)


def run_dir_of(cfg) -> str:
    """The run directory a command line names (resume=DIR, else out_dir), absolute: the cwd of the
    command, not of Ray's workers."""
    resume = cfg.resume and str(cfg.resume).lower() not in ("true", "yes", "1")
    given = str(cfg.resume if resume else cfg.out_dir)
    return storage.absolute(given)


def resumed_config(cfg):
    """The run's saved config; an override that contradicts it is an error, not a silent change."""
    run_dir = run_dir_of(cfg)
    saved = run_config(run_dir)
    overridden = set(leaf_diff(cfg, OmegaConf.structured(SweepConfig)))
    ignore = ("resume", "out_dir", "sweep.space.")
    given = cfg.copy()
    absolute_paths(given)  # the saved paths are absolute
    conflicts = {k: v for k, v in leaf_diff(given, saved).items()
                 if k in overridden and not k.startswith(ignore)}
    if cfg.sweep.space and resolve_space(cfg) != resolve_space(saved):
        conflicts["sweep.space"] = ("your overrides", "the saved space")
    if conflicts:
        key, (given, was) = next(iter(conflicts.items()))
        raise ConfigError(key, f"the sweep in {run_dir} was started with {was!r}, you gave {given!r}; "
                               "resume with the same settings (or none), or start a new out_dir")
    saved.resume = str(run_dir)
    saved.out_dir = str(run_dir)
    return saved


def info(cfg, message: str) -> None:
    """A line of the sweep's own progress, shown from sweep.verbose=1."""
    if cfg.sweep.verbose >= EVENTS:
        print(message, flush=True)


def quiet_ray(verbose: int) -> None:
    """Below sweep.verbose=2, Ray's own output stays in its session logs (/tmp/ray/session_*/logs).

    Environment knobs Ray reads when it is imported and initialized, so this runs before ``connect``:
    the workers' and raylets' lines are not forwarded to this process (``log_to_driver``); a local
    Ray gets token authentication by asking for it, as Ray does by default, minus the warning it
    prints then (a remote cluster's mode is the user's to set); Optuna says only warnings.
    """
    if verbose >= RAY_OUTPUT:
        return
    import optuna

    os.environ.setdefault("RAY_LOG_TO_DRIVER", "0")
    if os.environ.get("RAY_ADDRESS", "").strip() in ("", "local"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def tune_output(verbose: int) -> Iterator[None]:
    """The environment Tune reads in ``fit()``, set for that call only.

    TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1: no tensorboardX logger (a trial's TensorBoard run is the
    loop's own, ``<trial>/tb``); the CSV and JSON loggers the summary reads are passed explicitly.
    RAY_AIR_NEW_OUTPUT=0 below verbose 2: Tune's default reporter prints its experiment and status
    tables even at verbose=0, the classic one honours it.
    """
    values = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if verbose < RAY_OUTPUT:
        values["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------- features


@contextmanager
def quiet_bars(verbose: int) -> Iterator[None]:
    """Below sweep.verbose=2 the progress bars of building features (tokenizing, writing the tiny
    model's shards) stay off the console: the sweep says in one line what was prepared. They write to
    stderr; errors still reach the user as exceptions."""
    if verbose >= RAY_OUTPUT:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


@dataclass
class Shared:
    refs: dict[str, Any]
    prepare_s: float = 0.0
    put_s: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)


def share_features(cfg, variants: list[dict[str, Any]]) -> Shared:
    """Prepare each feature variant once (through data_prep's cache) and put it in the object store."""
    import ray

    from data_prep.pipeline import prepare_features

    shared = Shared(refs={})
    for variant in variants:
        started = time.perf_counter()
        try:
            with quiet_bars(cfg.sweep.verbose):
                fs = prepare_features(apply_params(cfg, variant), verbose=False)
        except ConfigError as e:
            if not e.key.startswith("features.") or not variant:
                raise
            shown = ", ".join(f"{k}={v}" for k, v in variant.items())
            raise ConfigError(f"sweep.space.{e.key}", f"the space can propose {shown}, which fails: {e}. "
                                                      "Narrow the space so every value works") from None
        shared.prepare_s += time.perf_counter() - started
        started = time.perf_counter()
        name = variant_key(variant)
        shared.refs[name] = ray.put(fs)
        shared.put_s += time.perf_counter() - started
        shared.sizes[name] = sum(t.nbytes for t in fs.features.values())
    return shared


# ---------------------------------------------------------------- Tune pieces


def _recording_asha():
    """ASHA that appends each of its stop decisions to the run dir, so summaries can say "asha"."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self, log_path: str, experiment: str, **kwargs):
            super().__init__(**kwargs)
            self.log_path, self.experiment = log_path, experiment

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP:
                entry = {"experiment": self.experiment, "trial_id": trial.trial_id,
                         "epoch": result.get("epoch")}
                before = storage.read_text(self.log_path) if storage.exists(self.log_path) else ""
                storage.write_text(self.log_path, before + json.dumps(entry) + "\n")  # an object store appends so
            return action

    return RecordingASHA


def make_scheduler(cfg, run_dir: str, experiment: str, max_t: int):
    from ray.tune.schedulers import FIFOScheduler

    if cfg.sweep.scheduler == "fifo":
        return FIFOScheduler()
    return _recording_asha()(storage.join(run_dir, STOPS_FILE), experiment, time_attr="epoch", metric=METRIC,
                             mode=MODE, max_t=max_t, grace_period=cfg.sweep.grace_period,
                             reduction_factor=cfg.sweep.reduction_factor)


def _first_result_callback(run_dir: str):
    from ray.tune import Callback

    class FirstResult(Callback):
        """Records when the first trial result arrived (for the benchmark and the log)."""

        seen = False

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not self.seen:
                self.seen = True
                update_timings(run_dir, first_result_at=time.time(), keep=True)

    return FirstResult()


def update_timings(run_dir: str, keep: bool = False, **values: float) -> None:
    path = storage.join(run_dir, TIMINGS_FILE)
    timings = json.loads(storage.read_text(path)) if storage.exists(path) else {}
    for k, v in values.items():
        if not (keep and k in timings):
            timings[k] = v
    write_json(path, timings)


def trainable_for(cfg, shared: Shared):
    from ray import tune

    req = TrialResources.from_config(cfg)
    setup = {"base": OmegaConf.to_container(cfg, resolve=True), "refs": shared.refs,
             "resources": {"workers": req.workers, "gpus_per_worker": req.gpus_per_worker,
                           "per_worker": req.per_worker()}}
    return tune.with_resources(tune.with_parameters(driver, setup=setup), DRIVER_RESOURCES)


def run_stage(cfg, run_dir: str, name: str, trainable, *, concurrency: int, num_samples: int = 1,
              searcher=None, scheduler=None, param_space: dict | None = None) -> None:
    """One Tune experiment under run_dir/name; continues it when it already exists."""
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
                             verbose=cfg.sweep.verbose)
        tuner = tune.Tuner(
            trainable, param_space=param_space or {},
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=concurrency,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=storage.for_ray(run_dir)[0], storage_filesystem=fs,
                                      verbose=1 if cfg.sweep.verbose >= RAY_OUTPUT else 0,
                                      callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), events,
                                                 _first_result_callback(run_dir),
                                                 *tracking.callbacks(cfg, run_dir, name)],
                                      failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures)))
    with tune_output(cfg.sweep.verbose):
        tuner.fit()
    states = tune_states(str(exp))
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


class StopSignals:
    """SIGTERM takes the path of SIGINT (Ctrl-C), remembering which signal came.

    ``timeout``, systemd, Kubernetes and ``ray job stop`` send SIGTERM. During ``Tuner.fit()`` Tune's
    own SIGINT handler stops the experiment and saves its state (fit then returns, and run_stage
    raises Interrupted); outside it the SIGINT handler raises KeyboardInterrupt. So the SIGTERM
    handler calls whichever SIGINT handler is in force. It must be installed after ``ray.init``,
    which replaces the SIGTERM handler with its own (exit at once, no state saved).
    """

    def __init__(self):
        self.received: int | None = None
        self.previous = None

    def __enter__(self) -> StopSignals:
        self.previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self.previous)

    def on_sigterm(self, signum, frame) -> None:
        self.received = signum
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIGINT ignored (a background job of a script) or default
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    def exit_status(self) -> int:
        """128 + the signal, as a shell reports it: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.received or signal.SIGINT)


# ---------------------------------------------------------------- stages


def search(cfg, run_dir: str, dists, trainable, concurrency: int) -> None:
    run_stage(cfg, run_dir, STAGE1, trainable, concurrency=concurrency, num_samples=cfg.sweep.num_samples,
              searcher=make_searcher(dists, cfg.seed, startup_trials(cfg)),
              scheduler=make_scheduler(cfg, run_dir, STAGE1, max_epochs(cfg, dists)))


def second_stage(cfg, run_dir: str, dists, trainable, concurrency: int) -> None:
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
              searcher=make_searcher(narrowed, cfg.seed + 1, min(startup_trials(cfg), n)),
              scheduler=make_scheduler(cfg, run_dir, STAGE2, max_epochs(cfg, narrowed)))


def retrain(cfg, run_dir: str, params: dict[str, Any], trainable, concurrency: int) -> None:
    """The best config again with fresh seeds, every run to the end (FIFO)."""
    from ray import tune

    seeds = [cfg.seed + i for i in range(1, retrain_seed_count(cfg) + 1)]
    space = {**{k: v for k, v in params.items() if k != "seed"}, "seed": tune.grid_search(seeds)}
    run_stage(cfg, run_dir, RETRAIN, trainable, concurrency=min(concurrency, len(seeds)),
              num_samples=1, param_space=space)


def final_test(cfg, run_dir: str, shared: Shared) -> dict[str, Any] | None:
    """The best checkpoint on the test split, once, in a task with a trial's worker resources."""
    import ray

    path = storage.join(run_dir, TEST_FILE)
    if storage.exists(path):
        return json.loads(storage.read_text(path))
    best = best_trial(search_trials(str(run_dir), cfg))
    checkpoint = best_checkpoint_of(best) if best else None
    if checkpoint is None:
        info(cfg, "sweep: no checkpoint to test (no trial finished an epoch)")
        return None
    config = train_dict(trial_config(OmegaConf.to_container(cfg, resolve=True), best.params))
    req = TrialResources.from_config(cfg)
    task = ray.remote(_test_task).options(num_cpus=req.cpus_per_worker, num_gpus=req.gpus_per_worker)
    metrics = ray.get(task.remote(config, shared.refs[variant_key(best.params)], str(checkpoint)))
    metrics = {"trial_id": best.trial_id, "checkpoint": str(checkpoint), **metrics}
    write_json(path, metrics)
    return metrics


def _test_task(config: dict[str, Any], fs, checkpoint: str) -> dict[str, Any]:
    from trainable.config import TrainConfig
    from trainable.single import test_best

    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), config)
    with tempfile.TemporaryDirectory(prefix="sweep-test-") as tmp:
        local = Path(tmp) / "checkpoint"
        if storage.is_uri(checkpoint):  # on a bucket: the model is read from local files
            storage.download_dir(checkpoint, local)
        return test_best(cfg, fs, local if storage.is_uri(checkpoint) else Path(checkpoint), Path(tmp))


# ---------------------------------------------------------------- main


@dataclass
class Prepared:
    run_dir: str
    concurrency: int
    shared: Shared


def prepare_run(cfg, dists) -> Prepared:
    """Connect, check the cluster can hold a trial, save the config, share every feature variant."""
    started = time.time()
    run_dir = cfg.out_dir = storage.absolute(cfg.out_dir)
    address = connect()
    concurrency, cluster = cluster_plan(cfg, cfg.sweep.num_samples)
    info(cfg, f"sweep: Ray at {address}; {cluster}; trial = {TrialResources.from_config(cfg).describe()}; "
              f"{concurrency} trial(s) at once")
    save_config(cfg, run_dir)
    write_json(storage.join(run_dir, SPACE_FILE), space_to_json(dists))
    update_timings(run_dir, keep=True, started_at=started)
    variants = feature_variants(dists)
    shared = share_features(cfg, variants)
    update_timings(run_dir, prepare_s=shared.prepare_s, put_s=shared.put_s, variants=len(variants),
                   feature_bytes=sum(shared.sizes.values()), features_ready_at=time.time())
    info(cfg, f"sweep: {len(variants)} feature variant(s) prepared in {shared.prepare_s:.1f} s, "
              f"shared in {shared.put_s:.2f} s")
    return Prepared(run_dir, concurrency, shared)


def execute(cfg, dists, prepared: Prepared) -> dict[str, Any]:
    """Search (and the extras that are on), then the summary; returns it."""
    from sweep.report import refresh
    from sweep.tracking import record_best

    run_dir, concurrency = prepared.run_dir, prepared.concurrency
    trainable = trainable_for(cfg, prepared.shared)
    search(cfg, run_dir, dists, trainable, concurrency)
    if two_stage_on(cfg):
        second_stage(cfg, run_dir, dists, trainable, concurrency)
    summary = refresh(run_dir)
    if retrain_seed_count(cfg) and summary["best"]:
        retrain(cfg, run_dir, summary["best"]["params"], trainable, concurrency)
    if cfg.sweep.final_test:
        final_test(cfg, run_dir, prepared.shared)
    update_timings(run_dir, finished_at=time.time())
    summary = refresh(run_dir)
    record_best(cfg, summary)
    return summary


def run(cfg, dists) -> dict[str, Any]:
    """The whole sweep for a validated config; returns the summary."""
    return execute(cfg, dists, prepare_run(cfg, dists))


def main(argv: list[str]) -> None:
    from sweep.summary import leaderboard

    cfg = parse_config(SweepConfig, argv, "sweep.run", DESCRIPTION)
    hold_run_dir(run_dir_of(cfg), create=not cfg.resume)  # one driver per run dir, before anything reads it
    cfg, dists = checked_config(cfg)
    quiet_ray(cfg.sweep.verbose)  # before Ray is imported
    connect()
    from sweep.reaper import guard_local_ray
    guard_local_ray()  # a local Ray started here ends with this process, even after kill -9
    with StopSignals() as stop:
        try:
            summary = run(cfg, dists)
        except Interrupted as e:
            from sweep.report import refresh

            refresh(cfg.out_dir)
            print(f"sweep interrupted ({e}); state saved. Continue it with: python -m sweep.run "
                  f"resume={cfg.out_dir}", file=sys.stderr)
            raise SystemExit(stop.exit_status()) from None
        except KeyboardInterrupt:  # outside a Tune experiment, or a second signal during one
            resumable = storage.exists(storage.join(cfg.out_dir, CONFIG_FILE))
            hint = (f"continue it with: python -m sweep.run resume={cfg.out_dir}" if resumable
                    else "nothing was saved yet; start it again")
            print(f"sweep interrupted; {hint}", file=sys.stderr)
            raise SystemExit(stop.exit_status()) from None
    print(leaderboard(summary))
    print(f"sweep: outputs in {cfg.out_dir} (tensorboard --logdir {cfg.out_dir})")
    if summary.get("best") is None:
        errors = [t["error"] for t in summary.get("trials", []) if t.get("error")]
        first = errors[0].strip().splitlines()[-1] if errors else "no trial reported a result"
        print(f"error: no trial finished an epoch ({len(errors)} errored); the first error: {first}",
              file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    run_cli(main)
