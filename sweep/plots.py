"""PNG plots of a sweep, drawn by Optuna's matplotlib functions from the sweep's own study.

Optuna draws; this module adds what Optuna cannot know about this sweep: the metric's name on
every axis, which directory a trial number is (``trial_NNNN``), and why each trial stopped, as a
colour with a legend, so that a short curve reads as ASHA or early stopping, not as a bad trial.
Each plot has a pure ``*_figure(study, metric_name)`` (None when there is nothing to draw) that
the tests inspect; ``write_plots`` saves them and never lets a plot crash the sweep.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import optuna.visualization.matplotlib as ovm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from sweep.trials import STOP_REASONS  # noqa: E402

HISTORY_PNG = "optimization_history.png"
CURVES_PNG = "learning_curves.png"
IMPORTANCES_PNG = "param_importances.png"
SLICE_PNG = "slice.png"
BEST_SO_FAR = "best so far"
# one colour per stop reason, in legend order
REASON_COLORS = dict(zip(STOP_REASONS, ("tab:green", "tab:orange", "tab:blue", "tab:red", "tab:gray"), strict=True))
LEGEND_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": 8}  # never over a point
log = logging.getLogger(__name__)


@contextmanager
def _optuna_drawing() -> Iterator[None]:
    """Optuna's plot functions are experimental (a warning per call) and switch the global style
    to ggplot; keep both local to the call."""
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")
        yield


def _reason(trial: FrozenTrial) -> str:
    return trial.user_attrs.get("stop_reason", trial.state.name.lower())


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _value_label(metric_name: str) -> str:
    return f"validation {metric_name} (best epoch)"


def _trial_axis_label(study: optuna.Study) -> str:
    """Optuna numbers trials across stages; say how a number maps back to its directory."""
    starts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        starts.setdefault(t.user_attrs.get("stage", ""), t.number)
    later = [f"{stage}/trial_0000 is number {n}" for stage, n in starts.items() if n > 0]
    return "trial number (= NNNN of trial_NNNN" + "".join(f"; {s}" for s in later) + ")"


def _reason_legend(ax: plt.Axes, title: str) -> None:
    """One entry per stop reason that occurs, in REASON_COLORS order, then any other label."""
    handles, labels = ax.get_legend_handles_labels()
    handles = dict(zip(labels, handles, strict=True))  # a reason drawn twice is listed once
    order = [r for r in REASON_COLORS if r in handles] + [k for k in handles if k not in REASON_COLORS]
    ax.legend([handles[k] for k in order], order, title=title, title_fontsize=8, **LEGEND_OUTSIDE)


def history_figure(study: optuna.Study, metric_name: str) -> Figure | None:
    """Each trial's best validation metric against its number, coloured by why it stopped.

    Optuna draws every COMPLETE value in one colour and leaves failed and unfinished trials out;
    here each stop reason gets its colour, and a trial without a value that reported epochs is an
    x at its best epoch (not counted in the best-so-far line). None without a COMPLETE trial."""
    if not _complete(study):
        return None
    with _optuna_drawing():
        ax = ovm.plot_optimization_history(study, target_name=_value_label(metric_name))
        for collection in list(ax.collections):
            collection.remove()
        ax.lines[0].set(label=BEST_SO_FAR, drawstyle="steps-post")  # the best only changes at a trial
        crosses = [_history_point(ax, t) for t in study.get_trials(deepcopy=False)].count("x")
        ax.set(title=f"Optimization history: validation {metric_name}", xlabel=_trial_axis_label(study))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _reason_legend(ax, "why the trial stopped" + ("\n(x: no final value,\nits best epoch)" if crosses else ""))
        ax.figure.set_size_inches(8, 4.5)
    return ax.figure


def _history_point(ax: plt.Axes, t: FrozenTrial) -> str | None:
    """Draw the trial's point; its marker, or None for a trial with nothing to show."""
    complete = t.state == TrialState.COMPLETE
    value = t.value if complete else max(t.intermediate_values.values(), default=None)
    if value is None:
        return None
    marker = "o" if complete else "x"
    ax.scatter(t.number, value, color=REASON_COLORS.get(_reason(t), "black"), label=_reason(t), zorder=3,
               marker=marker)
    return marker


