"""PNG plots of a sweep, drawn by Optuna's matplotlib functions from the sweep's own study.

Optuna draws; this module adds what Optuna cannot know about this sweep: the metric's name on
every axis, which directory a trial number is (``trial_NNNN``), and why each trial stopped, as a
colour with a legend, so that a short curve reads as ASHA or early stopping, not as a bad trial.
Each plot has a pure ``*_figure(study, metric_name)`` (None when there is nothing to draw) that
the tests inspect; ``write_plots`` saves them and never lets a plot crash the sweep.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import optuna.visualization.matplotlib as ovm  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from trainable.stop_reason import STOP_REASONS  # noqa: E402

HISTORY_PNG = "optimization_history.png"
CURVES_PNG = "learning_curves.png"
IMPORTANCES_PNG = "param_importances.png"
SLICE_PNG = "slice.png"
PLOT_FILES = (HISTORY_PNG, CURVES_PNG, IMPORTANCES_PNG, SLICE_PNG)
BEST_SO_FAR = "best so far"
MIN_IMPORTANCE_TRIALS = 10
SLICE_COLUMNS = 3
SLICE_CMAP = "viridis"  # early trials dark, late ones yellow: every point visible
# one colour per stop reason, in legend order
REASON_COLORS = dict(zip(STOP_REASONS, ("tab:green", "tab:orange", "tab:blue", "tab:red", "tab:gray"), strict=True))
# learning curves: a colour per trial, why it stopped as line style and marker
REASON_STYLES = dict(zip(STOP_REASONS, (("-", "o"), ("--", "v"), (":", "s"), ("-.", "X"), ((0, (1, 2)), ".")),
                         strict=True))
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
    """Validation metric per epoch of every trial that reported one: a colour per trial (so trials
    that end at the same value stay apart), why it stopped as the line's style and marker, each line
    numbered at its end. Drawn on Optuna's intermediate-values axes, which leave out failed trials.
    None when no trial reported an epoch."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    with _optuna_drawing():
        ax = ovm.plot_intermediate_values(study)
        for line in list(ax.lines):
            line.remove()
        ends: dict[tuple[int, float], list[str]] = {}  # lines that end at one point share one label
        colours = plt.get_cmap("tab10" if len(trials) <= 10 else "tab20").colors
        for i, t in enumerate(trials):
            epochs, values = zip(*sorted(t.intermediate_values.items()), strict=True)
            style, marker = REASON_STYLES.get(_reason(t), ("-", "."))
            ax.plot(epochs, values, linestyle=style, marker=marker, markersize=4, alpha=0.85,
                    label=f"trial {t.number}", color=colours[i % len(colours)])
            ends.setdefault((epochs[-1], values[-1]), []).append(str(t.number))
        for end, numbers in ends.items():
            ax.annotate(",".join(numbers), end, xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
        ax.set_xlim(0.7, max(max(t.intermediate_values) for t in trials) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"Learning curves: validation {metric_name} per epoch", xlabel="epoch",
               ylabel=f"validation {metric_name}")
        reasons = [r for r in REASON_STYLES if r in {_reason(t) for t in trials}]
        ax.legend([Line2D([], [], color="black", linestyle=REASON_STYLES[r][0], marker=REASON_STYLES[r][1])
                   for r in reasons], reasons, title="why the trial stopped\n(colour: one per trial;\n"
                  "number at line end = trial)", title_fontsize=8, **LEGEND_OUTSIDE)
        ax.figure.set_size_inches(8, 4.5)
    return ax.figure


def importances_skipped(study: optuna.Study) -> str | None:
    """Why the importances are not drawn, or None. Under MIN_IMPORTANCE_TRIALS complete trials
    PED-ANOVA ranks noise (two identical 6-trial sweeps ranked the parameters differently); with no
    varying param or a constant metric Optuna answers equal shares, or a share for a param that never
    changed, which reads as a finding."""
    complete = _complete(study)
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return (f"{IMPORTANCES_PNG} left out: {len(complete)} complete trial(s), parameter importances "
                f"need {MIN_IMPORTANCE_TRIALS} to rank more than noise")
    if not _varied(complete):
        return f"{IMPORTANCES_PNG} left out: no parameter varied"
    if len({t.value for t in complete}) < 2:
        return f"{IMPORTANCES_PNG} left out: every trial reached the same value"
    return None


def _varied(trials: list[FrozenTrial]) -> list[str]:
    names = sorted({k for t in trials for k in t.params})
    return [k for k in names if len({repr(t.params.get(k)) for t in trials}) > 1]


def importances_figure(study: optuna.Study, metric_name: str) -> Figure | None:
    """Optuna's parameter importances (PED-ANOVA) over the params that varied; None when
    ``importances_skipped`` says why not."""
    if importances_skipped(study):
        return None
    complete = _complete(study)
    with _optuna_drawing():
        ax = ovm.plot_param_importances(study, params=_varied(complete), target_name=_value_label(metric_name))
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
    number, laid out SLICE_COLUMNS to a row (Optuna draws one long row) on a colour scale whose
    first trial is visible (Optuna's Blues starts at white). None without a COMPLETE trial."""
    if not _complete(study):
        return None
    with _optuna_drawing():
        axes = ovm.plot_slice(study, target_name=_value_label(metric_name))
        fig = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        panels, old_bar = fig.axes[:-1], fig.axes[-1]
        dots = [c for ax in panels for c in ax.collections]
        numbers = Normalize(vmin=0, vmax=max(len(study.trials) - 1, 1))  # one scale for every panel
        for c in dots:
            c.set(cmap=SLICE_CMAP, norm=numbers)
        old_bar.remove()
        rows, cols = math.ceil(len(panels) / SLICE_COLUMNS), min(len(panels), SLICE_COLUMNS)
        fig.set_size_inches(3.6 * cols + 1.2, 3.2 * rows + 0.6)
        grid = fig.add_gridspec(rows, cols, hspace=0.55, wspace=0.3)
        for i, ax in enumerate(panels):
            ax.set_subplotspec(grid[i // cols, i % cols])
            ax.set(ylabel=_value_label(metric_name) if i % cols == 0 else "", title="")  # one panel: "Slice Plot"
            ax.tick_params(labelleft=i % cols == 0)  # Optuna's shared y axis labels its first panel only
            if ax.get_xscale() == "log":
                _readable_log_ticks(ax)
        bar = fig.colorbar(dots[-1], ax=panels, fraction=0.03, pad=0.02)
        bar.set_label("trial number")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"Slice: validation {metric_name} (best epoch) against each parameter")
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
