"""The demo learns: README's sweep, on its own defaults (the 800-post demo, the tiny model, 10 epochs,
patience 3), cut to one trial at a learning rate inside the built-in space, reaches a validation F1
well above what a model that ignores the criterion gets (always "evidence": 0.18; never: 0.0).

One real ``python -m sweep.run`` with its own local Ray; every wait is bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest

SWEEP_S = 900  # one trial of 10 epochs on a loaded 2-core machine (seen: about 2 minutes)
FLOOR = 0.6


@pytest.mark.slow
def test_the_demo_sweeps_defaults_learn(tmp_path, demo_cache):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "HF_HUB_OFFLINE": "1"}
    run_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sweep.run", f"out_dir={run_dir}", f"cache_dir={demo_cache}",
           "sweep.num_samples=1", "sweep.space.training.lr=[5e-4]", "sweep.final_test=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=SWEEP_S, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    best = summary["best"]
    assert best["metric"] >= FLOOR, summary["trials"]
    assert best["result"]["val_roc_auc"] >= 0.85
    study = optuna.load_study(study_name="sweep/search", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert study.best_value == best["metric"]  # the searcher learned the kept checkpoint's metric
