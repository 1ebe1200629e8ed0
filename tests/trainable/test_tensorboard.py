"""A run's TensorBoard directory: one run, whose HParams carry how it ended, written once.

Read back the way TensorBoard reads it: ``EventAccumulator`` over the directory, the hparams
plugin's own parsers for its summaries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from trainable.tensorboard import HPARAM_METRIC, STOP_REASON, TBLogger, has_hparams, write_end

HPARAMS = {"task": "pair", "training.lr": 1e-3, "training.epochs": 3, "model.name": "tiny"}


def read_run(log_dir: Path) -> tuple[dict, int | None, list[int]]:
    """(hparams, session end status or None, steps of the HParams metric) of the run in log_dir."""
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    steps = [e.step for e in acc.Scalars(HPARAM_METRIC)] if HPARAM_METRIC in acc.Tags()["scalars"] else []
    try:
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:
        return {}, None, steps
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG]).status
    assert metadata.EXPERIMENT_TAG not in content  # TensorBoard builds the experiment from all runs
    return hparams, end, steps


def run_epochs(log_dir: Path, epochs: int, fail: bool = False) -> TBLogger:
    tb = TBLogger(str(log_dir), HPARAMS)
    try:
        for epoch in range(1, epochs + 1):
            tb.train_step(epoch * 10, 0.5, 1e-3)
            tb.epoch(epoch, {"val_f1": 0.1 * epoch, "train_loss": 0.5}, best=0.1 * epoch)
        if fail:
            raise RuntimeError("worker lost")
    finally:
        tb.close()
    return tb


@pytest.mark.parametrize(("epochs", "reason"), [(3, "finished"), (2, "early_stop")])
def test_the_loop_records_how_it_ended(tmp_path, epochs, reason):
    run_epochs(tmp_path, epochs)
    hparams, status, steps = read_run(tmp_path)
    assert hparams == {**HPARAMS, STOP_REASON: reason}
    assert status == api_pb2.STATUS_SUCCESS and steps == list(range(1, epochs + 1))
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    assert not write_end(tmp_path, HPARAMS, "asha")  # the first record stands
    assert read_run(tmp_path)[0][STOP_REASON] == reason


def test_a_failed_run_leaves_its_end_to_the_driver(tmp_path):
    with pytest.raises(RuntimeError):
        run_epochs(tmp_path, 1, fail=True)
    assert read_run(tmp_path) == ({}, None, [1]) and not has_hparams(tmp_path)
    assert write_end(tmp_path, HPARAMS, "error")
    hparams, status, steps = read_run(tmp_path)
    assert hparams[STOP_REASON] == "error" and status == api_pb2.STATUS_FAILURE and steps == [1]


def test_a_killed_run_gets_its_end_from_the_driver_as_one_run(tmp_path):
    tb = TBLogger(str(tmp_path), HPARAMS)
    tb.epoch(1, {"val_f1": 0.2}, best=0.2)  # then ASHA kills the worker: no close()
    assert write_end(tmp_path, HPARAMS, "asha") and not write_end(tmp_path, HPARAMS, "error")
    assert read_run(tmp_path) == ({**HPARAMS, STOP_REASON: "asha"}, api_pb2.STATUS_SUCCESS, [1])
    assert [p.parent for p in tmp_path.rglob("events.out.tfevents.*")] == [tmp_path] * 2  # one run


def test_an_unknown_stop_reason_is_refused(tmp_path):
    with pytest.raises(ValueError, match="stop_reason must be one of"):
        write_end(tmp_path, HPARAMS, "stopped")


def test_the_hparams_dashboard_marks_what_differs_between_runs(tmp_path):
    """Two runs of a sweep, read by a real TensorBoard server's HParams plugin: the searched lr differs,
    the fixed epochs does not, and the runs' ``hparam/best_metric`` and validation scalars are its metrics."""
    from ray_helpers import free_ports

    for name, lr in (("trial_0", 1e-3), ("trial_1", 3e-4)):
        tb = TBLogger(str(tmp_path / name / "tb"), {**HPARAMS, "training.lr": lr})
        tb.epoch(1, {"val_f1": lr * 100}, best=lr * 100)
        tb.epoch(3, {"val_f1": lr * 200}, best=lr * 200)
        tb.close()
    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        experiment = read_experiment(f"http://127.0.0.1:{port}", deadline=time.monotonic() + 90)
    finally:
        server.kill()
        server.wait(timeout=30)
    differs = {h["name"]: h.get("differs", False) for h in experiment["hparamInfos"]}
    assert differs["training.lr"] and not differs["training.epochs"] and not differs["task"]
    assert {HPARAM_METRIC, "val/f1"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}


def read_experiment(url: str, deadline: float) -> dict:
    """The HParams plugin's experiment, polled until the server has loaded both runs (or the deadline)."""
    body = json.dumps({"experimentName": "", "includeMetrics": True}).encode()
    while True:
        try:
            request = urllib.request.Request(f"{url}/data/plugin/hparams/experiment", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as reply:
                experiment = json.loads(reply.read())
            if experiment.get("metricInfos"):
                return experiment
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"TensorBoard at {url} served no HParams experiment in time")
        time.sleep(1)
