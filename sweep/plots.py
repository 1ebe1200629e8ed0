"""PNG plots of a sweep: optimization history, learning curves, metric vs the important parameters.

Parameter importance comes from Optuna (fANOVA over a study rebuilt from the trial records)
when there are enough finished trials for it to mean something, else from the absolute Spearman
correlation with the best metric, which is honest about how little a handful of trials says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from sweep.summary import METRIC, TrialRecord  # noqa: E402

HISTORY_PNG = "optimization_history.png"
CURVES_PNG = "learning_curves.png"
PARAMS_PNG = "metric_vs_params.png"
MIN_TRIALS_FOR_FANOVA = 8
COLORS = {"finished": "tab:green", "asha": "tab:orange", "early_stop": "tab:blue", "error": "tab:red",
          "unfinished": "tab:gray"}


def importances(records: Sequence[TrialRecord], space: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Parameter -> importance (higher = matters more), and the method used."""
    scored = [r for r in records if r.best_metric is not None]
    keys = [k for k in space if len({_key(r.params.get(k)) for r in scored}) > 1]
    if not keys:
        return {}, "none"
    if len(scored) >= MIN_TRIALS_FOR_FANOVA:
        try:
            study = _study(scored, {k: space[k] for k in keys})
            return dict(optuna.importance.get_param_importances(study)), "fanova"
        except (ValueError, RuntimeError):
            pass
    frame = pd.DataFrame([{**{k: r.params.get(k) for k in keys}, METRIC: r.best_metric} for r in scored])
    for k in keys:  # categorical strings: their rank among the choices seen
        if frame[k].dtype == object:
            frame[k] = frame[k].astype(str).astype("category").cat.codes
    corr = frame.corr(method="spearman")[METRIC].drop(METRIC).abs().fillna(0.0)
    return dict(corr.sort_values(ascending=False)), "spearman"


def _study(records: Sequence[TrialRecord], space: dict[str, Any]) -> optuna.Study:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for k, spec in space.items():
        if isinstance(spec, list):
            dists[k] = CategoricalDistribution(spec)
        elif spec["type"] == "int":
            dists[k] = IntDistribution(int(spec["low"]), int(spec["high"]))
        else:
            dists[k] = FloatDistribution(spec["low"], spec["high"], log=spec["type"] == "loguniform")
    study = optuna.create_study(direction="maximize")
    for r in records:
        params = {k: r.params[k] for k in dists if k in r.params}
        if len(params) == len(dists):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=r.best_metric))
    return study


def _key(value: Any) -> str:
    return repr(value)


def plot_history(records: Sequence[TrialRecord], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    running, best = [], -math.inf
    for i, r in enumerate(records):
        if r.best_metric is not None:
            ax.scatter(i, r.best_metric, color=COLORS.get(r.stop_reason, "black"), zorder=3)
            best = max(best, r.best_metric)
        running.append(best if best > -math.inf else np.nan)
    ax.step(range(len(records)), running, where="post", color="black", label="best so far")
    for reason, color in COLORS.items():
        ax.scatter([], [], color=color, label=reason)
    ax.set_xlabel("trial (in creation order)")
    ax.set_ylabel(f"best validation {METRIC}")
    ax.set_title("Optimization history")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_curves(records: Sequence[TrialRecord], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in records:
        if r.history:
            ax.plot([h["epoch"] for h in r.history], [h[METRIC] for h in r.history], marker="o",
                    color=COLORS.get(r.stop_reason, "black"), alpha=0.7)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {METRIC}")
    ax.set_title("Learning curves (colour = why the trial stopped)")
    _save(fig, path)


def plot_params(records: Sequence[TrialRecord], space: dict[str, Any], path: Path, top: int = 4) -> None:
    ranked, method = importances(records, space)
    keys = list(ranked)[:top] or list(space)[:top]
    scored = [r for r in records if r.best_metric is not None]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        xs = [r.params.get(key) for r in scored]
        ys = [r.best_metric for r in scored]
        colors = [COLORS.get(r.stop_reason, "black") for r in scored]
        if xs and all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs):
            ax.scatter(xs, ys, c=colors)
            spec = space.get(key)
            if isinstance(spec, dict) and spec.get("type") == "loguniform":
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], ys, c=colors)
            ax.set_xticks(range(len(labels)), labels)
        score = ranked.get(key)
        ax.set_title(f"{key}" + (f"\n{method} {score:.2f}" if score is not None else ""), fontsize=8)
        ax.set_ylabel(f"best {METRIC}")
    fig.suptitle("Metric against the most important parameters", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(run_dir: str | Path, records: Sequence[TrialRecord], space: dict[str, Any]) -> list[Path]:
    """All plots of a run; with no trials (nothing ran yet) nothing is written."""
    run_dir = Path(run_dir)
    if not records:
        return []
    paths = [run_dir / HISTORY_PNG, run_dir / CURVES_PNG, run_dir / PARAMS_PNG]
    plot_history(records, paths[0])
    plot_curves(records, paths[1])
    plot_params(records, space, paths[2])
    return paths
