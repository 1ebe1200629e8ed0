"""summary.json / trials.parquet / plots / leaderboard, rebuilt from a real Tune experiment on disk.

The trials are plain Tune functions (no training; tests/sweep_fakes.py) so the tests are about what
the sweep leaves, not about models: in stage 1 one raises, ASHA stops the weak ones, the rest finish;
stage 2 searches around the best two; the best is retrained over three seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf
from sweep_fakes import EPOCHS, FAILING_LR, LRS, RETRAIN_SEEDS, STAGE2_SAMPLES, read_results

from plumbing.cli import parse_config
from sweep.config import SweepConfig
from sweep.layout import STOPS_FILE
from sweep.report import refresh
from sweep.space import space_from_json
from sweep.summary import leaderboard
from sweep.trials import read_error, stop_reason, trial_augment


@pytest.fixture(scope="module")
def run_dir(fake_sweep):
    return fake_sweep.run_dir


def stage(summary: dict, name: str) -> list[dict]:
    return [t for t in summary["trials"] if t["experiment"] == name]


@pytest.mark.slow
def test_summary_holds_every_trial_once_with_why_it_stopped(run_dir):
    summary = refresh(run_dir)
    trials = summary["trials"]
    assert sorted(t["params"]["training.lr"] for t in stage(summary, "search")) == sorted(LRS)
    assert len({t["trial_id"] for t in trials}) == summary["num_trials"] == len(LRS) + STAGE2_SAMPLES
    by_lr = {t["params"]["training.lr"]: t for t in stage(summary, "search")}

    failed = by_lr[FAILING_LR]
    assert failed["stop_reason"] == "error" and failed["state"] == "ERROR"
    assert "CUDA out of memory (simulated)" in failed["error"]
    assert failed["epochs_run"] == 0 and failed["best_metric"] is None

    best = by_lr[1e-3]  # runs first, so ASHA has nothing to stop it against
    assert best["stop_reason"] == "finished" and best["epochs_run"] == EPOCHS
    assert best["best_metric"] == pytest.approx(1.0) and best["best_epoch"] == EPOCHS
    assert summary["best"]["params"] == {"training.lr": 1e-3}
    assert summary["best"]["metric"] == pytest.approx(1.0)

    stopped = [t for t in trials if t["stop_reason"] == "asha"]
    assert stopped, "ASHA should stop the weak learning rates at a rung"
    assert all(t["epochs_run"] < EPOCHS for t in stopped)
    recorded = {json.loads(line)["trial_id"] for line in (run_dir / STOPS_FILE).read_text().splitlines()}
    assert {t["trial_id"] for t in stopped} <= recorded
    assert summary["counts"]["asha"] == len(stopped)
    assert summary["total_epochs"] == sum(t["epochs_run"] for t in trials)
    assert {t["augment"] for t in trials} == {"off"}


@pytest.mark.slow
def test_trials_table_and_plots_are_written(run_dir):
    summary = refresh(run_dir)
    frame = pd.read_parquet(run_dir / "trials.parquet")
    assert len(frame) == len(LRS) + STAGE2_SAMPLES
    assert set(LRS) < set(frame["param:training.lr"])
    assert {"stop_reason", "best_metric", "epochs_run", "error"} <= set(frame.columns)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["best"] == summary["best"]
    for name in summary["plots"]:
        png = (run_dir / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_leaderboard_ranks_by_best_metric_and_shows_the_error(run_dir):
    text = leaderboard(refresh(run_dir))
    lines = text.splitlines()
    assert lines[1].split()[0] == "rank"
    assert lines[2].split()[3] == "1.0000"
    assert "CUDA out of memory (simulated)" in text


@pytest.mark.slow
def test_report_command_prints_the_leaderboard(run_dir):
    (run_dir / "summary.json").unlink(missing_ok=True)  # written by the tests before, if they ran
    (run_dir / "param_importances.png").write_bytes(b"an earlier refresh's picture")
    proc = subprocess.run([sys.executable, "-m", "sweep.report", str(run_dir)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "rank" in proc.stdout and "asha" in proc.stdout
    assert (run_dir / "summary.json").is_file()
    assert "param_importances.png left out: 8 complete trial(s)" in proc.stdout  # says why it is missing
    assert not (run_dir / "param_importances.png").exists()  # and no older one stays to mislead


def test_stop_reason_rules():
    hist = pd.DataFrame({"epoch": [1, 2, 3], "metric": [0.5, 0.4, 0.3]})
    assert stop_reason("TERMINATED", hist, 3, None, 2, None) == "finished"
    assert stop_reason("TERMINATED", hist, 5, None, 2, None) == "early_stop"
    assert stop_reason("TERMINATED", hist, 5, 3, 2, None) == "asha"
    assert stop_reason("TERMINATED", hist.head(1), 5, None, 2, None) == "unfinished"
    assert stop_reason("ERROR", hist, 5, None, 2, "boom") == "error"
    assert stop_reason("RUNNING", hist, 5, None, 2, None) == "unfinished"


def test_results_keep_one_row_per_epoch_and_survive_a_cut_line(tmp_path):
    lines = [{"epoch": 1, "metric": 0.1}, {"epoch": 2, "metric": 0.2}, {"epoch": 2, "metric": 0.25},
             {"epoch": 3, "metric": 0.3}]
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"epoch": 4, "met'
    (tmp_path / "result.json").write_text(text)
    assert [(r["epoch"], r["metric"]) for r in read_results(tmp_path)] == [(1, 0.1), (2, 0.25), (3, 0.3)]


def test_error_message_is_the_exception_line(tmp_path):
    (tmp_path / "error.txt").write_text(
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\n"
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1)\n"
        "  File \"x.py\", line 3, in f\n"
        "ray.train.TrainingFailedError: Training failed due to worker errors:\n"
        "ValueError: training.batch_size 64 does not fit in memory\n")
    assert read_error(str(tmp_path)) == "ValueError: training.batch_size 64 does not fit in memory"
    assert read_error(str(tmp_path / "missing")) is None


@pytest.mark.slow
def test_second_stage_narrows_around_the_top_configs_and_retrain_reports_mean_and_std(fake_sweep):
    run_dir, cfg = fake_sweep.run_dir, fake_sweep.cfg
    narrowed = space_from_json(json.loads((run_dir / "stage2_space.json").read_text()))["training.lr"]
    assert 1e-5 < narrowed.low < 5e-4 and 1e-3 < narrowed.high < 1e-2 and narrowed.log  # around 1e-3 and 5e-4
    summary = refresh(run_dir)
    stage2 = stage(summary, "stage2")
    assert len(stage2) == STAGE2_SAMPLES
    assert all(narrowed.low <= t["params"]["training.lr"] <= narrowed.high for t in stage2)

    result = summary["retrain"]  # retrain runs are not search trials: num_trials does not count them
    assert sorted(result["seeds"]) == [cfg.seed + i for i in range(1, RETRAIN_SEEDS + 1)]
    assert result["params"] == summary["best"]["params"]
    assert result["mean"] == pytest.approx(sum(result["best_metric"]) / RETRAIN_SEEDS)
    assert result["std"] > 0


def test_trial_augment_is_the_sweep_section_with_the_searched_keys():
    from data_prep.augment import signature

    cfg = parse_config(SweepConfig, ["augment.mask=1", "augment.delete=0.2"], "sweep.run", "")
    assert trial_augment(cfg, {"training.lr": 1e-3}) == signature(cfg.augment)
    searched = trial_augment(cfg, {"augment.mask": 8, "augment.typo": 0.05})
    assert searched == signature(OmegaConf.merge(cfg.augment, {"mask": 8, "typo": 0.05}))
    assert "typo" in searched and "delete" not in searched
    assert trial_augment(parse_config(SweepConfig, [], "sweep.run", ""), {}) == "off"
