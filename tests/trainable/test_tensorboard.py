"""A run's TensorBoard directory: one run, whose HParams carry how it ended, written once.

Read back the way TensorBoard reads it: ``EventAccumulator`` over the directory, the hparams
plugin's own parsers for its summaries.
"""

from __future__ import annotations

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
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == [HPARAM_METRIC]
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
