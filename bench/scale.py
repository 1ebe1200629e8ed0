"""The sweep's own cost as its trials grow: simulated trials through the project's stack beside bare Tune.

    python bench/scale.py [--trials 100,300,1000] [--concurrency 32] [--epochs 9] [--epoch-s 0.05]
                          [--grace 2] [--reduction-factor 2] [--arms project,bare,fifo]

A simulated trial is a learning curve, one short sleep per epoch: its height depends on the config
(lr against a best lr of 1e-3, a small batch-size effect), it saturates over the epochs, and seeded noise
per trial and epoch makes the ranking at a rung imperfect, as a real one is. No model, no data: what is
measured is what runs around the trials. Each arm runs in a fresh process with a local Ray of
``--concurrency`` logical CPUs (one per trial), so dozens of trials run at once on 2 cores:

- ``project``: the sweep's search stage (``sweep.stages.search``: its TPE searcher over a study in
  SQLite, ``SweepASHA``, its callbacks and progress lines), each trial reporting through the in-process
  trial's own session (``TuneSession``: ``metrics.json`` and ``tune.report``), then the record
  (``sweep.report.refresh``: summary, trials table, plots, study);
- ``bare``: Tune alone with the same trials, concurrency, TPE (Ray's ``OptunaSearch``) and ASHA;
- ``fifo``: the project with ``sweep.scheduler=fifo``, for the epochs ASHA saves and the best it keeps
  (``--arms`` picks which run; a figure of an arm left out prints as nan). Both ASHAs use ``--grace``
  and ``--reduction-factor`` (the sweep's defaults, 2 and 2).

Per N it prints wall time against the ideal (every epoch's sleep, C at a time), the driver's CPU time per
trial for the project and bare Tune and their ratio (the overhead ratio), TPE's time per suggestion with
N trials told, the record's time, the run dir's size and files per trial, the driver's peak memory, and
the epochs trained and best value of ASHA against FIFO, and the height of each one's best config (its curve
at the last epoch without noise: what the config found is worth, where the best value also counts the luck of
the most noisy epochs a sweep drew).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/sweep.py, beside this script, would hide the sweep package from this process's imports
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
SPACE = {"training.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}, "training.batch_size": [16, 32]}
NOISE = 0.02
ARMS = ("project", "bare", "fifo")
MISSING = dict.fromkeys(("epochs", "best", "best_height", "wall_s", "driver_cpu_s"), math.nan)


def height(params: dict, epoch: int) -> float:
    """A config's metric at ``epoch`` without noise: what the config is worth, apart from its luck."""
    top = 0.9 - 0.12 * (math.log10(params["training.lr"]) + 3) ** 2 - 0.02 * (params["training.batch_size"] == 32)
    return top * (1 - math.exp(-epoch / 3))


def curve(params: dict, epoch: int, trial_seed: int) -> float:
    """The trial's metric at ``epoch``: a config-dependent height, saturating, with seeded noise."""
    import random

    return max(0.0, height(params, epoch) + random.Random(trial_seed * 1000 + epoch).gauss(0, NOISE))


def project_trial(config: dict, epochs: int, epoch_s: float) -> None:
    """A simulated trial as the sweep's in-process trial reports: through ``TuneSession``."""
    from ray import tune

    from trainable.session import BEST_METRIC, METRIC, TuneSession

    session = TuneSession(tune.get_context().get_storage().trial_fs_path)  # a local run dir: the path itself
    seed, best = hash(tune.get_context().get_trial_id()) % 100_000, -1.0
    for epoch in range(1, epochs + 1):
        time.sleep(epoch_s)
        value = curve(config, epoch, seed)
        best = max(best, value)
        session.report({"epoch": epoch, METRIC: value, BEST_METRIC: best, "val_f1": value})


def bare_trial(config: dict, epochs: int, epoch_s: float) -> None:
    from ray import tune

    seed, best = hash(tune.get_context().get_trial_id()) % 100_000, -1.0
    for epoch in range(1, epochs + 1):
        time.sleep(epoch_s)
        value = curve(config, epoch, seed)
        best = max(best, value)
        tune.report({"epoch": epoch, "metric": value, "best_metric": best})


