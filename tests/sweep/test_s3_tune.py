"""Ray Tune (and Ray Train inside a trial) with ``storage_path="s3://bucket/prefix"`` on a real S3 server.

What the sweep relies on when ``out_dir`` is a URI: trials, checkpoints and the experiment state land
in the bucket; ``ExperimentAnalysis`` and ``Tuner.restore`` read them back from the URI; a trial
writes its own files with ``get_storage().storage_filesystem`` + ``trial_fs_path`` (a path inside that
filesystem, with no ``s3://``), and its Train run is stored under it with the same filesystem.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
import ray
from ray import tune
from ray_helpers import own_ray_address
from s3_server import s3_server  # noqa: F401  (the fixture)

from plumbing import storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_s3(s3_server):  # noqa: F811
    """A local Ray started after s3_server set AWS_*, so its processes inherit the endpoint."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    with own_ray_address():
        ray.init(address="local", num_cpus=2, logging_level="ERROR")
    yield s3_server
    ray.shutdown()


def reporting_trainable(config: dict) -> None:
    """Two results with a checkpoint each; resumes from its checkpoint; writes a file of its own."""
    st = tune.get_context().get_storage()
    with st.storage_filesystem.open_output_stream(f"{st.trial_fs_path}/own.json") as f:
        f.write(json.dumps({"x": config["x"]}).encode())
    start = 0
    if checkpoint := tune.get_checkpoint():
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "state.json").read_text())["step"] + 1
    for step in range(start, 2):
        with tempfile.TemporaryDirectory() as d:
            Path(d, "state.json").write_text(json.dumps({"step": step}))
            fs_options = st.storage_filesystem.__reduce__()[1][0]
            tune.report({"score": config["x"] * (step + 1), "step": step, "trial_fs_path": st.trial_fs_path,
                         "fs_endpoint": fs_options.get("endpoint_override", "")},
                        checkpoint=tune.Checkpoint.from_directory(d))


@pytest.fixture(scope="module")
def experiment(ray_s3):
    """A 2-trial grid stored at s3://bucket/runs/exp; returns (experiment URI, ResultGrid)."""
    tuner = tune.Tuner(reporting_trainable, param_space={"x": tune.grid_search([1, 2])},
                       tune_config=tune.TuneConfig(metric="score", mode="max"),
                       run_config=tune.RunConfig(storage_path=ray_s3.uri, name="exp", verbose=0))
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    return storage.join(ray_s3.uri, "exp"), grid


def test_trials_and_checkpoints_are_in_the_bucket(experiment, s3_server):  # noqa: F811
    exp, grid = experiment
    names = storage.list_dir(exp)
    assert "tuner.pkl" in names and any(n.startswith("experiment_state-") for n in names)
    trials = [n for n in names if n.startswith("reporting_trainable_")]
    assert len(trials) == 2
    for trial in trials:
        files = storage.list_dir(storage.join(exp, trial))
        assert {"checkpoint_000000", "checkpoint_000001", "result.json", "own.json", "params.json"} <= set(files)
        results = [json.loads(line) for line in storage.read_text(storage.join(exp, trial, "result.json")).splitlines()]
        assert [r["step"] for r in results] == [0, 1]
        # trial_fs_path is bucket/prefix/...: a path in storage_filesystem, not a URI
        assert results[0]["trial_fs_path"] == f"{s3_server.bucket}/runs/exp/{trial}"
        # the trial's filesystem came pickled from the driver, with the driver's endpoint in it
        assert results[0]["fs_endpoint"] == s3_server.endpoint
    assert grid.get_best_result().metrics["score"] == 4


def test_experiment_analysis_reads_the_uri(experiment, tmp_path):
    exp, _ = experiment
    analysis = tune.ExperimentAnalysis(exp)
    assert len(analysis.trials) == 2
    best = analysis.get_best_trial("score", "max")
    assert best.config == {"x": 2}
    checkpoint = analysis.get_best_checkpoint(best, "score", "max")
    local = checkpoint.to_directory(str(tmp_path / "best"))
    assert json.loads(Path(local, "state.json").read_text()) == {"step": 1}


def test_tuner_restores_from_the_uri(experiment, s3_server):  # noqa: F811
    exp, _ = experiment
    assert tune.Tuner.can_restore(exp)
    assert not tune.Tuner.can_restore(storage.join(s3_server.uri, "no-such-exp"))
    restored = tune.Tuner.restore(exp, trainable=reporting_trainable, resume_errored=True)
    assert sorted(r.metrics["score"] for r in restored.get_results()) == [2, 4]
    grid = restored.fit()  # every trial had finished: nothing runs again
    assert not grid.errors and sorted(r.metrics["score"] for r in grid) == [2, 4]


def test_train_run_inside_a_trial_is_stored_with_the_trial(ray_s3):
    """The project's pattern: a Tune driver whose TorchTrainer stores its run under the trial dir."""
    tuner = tune.Tuner(tune.with_resources(train_driver, {"cpu": 0, "memory": 1}),
                       param_space={"x": 3},
                       run_config=tune.RunConfig(storage_path=ray_s3.uri, name="nested", verbose=0))
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    (trial,) = [n for n in storage.list_dir(storage.join(ray_s3.uri, "nested")) if n.startswith("train_driver_")]
    train_dir = storage.join(ray_s3.uri, "nested", trial, "train")
    assert any(n.startswith("checkpoint_") for n in storage.list_dir(train_dir))
    result = ray.train.Result.from_path(train_dir)  # a URI: the filesystem comes from the environment
    best = result.get_best_checkpoint("loss", "min")
    with best.as_directory() as d:
        assert json.loads(Path(d, "state.json").read_text()) == {"x": 3}


def train_driver(config: dict) -> None:
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    st = tune.get_context().get_storage()
    trainer = TorchTrainer(
        train_loop, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=1),
        # trial_fs_path has no scheme: without storage_filesystem it would be read as a local path
        run_config=ray.train.RunConfig(name="train", storage_path=st.trial_fs_path,
                                       storage_filesystem=st.storage_filesystem,
                                       callbacks=[TuneReportCallback()]))
    trainer.fit()


def train_loop(config: dict) -> None:
    with tempfile.TemporaryDirectory() as d:
        Path(d, "state.json").write_text(json.dumps({"x": config["x"]}))
        ray.train.report({"loss": 1.0 / config["x"]}, checkpoint=ray.train.Checkpoint.from_directory(d))
