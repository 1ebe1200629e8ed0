"""Typed config of a sweep: a training config plus the search, its budget and its resources.

``SweepConfig`` extends ``TrainConfig`` so one ``config.yaml`` names the data, features, model,
the training defaults every trial starts from, and the sweep around them. Defaults give a sweep
on the demo corpus with the tiny model that finishes in about 4 to 8 minutes on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from data_prep.config import DataConfig, FeaturesConfig, doc
from plumbing.errors import ConfigError
from trainable.config import TrainConfig, TrainingConfig, at_least, check_metric_name, metric_name, validate_train

SCHEDULERS = ("asha", "fifo")
RUNG_METRIC = {"pair": "roc_auc"}  # threshold-free: see SweepSection.rung_metric
SEARCHERS = ("tpe", "random")
REAL_DATASETS = ("redsm5", "squad_v2")
DEFAULT_RETRAIN_SEEDS = 3
SQLITE = "sqlite:///"
QUIET, EVENTS, RAY_OUTPUT = 0, 1, 2  # sweep.verbose: the leaderboard; + a line per trial event; + Ray's own


@dataclass
class SweepSection:
    num_samples: int = doc("trials in the (first stage of the) search", 8)
    scheduler: str = doc("asha (stop weak trials at rungs) | fifo (run every trial to the end)", "asha")
    grace_period: int = doc("ASHA: epochs every trial runs before it can be stopped (on the demo, a ranking "
                            "after one epoch is close to a guess; after two, by the rung metric, it is close to "
                            "the final one: bench/sweep.py measures it; with hundreds of trials, 1 trains a third "
                            "of FIFO's epochs for as good a best: bench/scale.py)", 2)
    reduction_factor: int = doc("ASHA: 1/reduction_factor of the trials go on at each rung", 2)
    rung_metric: str | None = doc(
        "validation metric ASHA compares at a rung, each trial's best so far (default: roc_auc for pair, "
        "which ranks the trials at the demo's early rungs better than F1 at the 0.5 threshold, where scores "
        "still sit on one side of it; the trial's metric for span and span_crf)", None)
    max_concurrent: int | None = doc(
        "trials at once; default: as many worker groups as the cluster holds (set it on an "
        "autoscaling cluster whose nodes are not up yet: this also skips the fit check)", None)
    workers_per_trial: int = doc("Ray Train workers (DDP ranks) per trial", 1)
    cpus_per_worker: float = doc("CPUs reserved per worker", 1.0)
    gpus_per_worker: float = doc("GPUs per worker; fractions (0.5, 0.25) let small trials share a GPU", 0.0)
    in_process: bool | None = doc(
        "a one-worker trial trains in its trial's own process, reporting to Tune, instead of starting a Ray Train "
        "worker group (controller, placement group, worker process): each trial starts about 8 s sooner. Default: "
        "on when the sweep starts its own local Ray, off on a cluster (RAY_ADDRESS, ray job submit), where Ray "
        "Train restarts a lost worker group and sweep.unplaceable_timeout_s ends a trial no node can hold; "
        "decided once per run dir", None)
    max_failures: int = doc("times a trial is retried from its last checkpoint before it errors: Ray Train "
                            "restarts failed workers, and Tune a trial driver lost with its node", 2)
    searcher: str = doc("tpe (Optuna's seeded TPE) | random (seeded random search, e.g. as a baseline)", "tpe")
    startup_trials: int | None = doc(
        "random trials before TPE models the results (default: a third of num_samples, at least 3 and at least "
        "the number of combinations of the categorical parameters, at most 10)", None)
    storage: str | None = doc(
        "Optuna storage URL of the search's studies (one per stage, named <out_dir name>/<stage>); default "
        "sqlite:///<out_dir>/study.db (optuna.load_study and optuna-dashboard read it)", None)
    warm_start: str | None = doc(
        "an earlier sweep's run dir (path or URI): its top_k configs, as far as they fit this space, are the "
        "search's first trials", None)
    time_budget_s: float | None = doc(
        "wall-clock seconds this driver may run: then it stops as on SIGTERM (running trials keep their "
        "state, the record is written, exit status 0) and resume=RUN_DIR continues, with the budget again",
        None)
    two_stage: bool | None = doc(
        "after the search, a narrowed second stage around the top_k configs "
        "(default: on for redsm5/squad_v2, off for demo)", None)
    top_k: int = doc("two-stage: configs of stage 1 the stage-2 space is narrowed around", 3)
    stage2_samples: int = doc("two-stage: trials in stage 2", 4)
    retrain_seeds: int | None = doc(
        f"retrain the best config with this many seeds and report mean +- std "
        f"(default: {DEFAULT_RETRAIN_SEEDS} for redsm5/squad_v2, 0 for demo)", None)
    final_test: bool = doc("evaluate the best checkpoint on the test split once, after the search", True)
    space_file: str | None = doc("YAML search space replacing the built-in sweep/spaces/<task>.yaml", None)
    space: dict[str, Any] = doc(
        "overrides of the search space, by dotted key: sweep.space.training.lr.high=1e-2, "
        "sweep.space.features.max_length=[64,128], sweep.space.training.dropout=null (not searched)",
        factory=dict)
    verbose: int = doc(
        "output: 0 only the final leaderboard, 1 also one line per trial event (start, each epoch's "
        "metric, stop by ASHA or early stopping, finish, error), 2 also Ray's own output (Tune's "
        "status tables, Ray Train's and the workers' logs, warnings)", 1)
    unplaceable_timeout_s: float = doc(
        "seconds a trial waits while the cluster's alive nodes together cannot hold its worker group "
        "(a node was lost, or an autoscaled one is not up yet) before it errors, naming what it needs and "
        "what the cluster has; leave time for a node to start (minutes on cluster.yaml); 0 waits forever, "
        "as Ray does", 900.0)


@dataclass
class TrackingSection:
    mlflow: bool = doc("log every trial (params, per-epoch metrics, resolved config, best checkpoint) to MLflow; "
                       "needs pip install '.[mlflow]'. When MLflow or its store fails, one warning, no tracking", False)
    tracking_uri: str = doc(
        "MLflow store: sqlite:///mlflow.db (a relative sqlite path or plain directory is resolved against "
        "out_dir, so the store stays with the run), sqlite:////abs/path.db, or http(s)://server", "sqlite:///mlflow.db")
    experiment: str | None = doc("MLflow experiment name (default: the name of out_dir)", None)


def _short_features() -> FeaturesConfig:
    return FeaturesConfig(max_length=128, doc_stride=32)


def _demo_training() -> TrainingConfig:
    """Long enough for the tiny model to learn the demo's pairs (it needs about 8 epochs of 800 posts);
    ASHA and early stopping, not a short budget, keep weak trials cheap."""
    return TrainingConfig(epochs=10, patience=2)


def _demo_data() -> DataConfig:
    """800 demo posts: twice the default, since the tiny model learns the pairs from data, not epochs
    (400 posts plateau near val F1 0.63; 800 reach 0.68 in 8 epochs)."""
    return DataConfig(demo_posts=800)


@dataclass
class SweepConfig(TrainConfig):
    out_dir: str = doc("run directory: Tune's trials, summary.json, trials.parquet, plots, best_checkpoint",
                       "runs/sweep")
    features: FeaturesConfig = doc("tokenization settings (the space may vary them)", factory=_short_features)
    data: DataConfig = doc("the dataset (the demo corpus has 800 posts by default in a sweep)", factory=_demo_data)
    training: TrainingConfig = doc("training settings every trial starts from", factory=_demo_training)
    resume: str | None = doc("continue an interrupted sweep: its run directory, or true for out_dir", None)
    sweep: SweepSection = doc("search, budget and trial resources", factory=SweepSection)
    tracking: TrackingSection = doc("optional experiment tracking (MLflow)", factory=TrackingSection)


def is_real_run(cfg: DictConfig) -> bool:
    return cfg.data.name in REAL_DATASETS


def in_process_on(cfg: DictConfig, address: str) -> bool:
    """``sweep.in_process``, or by default: one worker per trial on a Ray this sweep started (``address``
    is what ``raycluster.connect.connect`` returned). A resumed run dir saved without it (an older version)
    keeps its trials' Ray Train runs, which hold their checkpoints."""
    if cfg.sweep.in_process is not None:
        return bool(cfg.sweep.in_process)
    return cfg.sweep.workers_per_trial == 1 and address == "local" and not cfg.resume


