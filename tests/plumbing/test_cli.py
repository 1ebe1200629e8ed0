"""The command-line parser: every documented value of every option reaches the config as typed.

YAML would read ``off``/``no``/``yes`` as booleans, ``null`` as None and ``007`` as 7; a ``str`` field
must get the text itself, while bool, number and optional fields keep YAML's reading.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from functools import partial
from typing import get_args, get_type_hints

import pytest
from omegaconf import OmegaConf

import data_prep.__main__ as prep_command
import sweep.run as sweep_command
import trainable.evaluate as evaluate_command
import trainable.predict as predict_command
import trainable.single as single_command
from data_prep.config import DATASETS, QUESTION_MODES, TASKS, PrepConfig, validate_prep
from plumbing.cli import parse_config, run_cli
from plumbing.errors import ConfigError
from sweep.config import SCHEDULERS, SweepConfig, validate_sweep
from sweep.report import ReportConfig
from trainable.config import AMP_MODES, DEVICES, TrainConfig, validate_train
from trainable.evaluate import EVAL_SPLITS, EvaluateConfig
from trainable.predict import PredictConfig

VALIDATORS = {PrepConfig: validate_prep, TrainConfig: partial(validate_train, check_hardware=False),
              SweepConfig: validate_sweep}
ENUMS = {"task": TASKS, "data.name": DATASETS, "features.question_mode": QUESTION_MODES,
         "training.amp": AMP_MODES, "training.device": DEVICES, "sweep.scheduler": SCHEDULERS}
BASE = ["task=span", "data.dir=somewhere"]  # redsm5 and squad_v2 need a data.dir; squad_v2 no pair


def parse(schema, *argv, positional=None):
    return parse_config(schema, list(argv), "test", "", positional=positional)


def has_key(schema, key: str) -> bool:
    return OmegaConf.select(OmegaConf.structured(schema), key, default=None) is not None


def command_error(main, argv, capsys) -> str:
    """What a real command prints when it ends with exit status 2."""
    with pytest.raises(SystemExit) as done:
        run_cli(main, argv)
    assert done.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("schema", "key", "value"), [
    pytest.param(schema, key, value, id=f"{schema.__name__}-{key}={value}")
    for schema in VALIDATORS for key, values in ENUMS.items() if has_key(schema, key) for value in values])
def test_every_allowed_value_of_an_enum_is_kept_as_typed(schema, key, value):
    cfg = parse(schema, *BASE, f"{key}={value}")
    assert OmegaConf.select(cfg, key) == value
    VALIDATORS[schema](cfg)


@pytest.mark.parametrize("spelling", [["training.amp=off"], ["--training.amp", "off"], ["--training.amp=off"]])
def test_the_issue_amp_off_in_every_spelling(spelling):
    cfg = parse(TrainConfig, *spelling)
    assert cfg.training.amp == "off"
    validate_train(cfg)  # off is fine on any machine


# The real commands, in process: each allowed value gets past its own check (the run stops at a later,
# deliberately bad key), and a bad one exits 2 naming the key and echoing the text typed.
COMMANDS = [
    # (command, key, allowed, bad, argv that trips a later check, the key that check names)
    (prep_command.main, "task", TASKS, "ner", ["data.dir=d", "data.demo_posts=5"], "data.demo_posts"),
    (prep_command.main, "data.name", DATASETS, "squad", ["data.dir=d", "data.demo_posts=5"], "data.demo_posts"),
    (prep_command.main, "features.question_mode", QUESTION_MODES, "no", ["data.demo_posts=5"], "data.demo_posts"),
    (single_command.main, "training.amp", AMP_MODES, "on", ["training.device=tpu"], "training.device"),
    (single_command.main, "training.device", DEVICES, "off", ["augment.mask=99"], "augment.mask"),
    (sweep_command.main, "sweep.scheduler", SCHEDULERS, "yes", ["sweep.num_samples=0"], "sweep.num_samples"),
    (sweep_command.main, "training.amp", AMP_MODES, "off!", ["sweep.num_samples=0"], "sweep.num_samples"),
    (evaluate_command.main, "split", EVAL_SPLITS, "train", ["nowhere"], "nowhere' does not exist"),
    (evaluate_command.main, "device", DEVICES, "no", ["nowhere"], "nowhere' does not exist"),
    (predict_command.main, "device", DEVICES, "null!", ["nowhere", "input=p.csv"], "nowhere' does not exist"),
]
COMMAND_IDS = [f"{main.__module__}-{key}" for main, key, *_ in COMMANDS]


@pytest.mark.parametrize(("main", "key", "allowed", "bad", "later", "named"), COMMANDS, ids=COMMAND_IDS)
def test_real_commands_accept_every_allowed_value(main, key, allowed, bad, later, named, tmp_path, capsys):
    for value in allowed:
        err = command_error(main, [f"out_dir={tmp_path}", f"{key}={value}", *later], capsys)
        assert named in err and f"'{key}'" not in err, (value, err)


@pytest.mark.parametrize(("main", "key", "allowed", "bad", "later", "named"), COMMANDS, ids=COMMAND_IDS)
def test_real_commands_reject_a_bad_value_naming_the_key(main, key, allowed, bad, later, named, tmp_path, capsys):
    err = command_error(main, [f"out_dir={tmp_path}", *later, f"{key}={bad}"], capsys)
    assert f"config '{key}': must be one of {', '.join(allowed)}; got '{bad}'" in err


def test_the_data_prep_command_as_a_process():
    argv = [sys.executable, "-m", "data_prep", "features.question_mode=off", "data.demo_posts=5"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "config 'features.question_mode': must be one of criterion, symptom, empty; got 'off'" in done.stderr
    argv[3] = "features.question_mode=empty"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "config 'data.demo_posts'" in done.stderr


@pytest.mark.parametrize("key", ["training.compile", "training.gradient_checkpointing", "sweep.final_test",
                                 "tracking.mlflow", "sweep.two_stage"])
@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("yes", True), ("no", False),
                                                ("on", True), ("off", False), ("True", True), ("OFF", False)])
def test_bool_fields_take_every_yaml_spelling(key, text, expected):
    cfg = parse(SweepConfig, f"{key}={text}")
    assert OmegaConf.select(cfg, key) is expected
    validate_sweep(cfg)


@pytest.mark.parametrize(("schema", "key", "text"), [
    (SweepConfig, "tracking.experiment", "007"),
    (SweepConfig, "tracking.experiment", "1e-3"),
    (SweepConfig, "tracking.experiment", "yes"),
    (SweepConfig, "model.name", "123"),
    (SweepConfig, "model.name", "off"),
    (SweepConfig, "model.name", "tiny-deberta"),
    (SweepConfig, "model.name", "minilm"),
    (SweepConfig, "out_dir", "2024"),
    (SweepConfig, "out_dir", "no"),
    (SweepConfig, "data.dir", "1.50"),
    (SweepConfig, "resume", "true"),
    (SweepConfig, "cache_dir", "[a, b]"),
    (SweepConfig, "tracking.tracking_uri", "sqlite:///007.db"),
    (TrainConfig, "resume", "on"),
    (EvaluateConfig, "checkpoint", "0"),
    (PredictConfig, "input", "1.csv"),
    (ReportConfig, "run_dir", "null_runs"),
])
def test_str_fields_get_the_text_as_typed(schema, key, text):
    cfg = parse(schema, f"{key}={text}")
    assert OmegaConf.select(cfg, key) == text and isinstance(OmegaConf.select(cfg, key), str)


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("features.max_length", "128", 128),
    ("training.lr", "1e-3", 1e-3),
    ("training.lr", "3e-5", 3e-5),
    ("training.dropout", "0.1", 0.1),
    ("sweep.gpus_per_worker", "0.5", 0.5),
    ("augment.mask", "5", 5),
    ("sweep.max_concurrent", "2", 2),
    ("data.split_ratios", "[0.5,0.25,0.25]", [0.5, 0.25, 0.25]),
    ("sweep.space.training.lr.high", "1e-2", 0.01),  # inside the free-form space: YAML as before
    ("sweep.space.features.max_length", "[64,128]", [64, 128]),
    ("sweep.space.augment.mask", "{type: int, low: 0, high: 15}", {"type": "int", "low": 0, "high": 15}),
])
def test_numbers_lists_and_the_space_keep_yaml_types(key, text, expected):
    value = OmegaConf.select(parse(SweepConfig, f"{key}={text}"), key)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    assert value == expected and type(value) is type(expected)


# Every optional field, with a value it accepts: ``null`` after it sets it back to None.
NULLABLE = {
    SweepConfig: {"data.dir": "d", "data.split_ratios": "[0.5,0.25,0.25]", "training.dropout": "0.1",
                  "resume": "r", "sweep.max_concurrent": "2", "sweep.startup_trials": "3", "sweep.rung_metric": "f1",
                  "sweep.two_stage": "on", "sweep.retrain_seeds": "1", "sweep.space_file": "s.yaml",
                  "sweep.storage": "sqlite:///s.db", "sweep.time_budget_s": "60",
                  "sweep.warm_start": "runs/old", "sweep.in_process": "true",
                  "tracking.experiment": "e", "training.metric": "own_top1"},
    EvaluateConfig: {"out_dir": "o", "cache_dir": "c", "data_dir": "d", "training.eval_batch_size": "8"},
    PredictConfig: {"out_dir": "o", "batch_size": "8", "pair_threshold": "0.4"},
}


def optional_keys(schema, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(schema):
        declared = get_type_hints(schema)[f.name]
        if dataclasses.is_dataclass(declared):
            keys |= optional_keys(declared, f"{prefix}{f.name}.")
        elif type(None) in get_args(declared):
            keys.add(prefix + f.name)
    return keys


def test_the_nullable_table_covers_every_optional_field():
    for schema, table in NULLABLE.items():
        assert set(table) == optional_keys(schema), schema.__name__


@pytest.mark.parametrize(("schema", "key", "text"), [
    pytest.param(schema, key, text, id=f"{schema.__name__}-{key}")
    for schema, table in NULLABLE.items() for key, text in table.items()])
def test_null_makes_an_optional_field_none(schema, key, text):
    assert OmegaConf.select(parse(schema, f"{key}={text}"), key) is not None
    assert OmegaConf.select(parse(schema, f"{key}={text}", f"{key}=null"), key) is None


@pytest.mark.parametrize("text", ["~", "", "NULL"])
def test_yamls_other_nulls_also_make_an_optional_string_none(text):
    assert parse(SweepConfig, "tracking.experiment=e", f"tracking.experiment={text}").tracking.experiment is None


@pytest.mark.parametrize("key", ["model.name", "training.amp", "out_dir", "tracking.tracking_uri"])
@pytest.mark.parametrize("text", ["null", "", "~"])
def test_null_for_a_plain_string_is_an_error_naming_the_key(key, text):
    with pytest.raises(ConfigError) as err:
        parse(SweepConfig, f"{key}={text}")
    assert err.value.key == key and "needs a value" in str(err.value)


def test_null_for_a_plain_string_exits_2_from_the_command(capsys):
    assert "config 'model.name': needs a value" in command_error(prep_command.main, ["model.name=null"], capsys)


def test_a_refused_sweep_leaves_its_out_dir_as_it_found_it(tmp_path, capsys):
    new, used = tmp_path / "new", tmp_path / "used"
    used.mkdir()
    for out in (new, used):
        err = command_error(sweep_command.main, [f"out_dir={out}", "sweep.num_samples=0"], capsys)
        assert "sweep.num_samples" in err
    assert not new.exists() and used.is_dir() and not list(used.iterdir())


@pytest.mark.parametrize("main", [sweep_command.main, single_command.main])
def test_an_unwritable_out_dir_exits_2_naming_it(main, capsys):
    assert "/proc/forbidden" in command_error(main, ["out_dir=/proc/forbidden/run"], capsys)
