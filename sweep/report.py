"""``python -m sweep.report RUN_DIR``: the leaderboard, and summary/plots rewritten from disk."""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from data_prep.config import doc
from plumbing import storage
from plumbing.cli import parse_config, run_cli
from plumbing.errors import UserError
from sweep.layout import SUMMARY_FILE, TRIALS_FILE
from sweep.plots import PLOT_FILES, importances_skipped, write_plots
from sweep.study import build_study, stored_trials
from sweep.summary import leaderboard, read_space, sweep_config, write_summary
from trainable.model_card import write_model_card

DESCRIPTION = """
Print the leaderboard of a sweep (python -m sweep.run) and rewrite its summary.json,
trials.parquet, best_checkpoint/ and plots from the trial directories. Works on a finished,
interrupted or still running sweep, in a local directory or at a URI (s3://bucket/prefix).
summary.json is checked against its JSON Schema (sweep/schemas/summary.schema.json) first and
not written when it would break it.
"""


@dataclass
class ReportConfig:
    run_dir: str = doc("the sweep's out_dir", MISSING)
    top: int = doc("rows of the leaderboard", 10)


def refresh(run_dir: str | Path) -> dict[str, Any]:
    """Rewrite everything derived from the trials; returns the summary (with the plots' names)."""
    run_dir = storage.absolute(run_dir)  # Tune/pyarrow read a relative path as a URI and fail
    summary, records = write_summary(run_dir)
    best = summary["best"]
    if best and best.get("checkpoint"):  # the card beside the model, with the test metrics when they exist
        name = posixpath.basename(run_dir.rstrip("/"))
        write_model_card(best["checkpoint"], summary.get("test"), best["params"], name)
    study = build_study(records, read_space(run_dir), run_dir, stored_trials(run_dir, sweep_config(run_dir)))
    with tempfile.TemporaryDirectory(prefix="sweep-plots-") as tmp:
        local = run_dir if not storage.is_uri(run_dir) else tmp
        summary["plots"] = [p.name for p in write_plots(local, study, summary["primary_metric"])]
        for stale in set(PLOT_FILES) - set(summary["plots"]):  # an earlier refresh's picture would mislead
            storage.delete_file(storage.join(run_dir, stale))
        summary["plots_left_out"] = [why for why in [importances_skipped(study)] if why and study.trials]
        if local == tmp:
            storage.upload_dir(tmp, run_dir)
    return summary


def main(argv: list[str]) -> None:
    cfg = parse_config(ReportConfig, argv, "sweep.report", DESCRIPTION, positional="run_dir")
    if OmegaConf.is_missing(cfg, "run_dir") or not cfg.run_dir:
        raise UserError("give the sweep's run directory: python -m sweep.report RUN_DIR")
    summary = refresh(cfg.run_dir)
    print(leaderboard(summary, cfg.top))
    plots = ", ".join(summary["plots"]) or "no plots (no trial has results yet)"
    print(f"wrote {storage.join(summary['run_dir'], SUMMARY_FILE)}, {TRIALS_FILE}; {plots}")
    for why in summary["plots_left_out"]:
        print(why)


if __name__ == "__main__":
    run_cli(main)
