"""summary.json against its packaged JSON Schema: real summaries pass, broken ones name the place.

The real summary comes from the fake sweep of tests/sweep_fakes.py (plain Tune functions, no
training: one raises, ASHA stops the weak ones, a second stage, the best config retrained), rebuilt
by sweep.report exactly as after a sweep. The broken ones are that summary with one thing changed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sweep_fakes
from jsonschema import Draft202012Validator

from plumbing.errors import UserError
from sweep.layout import SPACE_FILE, SUMMARY_FILE
from sweep.report import refresh
from sweep.schema import SCHEMA_FILE, summary_problems, summary_validator, validate_summary
from sweep.space import resolve_space, space_to_json, to_distributions
from trainable.session import TEST_METRICS


def new_run_dir(run_dir: Path):
    """What sweep.run leaves before the first trial: config.yaml and space.json."""
    cfg = sweep_fakes.new_run_dir(run_dir, sweep_fakes.EPOCHS)
    (run_dir / SPACE_FILE).write_text(json.dumps(space_to_json(to_distributions(resolve_space(cfg), cfg))))
    return cfg


@pytest.fixture(scope="module")
def summary(fake_sweep) -> dict:
    """The fake sweep's summary.json as sweep.report writes it (the tests change only copies)."""
    refresh(fake_sweep.run_dir)
    return json.loads((fake_sweep.run_dir / SUMMARY_FILE).read_text())


def test_the_packaged_schema_is_a_valid_draft_2020_12_schema():
    schema = summary_validator().schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA_FILE == "summary.schema.json"


@pytest.mark.slow
def test_the_summary_of_a_real_sweep_passes(summary):
    reasons = {t["stop_reason"] for t in summary["trials"]}
    assert {"finished", "asha", "error"} <= reasons  # the premise: every kind of trial is in it
    assert summary["best"] is not None and summary["retrain"]["mean"] is not None
    assert summary_problems(summary) == []
    validate_summary(summary)


def broken(summary: dict, change) -> dict:
    out = copy.deepcopy(summary)
    change(out)
    return out


def trial_index(summary: dict, reason: str) -> int:
    return next(i for i, t in enumerate(summary["trials"]) if t["stop_reason"] == reason)


CASES = {
    "missing required key": (lambda s: s["trials"][1].pop("best_epoch"),
                             "trials[1]: 'best_epoch' is a required property"),
    "wrong type": (lambda s: s["trials"][0].update(epochs_run="3"),
                   "trials[0].epochs_run: '3' is not of type 'integer'"),
    "unknown stop_reason": (lambda s: s["trials"][2].update(stop_reason="killed"),
                            "trials[2].stop_reason: 'killed' is not one of ['finished', 'asha', 'early_stop', "
                            "'error', 'unfinished']"),
    "extra top-level key": (lambda s: s.update(best_trial="x"),
                            "(top level): Additional properties are not allowed ('best_trial' was unexpected)"),
    "typo in a closed object": (lambda s: s["best"].update(chekpoint=None),
                                "best: Additional properties are not allowed ('chekpoint' was unexpected)"),
    "NaN metric": (lambda s: s["trials"][0].update(best_metric=float("nan")),
                   "trials[0].best_metric: nan is not valid JSON"),
    "inf in a searched result": (lambda s: s["best"]["result"].update(train_loss=float("inf")),
                                 "best.result.train_loss: inf is not valid JSON"),
    "wrong count key": (lambda s: s["counts"].update(killed=1),
                        "counts: 'killed' is not one of"),
    "non-string augment": (lambda s: s["trials"][0].update(augment=5),
                           "trials[0].augment: 5 is not of type 'string'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_broken_summary_fails_naming_the_path(summary, case):
    change, expected = CASES[case]
    with pytest.raises(UserError) as err:
        validate_summary(broken(summary, change))
    message = str(err.value)
    assert expected in message
    assert "bug in sweep.summary" in message and "hand-edited" in message and SCHEMA_FILE in message


@pytest.mark.slow
def test_every_violation_is_listed_in_document_order(summary):
    first, last = trial_index(summary, "error"), len(summary["trials"]) - 1
    bad = broken(summary, lambda s: (s["trials"][last].update(stop_reason="killed"),
                                     s["trials"][first].update(error=3), s.pop("num_trials")))
    problems = summary_problems(bad)
    assert len(problems) == 3
    assert problems[0].startswith("(top level): 'num_trials' is a required property")
    assert problems[1].startswith(f"trials[{first}].error: 3 is not of type")
    assert problems[2].startswith(f"trials[{last}].stop_reason: 'killed'")


@pytest.mark.slow
def test_an_augmentation_signature_is_an_optional_string(summary):
    validate_summary(broken(summary, lambda s: [t.update(augment="mask=5,delete=0.1,prob=0.5")
                                                for t in s["trials"]]))
    validate_summary(broken(summary, lambda s: s["trials"][0].update(augment="off")))


def report(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep.report", str(run_dir)], capture_output=True, text=True,
                          timeout=180)


def test_report_on_a_run_dir_before_any_trial_writes_a_valid_summary(tmp_path):
    new_run_dir(tmp_path)
    proc = report(tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["num_trials"] == 0 and summary["best"] is None and summary["space"]
    assert summary_problems(summary) == []


def test_report_refuses_to_write_an_invalid_summary_with_exit_2(tmp_path):
    new_run_dir(tmp_path)
    (tmp_path / TEST_METRICS).write_text(json.dumps({"trial_id": 7, "checkpoint": "x"}))  # a hand edit
    proc = report(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: summary.json of ")
    assert "test.trial_id: 7 is not of type 'string'" in proc.stderr
    assert not (tmp_path / SUMMARY_FILE).exists()