def run_project(run_dir: Path, n: int, c: int, epochs: int, epoch_s: float, scheduler: str, grace: int,
                rf: int) -> dict:
    from ray import tune

    from plumbing.cli import parse_config, save_config
    from sweep.config import SweepConfig
    from sweep.layout import SPACE_FILE
    from sweep.report import refresh
    from sweep.space import space_to_json, to_distributions
    from sweep.stages import search

    cfg = parse_config(SweepConfig, [f"out_dir={run_dir}", f"training.epochs={epochs}", "training.patience=0",
                                     f"sweep.num_samples={n}", f"sweep.scheduler={scheduler}", "sweep.verbose=1",
                                     f"sweep.grace_period={grace}", f"sweep.reduction_factor={rf}",
                                     "sweep.rung_metric=f1",
                                     "sweep.final_test=false"], "sweep.run", "")
    save_config(cfg, run_dir)
    dists = to_distributions(SPACE, cfg)
    (run_dir / SPACE_FILE).write_text(json.dumps(space_to_json(dists)))
    trainable = tune.with_resources(tune.with_parameters(project_trial, epochs=epochs, epoch_s=epoch_s), {"cpu": 1})
    cpu, wall = time.process_time(), time.perf_counter()
    with open(os.devnull, "w") as quiet, _stdout(quiet):
        search(cfg, str(run_dir), dists, trainable, concurrency=c)
    out = {"wall_s": time.perf_counter() - wall, "driver_cpu_s": time.process_time() - cpu}
    started = time.perf_counter()
    summary = refresh(str(run_dir))
    out["record_s"] = time.perf_counter() - started
    out["epochs"] = summary["total_epochs"]
    out["best"] = summary["best"]["metric"]
    out["best_height"] = height(summary["best"]["params"], epochs)
    out["tpe_suggest_ms"] = tpe_suggest_ms(run_dir, dists)
    files = [p for p in (run_dir / "search").rglob("*") if p.is_file()]
    out["files_per_trial"] = len(files) / n
    out["run_dir_mb"] = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 2**20
    return out


