"""The sweep's line per trial event and the stop reason it records in each trial's TensorBoard run.

``TrialEvents`` is driven here the way Tune drives it, with stand-in trials (what Tune's ``Trial``
offers: id, config, last result, paths), for every way a trial ends; the real sweep in
test_sweep_run checks the same lines and records end to end.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from plumbing.cli import parse_config
from plumbing.errors import ConfigError
from raycluster.connect import WithoutRayNotices
from sweep.config import SweepConfig, validate_sweep
from sweep.layout import STOPS_FILE
from sweep.progress import TrialEvents
from trainable.tensorboard import TBLogger

PLANNED = 4


def make_trial(tmp_path: Path, trial_id: str, last_epoch: int | None, best: float = 0.5):
    path = tmp_path / "search" / f"trial_{trial_id}"
    path.mkdir(parents=True)
    last = {} if last_epoch is None else {"epoch": last_epoch, "metric": best, "best_metric": best}
    return SimpleNamespace(trial_id=trial_id, config={"training.lr": 1e-3, "training.epochs": PLANNED},
                           last_result=last, path=str(path), error_file=None,
                           storage=SimpleNamespace(experiment_dir_name="search", trial_dir_name=path.name))


@pytest.fixture
def events(tmp_path):
    cfg = parse_config(SweepConfig, ["training.patience=2"], "sweep.run", "")
    return TrialEvents(OmegaConf.to_container(cfg, resolve=True), tmp_path, "search", "f1")


def stop_reason_in_tensorboard(trial) -> tuple[str, int]:
    acc = EventAccumulator(str(Path(trial.path) / "tb"))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    return start.hparams["stop_reason"].string_value, end.status


def test_a_trial_prints_a_line_when_it_starts_and_per_epoch(events, tmp_path, capsys):
    trial = make_trial(tmp_path, "a1", None)
    events.on_trial_start(0, [], trial)
    for epoch, (metric, best) in enumerate([(0.2, 0.2), (0.1, 0.2)], 1):
        events.on_trial_result(0, [], trial, {"epoch": epoch, "metric": metric, "best_metric": best})
    events.on_trial_result(0, [], trial, {"done": True})  # not an epoch: no line
    assert capsys.readouterr().out.splitlines() == [
        "search trial a1: started: epochs=4 lr=0.001",
        "search trial a1: epoch 1/4: f1 0.2000 (best 0.2000)",
        "search trial a1: epoch 2/4: f1 0.1000 (best 0.2000)",
    ]


@pytest.mark.parametrize(("last_epoch", "asha", "line", "reason"), [
    (PLANNED, False, "finished 4/4 epochs (best f1 0.5000)", "finished"),
    (PLANNED, True, "finished 4/4 epochs (best f1 0.5000)", "finished"),  # ASHA's stop at max_t
    (2, True, "stopped by ASHA after epoch 2/4 (best f1 0.5000)", "asha"),
    (3, False, "stopped early after epoch 3/4: no better f1 in 2 epoch(s) (best f1 0.5000)", "early_stop"),
])
def test_a_completed_trial_says_why_it_stopped_once(events, tmp_path, capsys, last_epoch, asha, line, reason):
    trial = make_trial(tmp_path, "b2", last_epoch)
    if asha:  # what the sweep's ASHA records when it stops a trial
        (tmp_path / STOPS_FILE).write_text(json.dumps({"experiment": "search", "trial_id": "b2",
                                                       "epoch": last_epoch}) + "\n")
    events.on_trial_complete(0, [], trial)
    assert capsys.readouterr().out.splitlines() == [f"search trial b2: {line}"]
    assert stop_reason_in_tensorboard(trial) == (reason, api_pb2.STATUS_SUCCESS)


def test_a_trial_stopped_by_asha_says_the_rung_metric_it_was_compared_on(tmp_path, capsys):
    cfg = parse_config(SweepConfig, [], "sweep.run", "")
    events = TrialEvents(OmegaConf.to_container(cfg, resolve=True), tmp_path, "search", "f1", rung_label="roc_auc")
    trial = make_trial(tmp_path, "g7", 2, best=0.0)
    for epoch, auc in enumerate([0.71, 0.66], 1):  # the rung compares the best so far, 0.71
        events.on_trial_result(0, [], trial, {"epoch": epoch, "metric": 0.0, "best_metric": 0.0, "val_roc_auc": auc})
    (tmp_path / STOPS_FILE).write_text(json.dumps({"experiment": "search", "trial_id": "g7", "epoch": 2}) + "\n")
    events.on_trial_complete(0, [], trial)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "search trial g7: stopped by ASHA after epoch 2/4 (roc_auc so far 0.7100, best f1 0.0000)")


def test_the_loops_own_record_of_its_end_stands(events, tmp_path, capsys):
    trial = make_trial(tmp_path, "c3", 2)
    tb = TBLogger(str(Path(trial.path) / "tb"), {"training.epochs": 2})  # the loop ran 2 of its 2 epochs
    tb.epoch(2, {"val_f1": 0.5}, best=0.5)
    tb.close()
    events.on_trial_complete(0, [], trial)  # the sweep's view: 2 of 4, early stop
    assert stop_reason_in_tensorboard(trial) == ("finished", api_pb2.STATUS_SUCCESS)
    assert len(list((Path(trial.path) / "tb").iterdir())) == 1  # nothing added


def test_an_errored_trial_prints_its_error_and_records_a_failure(events, tmp_path, capsys):
    trial = make_trial(tmp_path, "d4", 1)
    error = Path(trial.path) / "error.txt"
    error.write_text("Failure # 1\nTraceback (most recent call last):\n  ...\n"
                     "RuntimeError: CUDA out of memory (simulated)\n")
    trial.error_file = str(error)
    events.on_trial_error(0, [], trial)
    assert capsys.readouterr().out.splitlines() == [
        "search trial d4: errored: RuntimeError: CUDA out of memory (simulated) (trial_d4)"]
    assert stop_reason_in_tensorboard(trial) == ("error", api_pb2.STATUS_FAILURE)


def test_verbose_0_prints_nothing_but_still_records(tmp_path, capsys):
    cfg = OmegaConf.to_container(parse_config(SweepConfig, [], "sweep.run", ""), resolve=True)
    events = TrialEvents(cfg, tmp_path, "search", "f1", verbose=0)
    trial = make_trial(tmp_path, "e5", PLANNED)
    events.on_trial_start(0, [], trial)
    events.on_trial_complete(0, [], trial)
    assert capsys.readouterr().out == ""
    assert stop_reason_in_tensorboard(trial)[0] == "finished"


def test_verbose_is_0_1_or_2():
    cfg = parse_config(SweepConfig, ["sweep.verbose=3"], "sweep.run", "")
    with pytest.raises(ConfigError, match="must be 0, 1 or 2") as err:
        validate_sweep(cfg)
    assert err.value.key == "sweep.verbose"


def test_a_trial_started_again_by_tune_says_restarted(events, tmp_path, capsys):
    trial = make_trial(tmp_path, "r1", None)
    events.on_trial_start(0, [], trial)
    events.on_trial_start(0, [], trial)  # Tune's retry of a driver lost with its node
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("search trial r1: started: ")
    assert lines[1] == "search trial r1: restarted (its driver was lost); it goes on from its last checkpoint"


def test_rays_worker_pool_notice_is_left_out_of_the_quiet_output_and_nothing_else():
    out = io.StringIO()
    stream = WithoutRayNotices(out)
    print("(raylet) WARNING: 8 PYTHON worker processes have been started on node: ab with address: 1.2.3.4, "
          "which is 4x the maximum expected startup concurrency (2).", file=stream)
    print("search trial 1a2b: epoch 1/10 f1 0.41", file=stream)
    print("(raylet) A worker died or was killed while executing a task", file=stream)
    print("", file=stream)
    assert out.getvalue() == ("search trial 1a2b: epoch 1/10 f1 0.41\n"
                              "(raylet) A worker died or was killed while executing a task\n\n")
