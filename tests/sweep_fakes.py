"""A fake sweep for the summary tests: Tune trials without models, in a real sweep run directory.

Ray workers cannot import tests/, so a module using these registers this one for pickling by value
(``ray.cloudpickle.register_pickle_by_value(sweep_fakes)``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from plumbing import storage
from plumbing.cli import parse_config, save_config
from sweep.config import SweepConfig
from sweep.settings import checked_config
from sweep.trials import epochs_of


def load_config(argv: list[str]):
    """``python -m sweep.run ARGV``'s validated config (the saved one when resuming) and search space."""
    return checked_config(parse_config(SweepConfig, argv, "sweep.run", "sweep"))


def read_results(trial_dir: str) -> list[dict[str, Any]]:
    """One trial's epochs read from its own directory alone (Tune's result.json, a line cut by a kill
    skipped, under the loop's metrics.json), as ``sweep.trials.epochs_of`` merges them."""
    path = storage.join(str(trial_dir), "result.json")
    rows = []
    for line in (storage.read_text(path) if storage.exists(path) else "").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return epochs_of(pd.DataFrame(rows), str(trial_dir)).to_dict("records")


def fake_trial(config, epochs: int, failing_lr: float):
    """A learning curve that peaks at lr=1e-3; ``failing_lr`` raises at once, like a worker out of memory."""
    from ray import tune

    quality = 1.0 - abs(math.log10(config["training.lr"]) + 3) / 3 - config.get("seed", 0) * 1e-3
    for epoch in range(1, epochs + 1):
        if config["training.lr"] == failing_lr:
            raise RuntimeError(f"CUDA out of memory (simulated) in trial with lr={failing_lr:g}")
        value = quality * epoch / epochs
        tune.report({"epoch": epoch, "metric": value, "best_metric": value, "val_f1": value, "train_loss": 1.0 / epoch})


def fake_trainable(epochs: int, failing_lr: float):
    """``fake_trial`` as a Tune trainable of one CPU (Ray must be initialized)."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(fake_trial, epochs=epochs, failing_lr=failing_lr), {"cpu": 1})


def new_run_dir(run_dir: Path, epochs: int, *overrides: str):
    """The config.yaml sweep.run leaves before its first trial, for ``epochs`` epochs per trial."""
    cfg = parse_config(SweepConfig, [f"out_dir={run_dir}", f"training.epochs={epochs}", "training.patience=0",
                                     "sweep.grace_period=1", "sweep.reduction_factor=2", "sweep.verbose=0",
                                     "sweep.rung_metric=f1",  # the fake trials report val_f1 alone
                                     *overrides], "sweep.run", "")
    save_config(cfg, run_dir)
    return cfg


# The fake sweep every summary test reads: stage 1 is a grid over LRS (FAILING_LR raises, ASHA stops
# the weak ones, the rest finish), stage 2 narrows around the TOP_K best, the best is retrained.
EPOCHS = 4
LRS = [1e-3, 1e-5, 3e-3, 1e-2, 2e-5, 5e-4]
FAILING_LR = 1e-2
SPACE = {"training.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}
TOP_K, STAGE2_SAMPLES, RETRAIN_SEEDS = 2, 3, 3


def fake_sweep(run_dir: Path):
    """Every stage of a sweep over fake trials in ``run_dir``, as ``sweep.run`` would leave it; the config.
    Ray must be initialized, with this module registered for pickling by value."""
    import json

    from ray import tune

    from sweep.layout import SPACE_FILE
    from sweep.space import space_to_json, to_distributions
    from sweep.stages import retrain, run_stage, scheduler_for, second_stage
    from sweep.summary import write_summary

    cfg = new_run_dir(run_dir, EPOCHS, f"sweep.top_k={TOP_K}", f"sweep.stage2_samples={STAGE2_SAMPLES}",
                      f"sweep.retrain_seeds={RETRAIN_SEEDS}")
    dists = to_distributions(SPACE, cfg)
    (run_dir / SPACE_FILE).write_text(json.dumps(space_to_json(dists)))
    trainable = fake_trainable(EPOCHS, FAILING_LR)
    run_stage(cfg, run_dir, "search", trainable, concurrency=1, param_space={"training.lr": tune.grid_search(LRS)},
              scheduler=scheduler_for(cfg, str(run_dir), "search", dists))
    second_stage(cfg, run_dir, dists, trainable, concurrency=1)
    retrain(cfg, run_dir, write_summary(str(run_dir))[0]["best"]["params"], trainable, concurrency=1)
    return cfg


def curve_trial(config, epochs: int, stop_file: str, driver_pid: int, epoch_s: float = 0.0):
    """A saturating learning curve whose height depends on lr, ``epoch_s`` seconds an epoch; the fourth
    trial to start sends the driver SIGTERM once (``stop_file`` marks that it was sent), as an operator
    stopping the sweep would."""
    import os
    import signal
    import time
    from pathlib import Path

    from ray import tune

    started = Path(stop_file).parent / "started"
    started.mkdir(exist_ok=True)
    (started / tune.get_context().get_trial_id()).touch()
    if len(list(started.iterdir())) == 4 and not Path(stop_file).exists():
        Path(stop_file).touch()
        os.kill(driver_pid, signal.SIGTERM)
        time.sleep(60)  # Tune stops the trial with the sweep
    quality = 1.0 - abs(math.log10(config["training.lr"]) + 3) / 3
    for epoch in range(1, epochs + 1):
        value = quality * (1 - 0.5 ** epoch)
        time.sleep(epoch_s)
        tune.report({"epoch": epoch, "metric": value, "best_metric": value, "val_f1": value})


def curve_trainable(epochs: int, stop_file: str, driver_pid: int, epoch_s: float = 0.0):
    from ray import tune

    return tune.with_resources(tune.with_parameters(curve_trial, epochs=epochs, stop_file=stop_file,
                                                    driver_pid=driver_pid, epoch_s=epoch_s), {"cpu": 1})
