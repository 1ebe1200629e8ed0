"""MLflow tracking (tracking.mlflow=true): a real tiny sweep logged to a temporary sqlite store, read back
with MLflow's client; a sweep whose store is unusable still finishes, with one warning.

Skipped when mlflow is not installed (it is the optional extra: pip install '.[mlflow]').
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray_helpers
from omegaconf import OmegaConf
from sweep_fakes import read_results

from plumbing.errors import ConfigError
from sweep.config import SweepConfig, resolve_tracking_uri, validate_tracking

pytest.importorskip("mlflow")

EPOCHS = 2
EXPERIMENT = "tracking-test"


def sweep_args(tmp: Path, cache: str, uri: str, *extra: str) -> list[str]:
    return ["task=pair", f"out_dir={tmp / 'run'}", f"cache_dir={cache}", "data.demo_posts=60",
            f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=32", "seed=0",
            "sweep.scheduler=fifo", "sweep.verbose=0", "sweep.startup_trials=2",
            "sweep.space.training.lr=[1e-3,3e-3]", "sweep.space.training.batch_size=null",
            "sweep.space.features.max_length=[64]", "tracking.mlflow=true", f"tracking.tracking_uri={uri}",
            *extra]


def tracking_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sweep.tracking"]


@pytest.fixture(scope="module")
def local_ray():
    from raycluster.connect import set_ray_env

    set_ray_env()
    with ray_helpers.local_ray(num_cpus=2, logging_level="ERROR"):  # never an unrelated running Ray
        yield


def run_sweep(args: list[str]):
    from sweep_fakes import load_config

    from sweep.run import run

    cfg, dists = load_config(args)
    return cfg, run(cfg, dists)


@pytest.fixture(scope="module")
def tracked(local_ray, demo_cache, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"  # tmp is absolute: sqlite:////...
    cfg, summary = run_sweep(sweep_args(tmp, demo_cache, uri, "sweep.num_samples=2",
                                        f"tracking.experiment={EXPERIMENT}"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    by_trial = {r.data.tags["sweep.trial_id"]: r for r in runs}
    return SimpleNamespace(cfg=cfg, summary=summary, client=client, runs=runs, by_trial=by_trial, tmp=tmp)


@pytest.mark.slow
def test_one_finished_run_per_trial_with_its_params(tracked):
    trials = tracked.summary["trials"]
    assert len(trials) == 2 and len(tracked.runs) == 2
    assert set(tracked.by_trial) == {t["trial_id"] for t in trials}
    for t in trials:
        run = tracked.by_trial[t["trial_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["sweep.stage"] == "search" and run.data.tags["sweep.run_dir"] == tracked.cfg.out_dir
        assert run.data.params == {k: str(v) for k, v in t["params"].items()}
        assert "training.lr" in run.data.params and "training.dropout" in run.data.params


@pytest.mark.slow
def test_every_epoch_is_a_step_of_the_metric_history(tracked):
    for t in tracked.summary["trials"]:
        run_id = tracked.by_trial[t["trial_id"]].info.run_id
        reported = read_results(Path(t["path"]))
        for key in ("metric", "val_f1", "train_loss"):
            history = sorted(tracked.client.get_metric_history(run_id, key), key=lambda m: m.step)
            assert [m.step for m in history] == list(range(1, EPOCHS + 1)), key
            assert [m.value for m in history] == pytest.approx([r[key] for r in reported])
        assert "training_iteration" not in tracked.by_trial[t["trial_id"]].data.metrics


@pytest.mark.slow
def test_each_run_carries_the_resolved_trial_config(tracked):
    for t in tracked.summary["trials"]:
        run_id = tracked.by_trial[t["trial_id"]].info.run_id
        target = tracked.tmp / "artifacts" / run_id
        target.mkdir(parents=True)
        path = tracked.client.download_artifacts(run_id, "config.yaml", str(target))
        config = OmegaConf.merge(OmegaConf.structured(SweepConfig), OmegaConf.load(path))
        assert config.task == "pair" and config.training.epochs == EPOCHS
        assert config.training.lr == pytest.approx(t["params"]["training.lr"])
        assert config.features.max_length == 64 and config.tracking.mlflow is True
    # Artifacts stay beside the database, not in the cwd's ./mlruns.
    assert (tracked.tmp / "store" / "mlartifacts").is_dir()


@pytest.mark.slow
def test_the_best_run_records_the_best_checkpoint_and_the_test_metrics(tracked):
    best = tracked.summary["best"]
    marked = [r for r in tracked.runs if r.data.tags.get("sweep.best") == "true"]
    assert [r.data.tags["sweep.trial_id"] for r in marked] == [best["trial_id"]]
    checkpoint = marked[0].data.tags["best_checkpoint"]
    assert checkpoint == best["checkpoint"] and (Path(checkpoint) / "model.pt").is_file()
    test = tracked.summary["test"]
    assert marked[0].data.metrics["test_f1"] == pytest.approx(test["f1"])


@pytest.mark.slow
def test_an_unusable_store_warns_once_and_the_sweep_finishes(local_ray, demo_cache, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        _, summary = run_sweep(sweep_args(tmp_path, demo_cache, uri, "sweep.num_samples=1", "training.epochs=1",
                                          "sweep.final_test=false"))
    assert summary["best"] is not None and summary["counts"] == {"finished": 1}
    warnings = tracking_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(blocker) in warnings[0] and "tracking.tracking_uri" in warnings[0]


def test_a_resumed_stage_continues_the_trials_runs(tmp_path):
    """Tune restores the callback from its pickled state: the trial's run goes on, no second run."""
    import ray.cloudpickle as pickle
    from mlflow.tracking import MlflowClient

    from sweep.tracking import MlflowCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = OmegaConf.to_container(OmegaConf.structured(SweepConfig), resolve=True)
    trial = SimpleNamespace(trial_id="abc_00000", config={"training.lr": 0.001})  # what the callback reads
    first = MlflowCallback(uri, "resume", str(tmp_path / "run"), "search", base)
    first.setup()
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"epoch": 1, "metric": 0.5, "done": False})
    second = pickle.loads(pickle.dumps(first))  # the sweep was interrupted, then resumed
    second.setup()
    second.log_trial_start(trial)
    second.log_trial_result(1, trial, {"epoch": 2, "metric": 0.75, "done": False})
    second.log_trial_end(trial)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "metric")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.75)]
    assert "done" not in runs[0].data.metrics


