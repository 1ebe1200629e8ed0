"""``python -m sweep.run``: an Optuna (TPE) + ASHA sweep over Ray Train trials, resumable.

The controller checks the whole config and space, connects to Ray, checks the cluster can hold
a trial, prepares and shares every feature variant once, then runs the search (and, when on, a
narrowed second stage, a multi-seed retrain of the best config and one test evaluation of the
best checkpoint). Each stage is a Tune experiment under the run directory, so an interrupted
sweep continues with ``resume=true``: finished trials stay finished.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from plumbing import storage
from plumbing.cli import CONFIG_FILE, parse_config, run_cli, save_config
from plumbing.errors import UserError
from plumbing.jsonio import write_json
from plumbing.run_lock import hold_run_dir, release_unused
from plumbing.stop_signals import StopSignals
from raycluster.connect import connect
from raycluster.placement import TrialResources, cluster_plan
from sweep.config import SweepConfig, in_process_on, retrain_seed_count, two_stage_on
from sweep.layout import SPACE_FILE
from sweep.output import info, quiet_libraries
from sweep.settings import checked_config, run_dir_of
from sweep.sharing import Shared, share_features
from sweep.space import feature_variants, space_to_json
from sweep.stages import Interrupted, final_test, retrain, search, second_stage, trainable_for, update_timings

DESCRIPTION = """
Search hyper-parameters of one task (span | span_crf | pair) with Optuna's seeded TPE and ASHA
early stopping, each trial a Tune trial (training in its own process on a local Ray, a Ray Train run
on a cluster or with several workers). Defaults: the demo corpus, the tiny model and an
8-trial sweep that finishes in about 4 to 8 minutes on 2 CPU cores. The search space is
sweep/spaces/<task>.yaml, overridable key by key (sweep.space.training.lr.high=1e-2). Connects to
the cluster in RAY_ADDRESS, else starts a local Ray. Resume an interrupted sweep with resume=true
(its out_dir) or resume=RUN_DIR. Leaves in out_dir: config.yaml, summary.json, trials.parquet,
plots, best_checkpoint/ and the Tune experiments (tensorboard --logdir out_dir shows every trial).
Ctrl-C or SIGTERM stops a sweep with its state saved. One driver per run directory: a second one
exits at once (status 2) naming the first (the lock file out_dir/driver.lock). Prints one line per
trial event and the final leaderboard (sweep.verbose=0: the leaderboard only; 2: Ray's own output too).
"""


@dataclass
class Prepared:
    run_dir: str
    concurrency: int
    shared: Shared


def prepare_run(cfg: DictConfig, dists) -> Prepared:
    """Connect, check the cluster can hold a trial, save the config, share every feature variant."""
    started = time.time()
    run_dir = cfg.out_dir  # absolute already (sweep.settings.checked_config)
    address = connect()
    concurrency, cluster = cluster_plan(cfg, cfg.sweep.num_samples)
    cfg.sweep.in_process = in_process_on(cfg, address)  # saved: a resumed sweep keeps its trials' resources
    where = "in the trial's process" if cfg.sweep.in_process else "as a Ray Train worker group"
    info(cfg, f"sweep: Ray at {address}; {cluster}; trial = {TrialResources.from_config(cfg).describe()} "
              f"{where}; {concurrency} trial(s) at once")
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


def execute(cfg: DictConfig, dists, prepared: Prepared) -> dict[str, Any]:
    """Search (and the extras that are on), then the summary; returns it."""
    from sweep.report import refresh
    from sweep.summary import write_summary
    from sweep.tracking import record_best

    run_dir, concurrency = prepared.run_dir, prepared.concurrency
    trainable = trainable_for(cfg, prepared.shared)
    search(cfg, run_dir, dists, trainable, concurrency)
    if two_stage_on(cfg):
        second_stage(cfg, run_dir, dists, trainable, concurrency)
    if retrain_seed_count(cfg):  # the winner so far; plots and the final summary come once, at the end
        best = write_summary(run_dir)[0]["best"]
        if best:
            retrain(cfg, run_dir, best["params"], trainable, concurrency)
    if cfg.sweep.final_test:
        final_test(cfg, run_dir, prepared.shared)
    update_timings(run_dir, finished_at=time.time())
    summary = refresh(run_dir)
    record_best(cfg, summary)
    return summary


def run(cfg: DictConfig, dists) -> dict[str, Any]:
    """The whole sweep for a validated config (``checked_config``); returns the summary."""
    return execute(cfg, dists, prepare_run(cfg, dists))


def main(argv: list[str]) -> None:
    from sweep.summary import leaderboard

    cfg = parse_config(SweepConfig, argv, "sweep.run", DESCRIPTION)
    run_dir = run_dir_of(cfg)
    hold_run_dir(run_dir, create=not cfg.resume)  # one driver per run dir, before anything reads it
    try:
        cfg, dists = checked_config(cfg)
    except UserError:
        release_unused(run_dir)  # a refused config leaves no trace
        raise
    quiet_libraries(cfg.sweep.verbose)  # before Ray is imported
    connect()
    from raycluster.reaper import guard_local_ray
    guard_local_ray()  # a local Ray started here ends with this process, even after kill -9
    with StopSignals(cfg.sweep.time_budget_s) as stop:
        try:
            summary = run(cfg, dists)
        except Interrupted as e:
            from sweep.report import refresh

            summary = refresh(cfg.out_dir)
            if stop.budget_spent:
                print(leaderboard(summary))
            why = stop_words(cfg, stop)
            print(f"sweep {why} ({e}); state saved. Continue it with: python -m sweep.run "
                  f"resume={cfg.out_dir}", file=sys.stderr)
            raise SystemExit(stop.exit_status()) from None
        except KeyboardInterrupt:  # outside a Tune experiment, or a second signal during one
            resumable = storage.exists(storage.join(cfg.out_dir, CONFIG_FILE))
            hint = (f"continue it with: python -m sweep.run resume={cfg.out_dir}" if resumable
                    else "nothing was saved yet; start it again")
            why = stop_words(cfg, stop)
            print(f"sweep {why}; {hint}", file=sys.stderr)
            raise SystemExit(stop.exit_status()) from None
    print(leaderboard(summary))
    print(f"sweep: outputs in {cfg.out_dir} (tensorboard --logdir {cfg.out_dir})")
    for why in summary.get("plots_left_out", []):
        print(f"sweep: {why}")
    if summary.get("best") is None:
        errors = [t["error"] for t in summary.get("trials", []) if t.get("error")]
        first = errors[0].strip().splitlines()[-1] if errors else "no trial reported a result"
        print(f"error: no trial finished an epoch ({len(errors)} errored); the first error: {first}",
              file=sys.stderr)
        raise SystemExit(1)


def stop_words(cfg: DictConfig, stop: StopSignals) -> str:
    """What ended a sweep early, for its message: its own time budget or an operator's signal."""
    return f"time budget of {cfg.sweep.time_budget_s:g} s spent" if stop.budget_spent else "interrupted"


if __name__ == "__main__":
    run_cli(main)