def curves_figure(study: optuna.Study, metric_name: str) -> Figure | None:
    """Validation metric per epoch of every trial that reported one, coloured by why it stopped,
    each line numbered at its end. Drawn on Optuna's intermediate-values axes, which colour
    trials only apart and leave out failed ones. None when no trial reported an epoch."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    with _optuna_drawing():
        ax = ovm.plot_intermediate_values(study)
        for line in list(ax.lines):
            line.remove()
        ends: dict[tuple[int, float], list[str]] = {}  # lines that end at one point share one label
        for t in trials:
            epochs, values = zip(*sorted(t.intermediate_values.items()), strict=True)
            ax.plot(epochs, values, marker="o", markersize=4, alpha=0.8, label=_reason(t),
                    color=REASON_COLORS.get(_reason(t), "black"))
            ends.setdefault((epochs[-1], values[-1]), []).append(str(t.number))
        for end, numbers in ends.items():
            ax.annotate(",".join(numbers), end, xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
        ax.set_xlim(0.7, max(max(t.intermediate_values) for t in trials) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"Learning curves: validation {metric_name} per epoch", xlabel="epoch",
               ylabel=f"validation {metric_name}")
        _reason_legend(ax, "why the trial stopped\n(number at line end = trial)")
        ax.figure.set_size_inches(8, 4.5)
    return ax.figure


def importances_figure(study: optuna.Study, metric_name: str) -> Figure | None:
    """Optuna's parameter importances (PED-ANOVA) over the params that varied. None with fewer than
    2 COMPLETE trials, no varying param or a constant metric: Optuna then answers equal shares
    (with a warning), or a share for a param that never changed, which reads as a finding."""
    complete = _complete(study)
    names = sorted({k for t in complete for k in t.params})
    varied = [k for k in names if len({repr(t.params.get(k)) for t in complete}) > 1]
    if len(complete) < 2 or not varied or len({t.value for t in complete}) < 2:
        return None
    with _optuna_drawing():
        ax = ovm.plot_param_importances(study, params=varied, target_name=_value_label(metric_name))
        ax.get_legend().remove()  # one bar series, named in the title
        ax.set_title(f"Parameter importance for validation {metric_name}\n"
                     f"(PED-ANOVA over {len(complete)} complete trials; params that never varied left out)",
                     loc="left", fontsize=10)
        ax.set(xlabel=f"importance for validation {metric_name} (shares sum to 1)", ylabel="parameter")
        ax.figure.set_size_inches(8, 4.5)
        ax.figure.tight_layout()
    return ax.figure


def slice_figure(study: optuna.Study, metric_name: str) -> Figure | None:
    """Optuna's slice plot: each COMPLETE trial's metric against each param, shaded by trial
    number. None without a COMPLETE trial."""
    if not _complete(study):
        return None
    with _optuna_drawing():
        axes = ovm.plot_slice(study, target_name=_value_label(metric_name))
        fig = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        fig.suptitle(f"Slice: validation {metric_name} (best epoch) against each parameter")
        fig.axes[-1].set_ylabel("trial number")  # the colour bar
        fig.axes[-1].yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in fig.axes[:-1]:
            if ax.get_xscale() == "log":
                _readable_log_ticks(ax)
    return fig


def _readable_log_ticks(ax: plt.Axes) -> None:
    """Matplotlib labels every minor tick of a log axis spanning under ~2 decades (a learning
    rate's), and in a narrow subplot they overlap; label 1 and 3 of each decade instead."""
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")  # legends sit outside the axes
    return path


def write_plots(run_dir: str | Path, study: optuna.Study, metric_name: str) -> list[Path]:
    """Write every plot that can be drawn into run_dir and return their paths; with no trials
    nothing. A plot that fails is logged and skipped: a sweep never fails on its pictures."""
    if not study.trials:
        return []
    makers: dict[str, Callable[[optuna.Study, str], Figure | None]] = {
        HISTORY_PNG: history_figure, CURVES_PNG: curves_figure, IMPORTANCES_PNG: importances_figure,
        SLICE_PNG: slice_figure}
    written = []
    for name, make in makers.items():
        before = set(plt.get_fignums())
        try:
            fig = make(study, metric_name)
            if fig is not None:
                written.append(_save(fig, Path(run_dir) / name))
        except Exception as e:  # noqa: BLE001 - a plot must never fail the sweep
            log.warning("could not draw %s: %s: %s", name, type(e).__name__, e)
        finally:
            for number in set(plt.get_fignums()) - before:  # also a figure a failed plot left open
                plt.close(number)
    return written