def test_without_mlflow_tracking_warns_once_how_to_install_it(monkeypatch, caplog):
    from sweep.tracking import open_store

    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        assert open_store("sqlite:////nowhere/never-installed.db", "x") is None
        assert open_store("sqlite:////nowhere/never-installed.db", "x") is None
    warnings = tracking_warnings(caplog)
    assert len(warnings) == 1 and "pip install '.[mlflow]'" in warnings[0]


def test_relative_stores_are_resolved_against_out_dir(tmp_path):
    out = tmp_path / "run"
    assert resolve_tracking_uri("sqlite:///mlflow.db", out) == f"sqlite:///{out / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///sub/m.db", out) == f"sqlite:///{out / 'sub' / 'm.db'}"
    assert resolve_tracking_uri("sqlite:////abs/m.db", out) == "sqlite:////abs/m.db"
    assert resolve_tracking_uri("mlruns", out) == str(out / "mlruns")
    assert resolve_tracking_uri("http://mlflow:5000", out) == "http://mlflow:5000"
    once = resolve_tracking_uri("sqlite:///mlflow.db", out)
    assert resolve_tracking_uri(once, tmp_path / "elsewhere") == once  # a resumed sweep keeps its store


@pytest.mark.parametrize(("key", "value", "field"), [
    ("tracking_uri", "  ", "tracking.tracking_uri"),
    ("tracking_uri", "sqlite://host/m.db", "tracking.tracking_uri"),
    ("experiment", "", "tracking.experiment"),
])
def test_bad_tracking_settings_name_their_key(key, value, field):
    tracking = OmegaConf.structured(SweepConfig).tracking
    tracking[key] = value
    with pytest.raises(ConfigError) as err:
        validate_tracking(tracking)
    assert err.value.key == field
