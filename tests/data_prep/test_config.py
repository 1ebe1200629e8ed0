"""Config parsing and validation: typed overrides, unknown keys, ranges, --help."""

from pathlib import Path

import pytest

from data_prep.config import PrepConfig, split_ratios, validate_prep
from plumbing.cli import parse_config, run_cli, save_config
from plumbing.errors import ConfigError, UserError


def parse(*argv):
    cfg = parse_config(PrepConfig, list(argv), "data_prep", "test")
    validate_prep(cfg)
    return cfg


def test_defaults_run_offline_on_the_demo():
    cfg = parse()
    assert (cfg.task, cfg.data.name, cfg.model.name) == ("span", "demo", "tiny")
    assert split_ratios(cfg) == [0.8, 0.1, 0.1]
    assert split_ratios(parse("task=pair")) == [0.7, 0.15, 0.15]


def test_dotted_and_flag_overrides_are_typed():
    cfg = parse("features.max_length=128", "--task", "pair", "--features.doc_stride=32")
    assert cfg.features.max_length == 128 and cfg.features.doc_stride == 32 and cfg.task == "pair"


@pytest.mark.parametrize(
    ("argv", "key", "words"),
    [
        (["features.bogus=1"], "features.bogus", "unknown key"),
        (["features.max_length=abc"], "features.max_length", "Integer"),
        (["features.doc_stride=256"], "features.doc_stride", "below features.max_length"),
        (["task=ner"], "task", "span, span_crf, pair"),
        (["data.name=redsm5"], "data.dir", "needs data.dir"),
        (["data.name=squad_v2", "data.dir=x", "task=pair"], "task", "span or span_crf"),
        (["data.split_ratios=[0.5,0.5,0.5]"], "data.split_ratios", "summing to 1"),
        (["data.fuzzy_threshold=0"], "data.fuzzy_threshold", "(0, 1]"),
        (["features.question_mode=full"], "features.question_mode", "criterion"),
    ],
)
def test_bad_values_name_the_key(argv, key, words):
    with pytest.raises(ConfigError) as err:
        parse(*argv)
    assert err.value.key == key
    assert words in str(err.value)


def test_stray_argument_is_a_user_error():
    with pytest.raises(UserError, match="key=value"):
        parse("oops")


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as done:
        parse("--help")
    assert done.value.code == 0
    text = capsys.readouterr().out
    for key in ("features.max_length", "data.split_ratios", "model.name", "cache_dir"):
        assert key in text


def test_user_error_exits_2_with_message(capsys):
    def main(argv):
        raise ConfigError("training.lr", "must be > 0")

    with pytest.raises(SystemExit) as done:
        run_cli(main, [])
    assert done.value.code == 2
    assert "config 'training.lr': must be > 0" in capsys.readouterr().err


def test_resolved_config_is_saved(tmp_path):
    path = save_config(parse("features.max_length=64", "features.doc_stride=16"), tmp_path)
    assert "max_length: 64" in Path(path).read_text()


def test_cross_negative_ratios_and_the_selected_metric():
    from trainable.config import TrainConfig, metric_name, validate_train

    def train(*argv):
        cfg = parse_config(TrainConfig, list(argv), "trainable.single", "test")
        validate_train(cfg, check_hardware=False)
        return cfg

    assert metric_name(train("task=pair")) == "f1" and metric_name(train("task=span")) == "f1"
    assert metric_name(train("task=pair", "training.metric=own_top1")) == "own_top1"
    for argv, key, words in (
        (["task=pair", "features.cross_negative_ratio=-3"], "features.cross_negative_ratio", "-1 (all)"),
        (["task=pair", "training.metric=own_top2"], "training.metric", "own_top1, own_mrr"),
        (["task=span", "training.metric=own_top1"], "training.metric", "for task=span"),
        (["task=pair", "training.metric=own_mrr", "features.eval_cross_negative_ratio=2"], "training.metric",
         "eval_cross_negative_ratio=-1"),
    ):
        with pytest.raises(ConfigError) as err:
            train(*argv)
        assert err.value.key == key and words in str(err.value), argv
