"""``python -m sweep.report RUN_DIR``: the leaderboard, and summary/plots rewritten from disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from data_prep.config import doc
from plumbing.cli import parse_config, run_cli
from plumbing.errors import UserError
from sweep.plots import write_plots
from sweep.summary import SPACE_FILE, leaderboard, write_summary

DESCRIPTION = """
Print the leaderboard of a sweep (python -m sweep.run) and rewrite its summary.json,
trials.parquet, best_checkpoint/ and plots from the trial directories on disk. Works on a
finished, interrupted or still running sweep. summary.json is checked against its JSON Schema
(sweep/schemas/summary.schema.json) first and not written when it would break it.
"""


@dataclass
class ReportConfig:
    run_dir: str = doc("the sweep's out_dir", MISSING)
    top: int = doc("rows of the leaderboard", 10)


def refresh(run_dir: str | Path) -> dict[str, Any]:
    """Rewrite everything derived from the trials; returns the summary."""
    run_dir = Path(run_dir).expanduser().resolve()  # Tune/pyarrow read a relative path as a URI and fail
    summary, records = write_summary(run_dir)
    space_path = run_dir / SPACE_FILE
    space = json.loads(space_path.read_text()) if space_path.is_file() else {}
    summary["plots"] = [p.name for p in write_plots(run_dir, records, space)]
    return summary


def main(argv: list[str]) -> None:
    cfg = parse_config(ReportConfig, argv, "sweep.report", DESCRIPTION, positional="run_dir")
    if OmegaConf.is_missing(cfg, "run_dir") or not cfg.run_dir:
        raise UserError("give the sweep's run directory: python -m sweep.report RUN_DIR")
    cfg.run_dir = str(Path(cfg.run_dir).expanduser().resolve())
    summary = refresh(cfg.run_dir)
    print(leaderboard(summary, cfg.top))
    plots = ", ".join(summary["plots"]) or "no plots (no trial has results yet)"
    print(f"wrote {Path(cfg.run_dir) / 'summary.json'}, trials.parquet; {plots}")


if __name__ == "__main__":
    run_cli(main)
