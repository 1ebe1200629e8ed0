"""A sweep's validated config, new or resumed: a resumed sweep runs with the config it was started
with (an override that contradicts it is an error), and every path is made absolute once, since
trials run in Ray's working directories and on other nodes."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from plumbing import storage
from plumbing.cli import absolute
from plumbing.errors import ConfigError, UserError
from sweep.config import SweepConfig, leaf_diff, resolve_tracking_uri, validate_sweep
from sweep.layout import STAGE1
from sweep.space import check_space, nested_space, resolve_space, to_distributions
from sweep.summary import sweep_config


def checked_config(cfg: DictConfig):
    """A parsed command line's validated config (the saved one when resuming) and its search space."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    elif storage.exists(storage.join(cfg.out_dir, STAGE1)):
        raise ConfigError("out_dir", f"{cfg.out_dir} already holds a sweep; continue it with resume=true, "
                                     "or give a new out_dir")
    absolute_paths(cfg)
    validate_sweep(cfg)
    if cfg.sweep.warm_start and not cfg.resume:
        cfg.sweep.warm_start = storage.absolute(cfg.sweep.warm_start)
        try:
            sweep_config(cfg.sweep.warm_start)
        except UserError as e:
            raise ConfigError("sweep.warm_start", str(e)) from None
    space = resolve_space(cfg)
    dists = to_distributions(space, cfg)
    check_space(cfg, dists)
    cfg.sweep.space = nested_space(resolve_space(cfg, keep_removed=True))  # config.yaml: the space in force
    return cfg, dists


def absolute_paths(cfg: DictConfig) -> None:
    """Trials run in Ray's own working directories (and on other nodes): relative paths would
    point elsewhere there, so every path in the config is made absolute here, once."""
    cfg.out_dir = storage.absolute(cfg.out_dir)  # a URI (s3://bucket/prefix) stays as it is
    cfg.cache_dir = absolute(cfg.cache_dir)
    if cfg.data.dir:
        cfg.data.dir = absolute(cfg.data.dir)
    cfg.tracking.tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.out_dir)


def run_dir_of(cfg: DictConfig) -> str:
    """The run directory a command line names (resume=DIR, else out_dir), absolute: the cwd of the
    command, not of Ray's workers."""
    resume = cfg.resume and str(cfg.resume).lower() not in ("true", "yes", "1")
    given = str(cfg.resume if resume else cfg.out_dir)
    return storage.absolute(given)


def resumed_config(cfg: DictConfig):
    """The run's saved config; an override that contradicts it is an error, not a silent change."""
    run_dir = run_dir_of(cfg)
    saved = sweep_config(run_dir)
    overridden = set(leaf_diff(cfg, OmegaConf.structured(SweepConfig)))
    ignore = ("resume", "out_dir", "sweep.space.", "sweep.time_budget_s")  # a resume may set its own budget
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
    if "sweep.time_budget_s" in overridden:
        saved.sweep.time_budget_s = cfg.sweep.time_budget_s
    saved.resume = str(run_dir)
    saved.out_dir = str(run_dir)
    return saved

