"""The searcher's own CPU time per trial, as the sweep's driver calls it, over its SQLite study.

    python bench/searcher.py [--trials 200] [--epochs 5]

Each trial is what Tune does with the searcher: ``suggest`` (TPE's ask, the trial's labels), one
``on_trial_result`` per epoch (an intermediate value) and ``on_trial_complete`` (its labels and the
tell), through ``sweep.searcher.make_searcher`` over ``study.db`` in a temporary run directory. It
prints the CPU milliseconds per trial over SQLite and, for scale, over an in-memory study (what
Ray's own ``OptunaSearch`` keeps): the difference is what the study on disk costs the driver.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

# bench/sweep.py, beside this script, would hide the sweep package from this process's imports
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def cpu_ms_per_trial(url: str | None, run_dir: str, trials: int, epochs: int) -> float:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from sweep.searcher import StudyLabels, make_searcher

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    dists = {"training.lr": FloatDistribution(1e-5, 1e-1, log=True),
             "training.batch_size": CategoricalDistribution([16, 32])}
    searcher = make_searcher(dists, 0, 10, url=url, labels=StudyLabels(run_dir, "search", epochs + 1))
    started = time.process_time()
    for i in range(trials):
        trial_id = f"t{i:05d}"
        searcher.suggest(trial_id)
        for epoch in range(1, epochs + 1):
            searcher.on_trial_result(trial_id, {"epoch": epoch, "metric": 0.1 * epoch, "best_metric": 0.1 * epoch})
        searcher.on_trial_complete(trial_id, {"epoch": epochs + 1, "metric": 0.5, "best_metric": 0.5})
    return (time.process_time() - started) / trials * 1000


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200, help="trials the searcher proposes and is told")
    ap.add_argument("--epochs", type=int, default=5, help="intermediate results per trial")
    a = ap.parse_args(argv)
    trials, epochs = a.trials, a.epochs
    with tempfile.TemporaryDirectory(prefix="bench-searcher-") as tmp:
        sqlite = cpu_ms_per_trial(f"sqlite:///{tmp}/study.db", tmp, trials, epochs)
        memory = cpu_ms_per_trial(None, tmp, trials, epochs)
    print(f"{trials} trials of {epochs} epochs: searcher CPU per trial {sqlite:.1f} ms over SQLite, "
          f"{memory:.1f} ms in memory (SQLite/memory {sqlite / memory:.1f}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