def two_stage_on(cfg: DictConfig) -> bool:
    return is_real_run(cfg) if cfg.sweep.two_stage is None else bool(cfg.sweep.two_stage)


def retrain_seed_count(cfg: DictConfig) -> int:
    if cfg.sweep.retrain_seeds is None:
        return DEFAULT_RETRAIN_SEEDS if is_real_run(cfg) else 0
    return cfg.sweep.retrain_seeds


def startup_trials(cfg: DictConfig, categorical_combinations: int = 1) -> int:
    """Random trials before TPE: enough to see each combination of the categorical choices once (TPE
    otherwise stays on the combinations of its first trials) and a third of the budget."""
    if cfg.sweep.startup_trials is not None:
        return cfg.sweep.startup_trials
    return min(10, max(3, categorical_combinations, cfg.sweep.num_samples // 3))


def rung_metric(cfg: DictConfig) -> str:
    """The validation metric ASHA's rungs compare (as its best so far): sweep.rung_metric or the task's."""
    return cfg.sweep.rung_metric or RUNG_METRIC.get(cfg.task) or metric_name(cfg)


def validate_sweep(cfg: DictConfig) -> None:
    """Checks of the sweep section (the space is checked by ``sweep.space``)."""
    validate_train(cfg, check_hardware=False)
    s = cfg.sweep
    if s.scheduler not in SCHEDULERS:
        raise ConfigError("sweep.scheduler", f"must be one of {', '.join(SCHEDULERS)}; got {s.scheduler!r}")
    if s.searcher not in SEARCHERS:
        raise ConfigError("sweep.searcher", f"must be one of {', '.join(SEARCHERS)}; got {s.searcher!r}")
    if s.storage is not None and "://" not in str(s.storage):
        raise ConfigError("sweep.storage", f"is an Optuna storage URL (sqlite:///path.db, "
                                           f"postgresql://host/db); got {s.storage!r}")
    for key in ("num_samples", "grace_period", "workers_per_trial", "top_k", "stage2_samples"):
        at_least(f"sweep.{key}", getattr(s, key), 1)
    at_least("sweep.reduction_factor", s.reduction_factor, 2)
    check_metric_name(cfg, "sweep.rung_metric", s.rung_metric)
    if s.in_process and s.workers_per_trial > 1:
        raise ConfigError("sweep.in_process", f"trains one worker in the trial's process; sweep.workers_per_trial "
                                              f"is {s.workers_per_trial} (leave sweep.in_process unset or false)")
    at_least("sweep.max_failures", s.max_failures, 0)
    at_least("sweep.unplaceable_timeout_s", s.unplaceable_timeout_s, 0)
    if s.verbose not in (QUIET, EVENTS, RAY_OUTPUT):
        raise ConfigError("sweep.verbose", f"must be 0, 1 or 2; got {s.verbose}")
    for key in ("max_concurrent",):
        if getattr(s, key) is not None:
            at_least(f"sweep.{key}", getattr(s, key), 1)
    for key in ("retrain_seeds", "startup_trials"):
        if getattr(s, key) is not None:
            at_least(f"sweep.{key}", getattr(s, key), 0)
    if s.time_budget_s is not None and not s.time_budget_s > 0:
        raise ConfigError("sweep.time_budget_s", f"must be > 0 seconds; got {s.time_budget_s}")
    if not s.cpus_per_worker > 0:
        raise ConfigError("sweep.cpus_per_worker", f"must be > 0; got {s.cpus_per_worker}")
    gpus = s.gpus_per_worker
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError("sweep.gpus_per_worker",
                          f"must be a fraction in [0, 1] or a whole number; got {gpus}")
    if gpus > 0 and cfg.training.device == "cpu":
        raise ConfigError("training.device", "is cpu but sweep.gpus_per_worker > 0 reserves GPUs; "
                                             "use training.device=auto or sweep.gpus_per_worker=0")
    if two_stage_on(cfg) and s.top_k > s.num_samples:
        raise ConfigError("sweep.top_k",
                          f"must not exceed sweep.num_samples ({s.num_samples}); got {s.top_k}")
    if s.space_file is not None and not Path(s.space_file).is_file():
        raise ConfigError("sweep.space_file", f"no such file: {s.space_file}")
    validate_tracking(cfg.tracking, str(cfg.out_dir))


def resolve_tracking_uri(uri: str, out_dir: str | Path) -> str:
    """An absolute tracking URI: a relative sqlite path or plain directory is taken from out_dir.

    Relative to out_dir (not the cwd) because a sweep submitted with ``ray job submit`` runs in a
    temporary working directory, and so the store stays with the run it describes.
    """
    if not uri.strip() or "://" in str(out_dir):  # no local directory to put it in: validate_sweep says
        return uri
    if uri.startswith(SQLITE):
        path = uri[len(SQLITE):]
        if not path or path == ":memory:":
            return uri
        return SQLITE + str((Path(out_dir) / Path(path).expanduser()).resolve())
    if not urlparse(uri).scheme:  # a plain path: MLflow's file store
        return str((Path(out_dir) / Path(uri).expanduser()).resolve())
    return uri


def validate_tracking(t: Any, out_dir: str = "") -> None:
    """Only the form: whether the store can be opened is found out (and warned about) at run time."""
    if not str(t.tracking_uri).strip():
        raise ConfigError("tracking.tracking_uri", "is empty; give e.g. sqlite:///mlflow.db")
    local = t.tracking_uri.startswith(SQLITE) or not urlparse(t.tracking_uri).scheme
    if t.mlflow and "://" in out_dir and local and not Path(t.tracking_uri.removeprefix(SQLITE)).is_absolute():
        raise ConfigError("tracking.tracking_uri", f"{t.tracking_uri!r} is relative to out_dir, which is on "
                                                   "object storage; give a tracking server (http://host:5000) "
                                                   "or a store on a disk every node mounts (sqlite:////abs.db)")
    if t.tracking_uri.startswith("sqlite:") and not t.tracking_uri.startswith("sqlite:///"):
        raise ConfigError("tracking.tracking_uri", f"a sqlite store is sqlite:///relative.db or "
                                                   f"sqlite:////absolute/path.db; got {t.tracking_uri!r}")
    if t.experiment is not None and not str(t.experiment).strip():
        raise ConfigError("tracking.experiment", "is empty; give a name, or leave it unset for out_dir's name")


def train_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved ``TrainConfig`` part of a sweep config, as the train loop takes it."""
    full = OmegaConf.to_container(cfg, resolve=True)
    keys = {f.name for f in fields(TrainConfig)}  # the dataclass's own: a structured config costs ~10 ms
    out = {k: v for k, v in full.items() if k in keys}
    out["resume"] = None  # the sweep's resume is the run dir; a trial resumes through Ray Train
    return out


def leaf_diff(a: Any, b: Any) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configs (for resume consistency)."""
    fa = _flatten(OmegaConf.to_container(a, resolve=True))
    fb = _flatten(OmegaConf.to_container(b, resolve=True))
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out

