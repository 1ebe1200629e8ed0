"""A whole sweep with its run directory in a bucket: ``out_dir=s3://bucket/prefix`` on a real S3 server.

moto's S3 server runs on 127.0.0.1 (``tests/s3_server.py``) and the local Ray starts after the
endpoint is in the environment, as a cluster's nodes would have it. The sweep (one trial of the tiny
model) must leave everything in the bucket (summary, trials table, plots, best checkpoint, each
trial's epochs, TensorBoard run and checkpoint, which Tune persists for the in-process trial) and nothing
in a local directory named after the URI; ``sweep.report`` and ``resume=`` then work from the URI alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import pandas as pd
import pytest
from ray_helpers import local_ray
from s3_server import s3_server  # noqa: F401  (the fixture)
from sweep_fakes import load_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from plumbing import storage
from sweep.run import run
from trainable.session import METRICS_FILE

pytestmark = pytest.mark.slow
EPOCHS = 2


def sweep_args(out_dir: str, cache: str) -> list[str]:
    return ["task=pair", f"out_dir={out_dir}", f"cache_dir={cache}", "data.demo_posts=60",
            f"training.epochs={EPOCHS}", "training.patience=0", "training.batch_size=32", "sweep.num_samples=1",
            "sweep.scheduler=fifo", "sweep.verbose=0", "sweep.space.training.batch_size=null"]


@pytest.fixture(scope="module")
def swept(s3_server, demo_cache, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("s3-sweep")
    out_dir = storage.join(s3_server.uri, "sweep")
    with local_ray(num_cpus=2, logging_level="ERROR"):
        with contextlib.chdir(tmp):  # where a URI taken for a local path would leave "s3:/..."
            cfg, dists = load_config(sweep_args(out_dir, demo_cache))
            summary = run(cfg, dists)
        yield SimpleNamespace(out_dir=out_dir, summary=summary, tmp=tmp, cfg=cfg, server=s3_server)


def trial_dirs(out_dir: str) -> list[str]:
    exp = storage.join(out_dir, "search")
    return [storage.join(exp, n) for n in storage.list_dir(exp) if n.startswith("trial_")]


def test_the_sweep_record_is_in_the_bucket(swept):
    names = set(storage.list_dir(swept.out_dir))
    assert {"config.yaml", "space.json", "summary.json", "trials.parquet", "best_checkpoint", "search",
            "optimization_history.png", "learning_curves.png", "test_metrics.json"} <= names
    summary = json.loads(storage.read_text(storage.join(swept.out_dir, "summary.json")))
    assert summary["num_trials"] == 1 and summary["counts"] == {"finished": 1}
    assert summary["best"]["checkpoint"] == storage.join(swept.out_dir, "best_checkpoint")
    fs, path = storage.resolve(storage.join(swept.out_dir, "trials.parquet"))
    assert len(pd.read_parquet(path, filesystem=fs)) == 1
    best = storage.list_dir(storage.join(swept.out_dir, "best_checkpoint"))
    assert "meta.json" in best and "training_state.pt" not in best
    assert not list(swept.tmp.rglob("s3:*")), "a URI was used as a local path"


def test_each_trial_keeps_its_epochs_tensorboard_run_and_checkpoint_in_the_bucket(swept):
    trials = trial_dirs(swept.out_dir)
    assert len(trials) == 1
    for trial in trials:
        history = json.loads(storage.read_text(storage.join(trial, METRICS_FILE)))
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        # on a Ray of its own the trial trains in its process: Tune keeps its checkpoint in the trial's directory
        assert any(n.startswith("checkpoint_") for n in storage.list_dir(trial))
        with tempfile.TemporaryDirectory() as local:
            storage.download_dir(storage.join(trial, "tb"), local)
            acc = EventAccumulator(local)
            acc.Reload()
            assert [e.step for e in acc.Scalars("val/f1")] == list(range(1, EPOCHS + 1))
            content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
            start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
            assert start.hparams["stop_reason"].string_value == "finished"


def test_report_and_resume_work_from_the_uri(swept):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    fs, path = storage.resolve(storage.join(swept.out_dir, "summary.json"))
    fs.delete_file(path)
    report = subprocess.run([sys.executable, "-m", "sweep.report", swept.out_dir], capture_output=True,
                            text=True, timeout=180, env=env, cwd=swept.tmp)
    assert report.returncode == 0, report.stderr
    assert "1 trial, 2 epochs; stopped: finished 1" in report.stdout
    assert storage.exists(storage.join(swept.out_dir, "summary.json"))

    cfg, dists = load_config([f"resume={swept.out_dir}"])  # Tune restores the finished stage from the bucket
    assert cfg.out_dir == swept.out_dir
    summary = run(cfg, dists)
    assert summary["num_trials"] == 1
    assert [t["trial_id"] for t in summary["trials"]] == [t["trial_id"] for t in swept.summary["trials"]]