def run_bare(run_dir: Path, n: int, c: int, epochs: int, epoch_s: float, grace: int, rf: int) -> dict:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"training.lr": tune.loguniform(1e-5, 1e-1), "training.batch_size": tune.choice([16, 32])}
    searcher = OptunaSearch(metric="best_metric", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
    trainable = tune.with_resources(tune.with_parameters(bare_trial, epochs=epochs, epoch_s=epoch_s), {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
        search_alg=searcher, num_samples=n, max_concurrent_trials=c,
        scheduler=ASHAScheduler(time_attr="epoch", metric="best_metric", mode="max", max_t=epochs, grace_period=grace,
                                reduction_factor=rf)),
        run_config=tune.RunConfig(storage_path=str(run_dir), name="bare", verbose=0))
    cpu, wall = time.process_time(), time.perf_counter()
    results = tuner.fit()
    out = {"wall_s": time.perf_counter() - wall, "driver_cpu_s": time.process_time() - cpu}
    frame = results.get_dataframe()
    out["epochs"] = int(frame["epoch"].sum())
    out["best"] = float(frame["best_metric"].max())
    return out


def tpe_suggest_ms(run_dir: Path, dists) -> float:
    """TPE's time per suggestion with every trial of the sweep told (a copy of its study, in memory)."""
    import optuna

    from sweep.layout import STUDY_FILE

    url = f"sqlite:///{run_dir / STUDY_FILE}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    copy = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    copy.add_trials([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    started = time.perf_counter()
    for _ in range(10):
        copy.ask(dists)
    return (time.perf_counter() - started) * 100


class _stdout:
    """Progress lines of hundreds of trials go nowhere (their cost is still paid)."""

    def __init__(self, target):
        self.target = target

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.target

    def __exit__(self, *exc):
        sys.stdout = self.saved


def arm_main(arm: str, n: int, c: int, epochs: int, epoch_s: float, grace: int, rf: int) -> None:
    """One arm in this process: its figures as one JSON line on stdout."""
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=c, logging_level="ERROR", log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix=f"scale-{arm}-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        if arm == "bare":
            out = run_bare(run_dir, n, c, epochs, epoch_s, grace, rf)
        else:
            out = run_project(run_dir, n, c, epochs, epoch_s, "fifo" if arm == "fifo" else "asha", grace, rf)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()
    print(json.dumps(out), flush=True)


def run_arm(arm: str, n: int, c: int, epochs: int, epoch_s: float, grace: int, rf: int) -> dict:
    cmd = [sys.executable, __file__, "--arm", arm, "--trials", str(n), "--concurrency", str(c),
           "--epochs", str(epochs), "--epoch-s", str(epoch_s), "--grace", str(grace), "--reduction-factor", str(rf)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{arm} arm failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", default="100,300,1000", help="comma-separated N (trials per run)")
    ap.add_argument("--concurrency", type=int, default=32, help="trials at once (logical CPUs of the local Ray)")
    ap.add_argument("--epochs", type=int, default=9, help="epochs of each simulated trial")
    ap.add_argument("--epoch-s", type=float, default=0.05, help="seconds each simulated epoch sleeps")
    ap.add_argument("--grace", type=int, default=2, help="ASHA's grace period, for both ASHAs")
    ap.add_argument("--reduction-factor", type=int, default=2, help="ASHA's reduction factor, for both ASHAs")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (project, bare, fifo)")
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm's subprocess
    a = ap.parse_args(argv)
    unknown = set(a.arms.split(",")) - set(ARMS)
    if unknown or "project" not in a.arms.split(","):
        ap.error(f"--arms: the project arm and any of {', '.join(ARMS[1:])} (got {a.arms})")
    return a


def main(argv: list[str]) -> None:
    a = parse(argv)
    sizes = [int(x) for x in a.trials.split(",")]
    c, epochs, epoch_s, grace, rf = a.concurrency, a.epochs, a.epoch_s, a.grace, a.reduction_factor
    if a.arm:
        return arm_main(a.arm, sizes[0], c, epochs, epoch_s, grace, rf)
    print(f"{'N':>5} {'wall s':>7} {'ideal s':>7} {'bare wall':>9} {'driver ms/trial':>15} {'bare ms/trial':>13} "
          f"{'overhead':>8} {'TPE ms':>6} {'record s':>8} {'MB':>6} {'files/trial':>11} {'peak MB':>7} "
          f"{'ASHA epochs':>11} {'ASHA/FIFO epochs':>16} {'best ASHA':>9} {'best FIFO':>9} {'height ASHA':>11} "
          f"{'height FIFO':>11}")
    for n in sizes:
        p, b, f = (run_arm(arm, n, c, epochs, epoch_s, grace, rf) if arm in a.arms.split(",") else MISSING
                   for arm in ARMS)
        ideal = p["epochs"] * epoch_s / c
        print(f"{n:>5} {p['wall_s']:>7.1f} {ideal:>7.1f} {b['wall_s']:>9.1f} {1000 * p['driver_cpu_s'] / n:>15.1f} "
              f"{1000 * b['driver_cpu_s'] / n:>13.1f} {p['driver_cpu_s'] / b['driver_cpu_s']:>8.2f} "
              f"{p['tpe_suggest_ms']:>6.1f} {p['record_s']:>8.1f} {p['run_dir_mb']:>6.1f} "
              f"{p['files_per_trial']:>11.1f} {p['peak_mb']:>7.0f} {p['epochs']:>11} "
              f"{p['epochs'] / f['epochs']:>16.2f} "
              f"{p['best']:>9.4f} {f['best']:>9.4f} {p['best_height']:>11.4f} {f['best_height']:>11.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
