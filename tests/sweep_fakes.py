"""A fake sweep for the summary tests: Tune trials without models, in a real sweep run directory.

Ray workers cannot import tests/, so a module using these registers this one for pickling by value
(``ray.cloudpickle.register_pickle_by_value(sweep_fakes)``).
"""

from __future__ import annotations

import math
from pathlib import Path

from plumbing.cli import parse_config, save_config
from sweep.config import SweepConfig


def fake_trial(config, epochs: int, failing_lr: float):
    """A learning curve that peaks at lr=1e-3; ``failing_lr`` raises at once, like a worker out of memory."""
    from ray import tune

    quality = 1.0 - abs(math.log10(config["training.lr"]) + 3) / 3 - config.get("seed", 0) * 1e-3
    for epoch in range(1, epochs + 1):
        if config["training.lr"] == failing_lr:
            raise RuntimeError(f"CUDA out of memory (simulated) in trial with lr={failing_lr:g}")
        tune.report({"epoch": epoch, "metric": quality * epoch / epochs, "val_f1": quality * epoch / epochs,
                     "train_loss": 1.0 / epoch})


def fake_trainable(epochs: int, failing_lr: float):
    """``fake_trial`` as a Tune trainable of one CPU (Ray must be initialized)."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(fake_trial, epochs=epochs, failing_lr=failing_lr), {"cpu": 1})


def new_run_dir(run_dir: Path, epochs: int, *overrides: str):
    """The config.yaml sweep.run leaves before its first trial, for ``epochs`` epochs per trial."""
    cfg = parse_config(SweepConfig, [f"out_dir={run_dir}", f"training.epochs={epochs}", "training.patience=0",
                                     "sweep.grace_period=1", "sweep.reduction_factor=2", "sweep.verbose=0",
                                     *overrides], "sweep.run", "")
    save_config(cfg, run_dir)
    return cfg
