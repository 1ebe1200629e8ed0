"""sweep.plots on hand-made Optuna studies shaped like the sweep's (no Ray): what each plot says
(titles, labels, legends), that no trial's point goes missing, and what is written when."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from sweep import plots  # noqa: E402

METRIC = "span_f1"
SPACE = {"lr": FloatDistribution(1e-5, 1e-3, log=True), "batch_size": IntDistribution(8, 32, step=8),
         "optimizer": CategoricalDistribution(["adamw", "sgd"])}
C, F, R = TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING
TRIALS = [  # stage, stop reason, state, params, validation metric per epoch
    ("search", "finished", C, (3e-5, 16, "adamw"), [0.5, 0.6, 0.7]),
    ("search", "asha", C, (1e-4, 8, "sgd"), [0.4]),
    ("search", "early_stop", C, (5e-4, 32, "adamw"), [0.55, 0.58, 0.57]),
    ("search", "finished", C, (2e-5, 24, "sgd"), [0.3, 0.45, 0.5]),
    ("search", "error", F, (1e-3, 8, "adamw"), [0.2]),
    ("stage2", "asha", C, (4e-5, 16, "adamw"), [0.52]),
    ("stage2", "unfinished", R, (5e-5, 24, "adamw"), []),
]

# enough complete trials for parameter importances (plots.MIN_IMPORTANCE_TRIALS)
MORE = [("search", reason, C, (lr, bs, opt), curve) for reason, lr, bs, opt, curve in (
    ("finished", 6e-5, 16, "sgd", [0.2, 0.4, 0.62]), ("asha", 2e-4, 24, "adamw", [0.35]),
    ("finished", 8e-5, 32, "adamw", [0.5, 0.66, 0.69]), ("early_stop", 3e-4, 8, "sgd", [0.41, 0.4, 0.39]),
    ("asha", 7e-4, 16, "sgd", [0.25]))]


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def make_study(rows=TRIALS) -> optuna.Study:
    """The study sweep.summary builds: one trial per sweep trial, in creation order."""
    study = optuna.create_study(direction="maximize")
    counters: dict[str, int] = {}
    for stage, reason, state, values, curve in rows:
        n = counters[stage] = counters.get(stage, -1) + 1
        study.add_trial(create_trial(
            state=state, params=dict(zip(SPACE, values, strict=True)), distributions=SPACE,
            value=max(curve) if state == C else None, intermediate_values=dict(enumerate(curve, 1)),
            user_attrs={"trial": f"{stage}/trial_{n:04d}_abcd1234", "trial_id": f"abcd{n}", "stage": stage,
                        "stop_reason": reason, "epochs_run": len(curve), "planned_epochs": 3}))
    return study


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def points(ax) -> set[tuple[float, float]]:
    return {(float(x), float(y)) for c in ax.collections for x, y in c.get_offsets()}


@pytest.fixture
def study() -> optuna.Study:
    return make_study()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_history_names_the_metric_maps_numbers_to_directories_and_shows_every_trial(study):
    ax = plots.history_figure(study, METRIC).axes[0]
    assert METRIC in ax.get_title() and ax.get_ylabel() == f"validation {METRIC} (best epoch)"
    assert "NNNN of trial_NNNN" in ax.get_xlabel() and "stage2/trial_0000 is number 5" in ax.get_xlabel()
    assert legend_texts(ax) == ["finished", "asha", "early_stop", "error", plots.BEST_SO_FAR]
    complete = {(t.number, t.value) for t in study.trials if t.state == C}
    assert points(ax) == complete | {(4, 0.2)}  # every COMPLETE value; the failed trial at its best epoch
    x_lo, x_hi = ax.get_xlim()
    y_lo, y_hi = ax.get_ylim()
    assert all(x_lo < x < x_hi and y_lo < y < y_hi for x, y in points(ax))
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # outside: hides no point


def test_history_legend_lists_only_reasons_that_occurred():
    rows = [r for r in TRIALS if r[1] == "finished"]
    ax = plots.history_figure(make_study(rows), "f1").axes[0]
    assert legend_texts(ax) == ["finished", plots.BEST_SO_FAR]
    assert ax.get_legend().get_title().get_text() == "why the trial stopped"  # no x, no note about it
    assert "stage2" not in ax.get_xlabel()


def test_learning_curves_give_each_trial_a_colour_and_each_stop_reason_a_style(study):
    ax = plots.curves_figure(study, METRIC).axes[0]
    assert METRIC in ax.get_title() and ax.get_ylabel() == f"validation {METRIC}" and ax.get_xlabel() == "epoch"
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    assert [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi] == ["1", "2", "3"]
    drawn = [t for t in study.trials if t.intermediate_values]  # the running trial has no epoch
    assert [tuple(line.get_ydata()) for line in ax.lines] == [tuple(t.intermediate_values.values()) for t in drawn]
    assert len({matplotlib.colors.to_hex(line.get_color()) for line in ax.lines}) == len(drawn)
    legend = dict(zip(legend_texts(ax), ax.get_legend().legend_handles, strict=True))
    assert list(legend) == ["finished", "asha", "early_stop", "error"]
    for reason, handle in legend.items():
        assert handle.get_marker() == plots.REASON_STYLES[reason][1]
        assert {(line.get_linestyle(), line.get_marker()) for line, t in zip(ax.lines, drawn, strict=True)
                if t.user_attrs["stop_reason"] == reason} == {(handle.get_linestyle(), handle.get_marker())}
    assert {t.get_text() for t in ax.texts} == {"0", "1", "2", "3", "4", "5"}  # each line's trial number


def test_lines_that_end_at_one_point_share_one_label():
    study = make_study([("search", "finished", C, (3e-5, 16, "adamw"), [0.5, 0.6]),
                        ("search", "finished", C, (1e-4, 8, "sgd"), [0.4, 0.6]),
                        ("search", "asha", C, (5e-4, 32, "adamw"), [0.3])])
    ax = plots.curves_figure(study, METRIC).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0,1", "2"]


def test_importances_name_the_metric_and_only_varied_params():
    ax = plots.importances_figure(make_study(TRIALS + MORE), METRIC).axes[0]
    assert METRIC in ax.get_title(loc="left") and METRIC in ax.get_xlabel()
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == sorted(SPACE)
    same_optimizer = make_study([(*r[:3], (*r[3][:2], "sgd"), r[4]) for r in TRIALS + MORE])
    ax = plots.importances_figure(same_optimizer, METRIC).axes[0]
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["batch_size", "lr"]


@pytest.mark.parametrize(("rows", "why"), [
    (TRIALS, "5 complete trial(s), parameter importances need 10"),
    ([(*r[:3], TRIALS[0][3], r[4]) for r in TRIALS + MORE], "no parameter varied"),
    ([(*r[:4], [0.5]) for r in TRIALS + MORE], "every trial reached the same value"),
], ids=["too-few-complete", "no-param-varies", "constant-metric"])
def test_importances_are_left_out_saying_why_when_they_would_mean_nothing(rows, why):
    study = make_study(rows)
    assert plots.importances_figure(study, METRIC) is None
    assert why in plots.importances_skipped(study)


def test_slice_puts_the_metric_on_y_for_every_param_in_a_grid():
    wide = {**SPACE, "dropout": FloatDistribution(0.0, 0.3), "warmup": FloatDistribution(0.0, 0.2)}
    study = optuna.create_study(direction="maximize")
    for t in make_study().trials:  # five params: two rows of three
        study.add_trial(create_trial(state=t.state, value=t.value, distributions=wide,
                                     params={**t.params, "dropout": 0.1 * (t.number % 3), "warmup": 0.02 * t.number}))
    fig = plots.slice_figure(study, METRIC)
    *param_axes, colour_bar = fig.axes
    assert METRIC in fig.get_suptitle() and colour_bar.get_ylabel() == "trial number"
    assert sorted(ax.get_xlabel() for ax in param_axes) == sorted(wide)
    assert [ax.get_subplotspec().rowspan.start for ax in param_axes] == [0, 0, 0, 1, 1]
    assert [bool(ax.get_ylabel()) for ax in param_axes] == [True, False, False, True, False]
    n_complete = sum(t.state == C for t in study.trials)
    assert all(sum(len(c.get_offsets()) for c in ax.collections) == n_complete for ax in param_axes)
    lightest = plt.get_cmap(plots.SLICE_CMAP)(colour_bar.get_ylim()[0] / max(colour_bar.get_ylim()[1], 1))
    assert sum(lightest[:3]) < 2.7  # the first trial's colour is not white


def test_write_plots_writes_readable_pngs_and_closes_its_figures(tmp_path):
    paths = plots.write_plots(tmp_path, make_study(TRIALS + MORE), METRIC)
    names = [plots.HISTORY_PNG, plots.CURVES_PNG, plots.IMPORTANCES_PNG, plots.SLICE_PNG]
    assert paths == [tmp_path / n for n in names]
    for path in paths:
        image = mpimg.imread(path)
        assert image.shape[0] >= 300 and image.shape[1] >= 500 and image.shape[2] in (3, 4)
        assert np.ptp(image[..., :3]) > 0.5  # drawn, not blank
    assert plt.get_fignums() == []
    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's ggplot style did not leak


def test_no_trials_write_nothing(tmp_path):
    assert plots.write_plots(tmp_path, optuna.create_study(direction="maximize"), METRIC) == []
    assert list(tmp_path.iterdir()) == []


def test_one_complete_trial_writes_what_can_be_drawn(tmp_path):
    paths = plots.write_plots(tmp_path, make_study([TRIALS[0], TRIALS[4], TRIALS[6]]), METRIC)
    assert [p.name for p in paths] == [plots.HISTORY_PNG, plots.CURVES_PNG, plots.SLICE_PNG]


def test_only_failed_trials_still_get_their_learning_curves(tmp_path):
    paths = plots.write_plots(tmp_path, make_study([TRIALS[4], TRIALS[6]]), METRIC)
    assert [p.name for p in paths] == [plots.CURVES_PNG]


def test_a_plot_that_raises_is_skipped_not_fatal(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        plt.figure()
        raise RuntimeError("optuna changed")

    monkeypatch.setattr(plots.ovm, "plot_slice", broken)
    paths = plots.write_plots(tmp_path, make_study(TRIALS + MORE), METRIC)
    assert plots.SLICE_PNG not in [p.name for p in paths] and len(paths) == 3
    assert plt.get_fignums() == []
