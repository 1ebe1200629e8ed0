"""Sweep config and search space: parsing, overrides, rejection before any trial, seeded proposals."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sweep_fakes import load_config

from plumbing.cli import parse_config, save_config
from plumbing.errors import ConfigError, UserError
from sweep.config import SweepConfig, retrain_seed_count, rung_metric, two_stage_on, validate_sweep
from sweep.searcher import make_searcher
from sweep.space import (
    check_space,
    feature_variants,
    narrow,
    resolve_space,
    space_from_json,
    space_to_json,
    to_distributions,
    variant_key,
)


def cfg_of(*overrides: str):
    return parse_config(SweepConfig, ["task=span", *overrides], "sweep.run", "")


def dists_of(cfg):
    return to_distributions(resolve_space(cfg), cfg)


@pytest.mark.parametrize("task", ["span", "span_crf", "pair"])
def test_builtin_spaces_are_valid_and_cover_the_documented_keys(task):
    cfg = cfg_of(f"task={task}")
    dists = dists_of(cfg)
    check_space(cfg, dists)
    expected = {"training.lr", "training.batch_size", "training.warmup_ratio", "training.weight_decay",
                "training.dropout"}
    if task != "pair":  # pair fixes these on purpose (its space file says why)
        expected |= {"training.epochs", "training.grad_accum", "features.max_length"}
    assert expected <= set(dists)
    assert dists["training.lr"].log
    assert ("training.focal_gamma" in dists) == (task == "pair")
    assert ("features.doc_stride" in dists) == (task != "pair")


def test_command_line_overrides_change_remove_and_replace_parameters():
    cfg = cfg_of("sweep.space.training.lr.high=1e-1", "sweep.space.training.dropout=null",
                 "sweep.space.features.max_length=[64,128]", "sweep.space.training.focal_gamma=[0.0,2.0]")
    space = resolve_space(cfg)
    assert space["training.lr"] == {"type": "loguniform", "low": 1e-5, "high": 0.1}
    assert "training.dropout" not in space
    assert space["features.max_length"] == [64, 128]
    assert space["training.focal_gamma"] == [0.0, 2.0]


def test_a_space_file_replaces_the_builtin_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("training.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-3}\nfeatures.max_length: [64]\n")
    cfg = cfg_of(f"sweep.space_file={path}")
    dists = dists_of(cfg)
    assert set(dists) == {"training.lr", "features.max_length"}
    assert feature_variants(dists) == [{"features.max_length": 64}]


@pytest.mark.parametrize("override, key", [
    ("sweep.space.features.doc_stride=[32,128]", "sweep.space.features.doc_stride"),
    ("sweep.space.training.warmup_ratio.high=1.5", "sweep.space.training.warmup_ratio"),
])
def test_a_space_that_can_propose_an_invalid_config_is_rejected(override, key):
    cfg = cfg_of(override)
    with pytest.raises(ConfigError) as err:
        check_space(cfg, dists_of(cfg))
    assert err.value.key == key
    assert "the space can propose" in str(err.value)


@pytest.mark.parametrize("override, fragment", [
    ("sweep.space.features.max_length={type: int, low: 64, high: 128}", "must be a list of choices"),
    ("sweep.space.features.max_length={type:int,low:64}", "is not in the search space"),
    ("sweep.space.training.droput=null", "is not in the search space"),
    ("sweep.space.data.demo_posts=[100,200]", "only training.* and features.*"),
    ("sweep.space.training.nope=[1,2]", "is not a config key"),
    ("sweep.space.training.lr.type=gaussian", "type must be one of"),
    ("sweep.space.training.lr.low=0", "log range needs low > 0"),
    ("sweep.space.training.lr.low=1", "low < high"),
    ("sweep.space.training.batch_size=[]", "non-empty list"),
    ("sweep.space.training.lr.high=0.1", None),
])
def test_spec_errors_name_the_parameter(override, fragment):
    cfg = cfg_of(override)
    if fragment is None:  # control: a valid override parses
        dists_of(cfg)
        return
    with pytest.raises(ConfigError, match=fragment):
        dists_of(cfg)


def test_pair_rejects_doc_stride_in_the_space():
    with pytest.raises(ConfigError, match="pair features have no windows"):
        dists_of(cfg_of("task=pair", "sweep.space.features.doc_stride=[32,48]"))


def test_grace_period_beyond_the_epochs_is_rejected():
    cfg = cfg_of("sweep.grace_period=5")
    with pytest.raises(ConfigError, match="grace_period"):
        check_space(cfg, dists_of(cfg))


@pytest.mark.parametrize("override, key", [
    ("sweep.scheduler=hyperband", "sweep.scheduler"),
    ("sweep.gpus_per_worker=1.5", "sweep.gpus_per_worker"),
    ("sweep.cpus_per_worker=0", "sweep.cpus_per_worker"),
    ("sweep.reduction_factor=1", "sweep.reduction_factor"),
    ("sweep.num_samples=0", "sweep.num_samples"),
    ("sweep.time_budget_s=0", "sweep.time_budget_s"),
    ("task=pair sweep.rung_metric=loss", "sweep.rung_metric"),  # not a pair metric that ranks (higher is better)
    ("sweep.rung_metric=roc_auc task=span", "sweep.rung_metric"),
])
def test_sweep_section_checks(override, key):
    with pytest.raises(ConfigError) as err:
        validate_sweep(cfg_of(*override.split()))
    assert err.value.key == key


def test_asha_ranks_pair_trials_by_roc_auc_and_span_trials_by_their_metric():
    assert rung_metric(cfg_of("task=pair")) == "roc_auc"
    assert rung_metric(cfg_of("task=pair", "sweep.rung_metric=best_f1")) == "best_f1"
    assert rung_metric(cfg_of("task=span_crf")) == "span_f1"
    assert rung_metric(cfg_of("task=span", "training.metric=exact")) == "exact"


def test_post_search_extras_default_on_for_real_data_only(tmp_path):
    demo = cfg_of()
    real = cfg_of("data.name=redsm5", f"data.dir={tmp_path}")
    assert not two_stage_on(demo) and retrain_seed_count(demo) == 0
    assert two_stage_on(real) and retrain_seed_count(real) == 3
    assert demo.sweep.final_test and real.sweep.final_test
    assert two_stage_on(cfg_of("sweep.two_stage=true"))
    assert retrain_seed_count(cfg_of("data.name=redsm5", f"data.dir={tmp_path}", "sweep.retrain_seeds=0")) == 0


def test_feature_variants_are_every_combination():
    dists = dists_of(cfg_of("sweep.space.features.max_length=[64,96,128]",
                            "sweep.space.features.doc_stride=[16,32]"))
    variants = feature_variants(dists)
    assert len(variants) == 6
    assert len({variant_key(v) for v in variants}) == 6
    params = {"training.lr": 1e-3, "features.max_length": 96, "features.doc_stride": 16}
    assert variant_key(params) == "features.doc_stride=16,features.max_length=96"


def _proposals(seed: int, n: int = 8) -> list[dict]:
    """Ask the searcher for n configs, feeding each back a score that depends on its lr."""
    cfg = cfg_of()
    searcher = make_searcher(dists_of(cfg), seed, n_startup=3)
    out = []
    for i in range(n):
        params = searcher.suggest(f"t{i}")
        out.append(params)
        searcher.on_trial_complete(f"t{i}", {"best_metric": -abs(math.log10(params["training.lr"]) + 3)})
    return out


def test_the_same_seed_proposes_the_same_configs():
    first, second, other = _proposals(7), _proposals(7), _proposals(8)
    assert first == second
    assert first != other
    assert len({tuple(sorted(p.items())) for p in first}) == len(first)


def test_narrowed_space_stays_inside_and_around_the_top_configs():
    dists = dists_of(cfg_of())
    top = [{"training.lr": 1e-3, "training.batch_size": 8, "features.max_length": 128},
           {"training.lr": 3e-3, "training.batch_size": 32, "features.max_length": 128}]
    narrowed = narrow(dists, top)
    lr = narrowed["training.lr"]
    assert isinstance(lr, FloatDistribution) and lr.log
    assert dists["training.lr"].low <= lr.low < 1e-3 and 3e-3 < lr.high <= dists["training.lr"].high
    assert lr.high / lr.low < dists["training.lr"].high / dists["training.lr"].low
    assert narrowed["training.batch_size"] == CategoricalDistribution([8, 32])
    assert narrowed["features.max_length"] == CategoricalDistribution([128])
    assert narrowed["training.warmup_ratio"] == dists["training.warmup_ratio"]  # not in top: unchanged


def test_resume_uses_the_saved_config_and_rejects_contradicting_overrides(tmp_path):
    run_dir = tmp_path / "run"
    save_config(cfg_of(f"out_dir={run_dir}", "sweep.num_samples=3", "seed=5"), run_dir)
    cfg, _ = load_config([f"resume={run_dir}"])
    assert (cfg.sweep.num_samples, cfg.seed, cfg.out_dir) == (3, 5, str(run_dir))
    cfg, _ = load_config([f"out_dir={run_dir}", "resume=true", "sweep.num_samples=3"])
    assert cfg.resume == str(run_dir)
    with pytest.raises(ConfigError, match="was started with 3"):
        load_config([f"resume={run_dir}", "sweep.num_samples=9"])
    with pytest.raises(UserError, match="not a sweep run directory"):
        load_config([f"resume={tmp_path / 'nothing'}"])
    (run_dir / "search").mkdir()
    with pytest.raises(ConfigError, match="already holds a sweep"):
        load_config([f"out_dir={run_dir}"])


def test_saved_config_records_the_space_in_force(tmp_path):
    cfg, dists = load_config([f"out_dir={tmp_path}", "sweep.space.training.dropout=null"])
    save_config(cfg, tmp_path)
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.sweep.space.training.dropout is None  # removed, and removed again on resume
    assert saved.sweep.space.training.lr.type == "loguniform"
    again, _ = load_config([f"resume={tmp_path}"])
    assert resolve_space(again) == resolve_space(cfg)


@pytest.mark.slow
def test_the_command_line_rejects_a_bad_space_with_status_2_before_starting_ray(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sweep.run", f"out_dir={tmp_path}",
                           "sweep.space.features.doc_stride=[32,128]"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "sweep.space.features.doc_stride" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "config.yaml").exists()
    help_proc = subprocess.run([sys.executable, "-m", "sweep.run", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert help_proc.returncode == 0 and "sweep.num_samples" in help_proc.stdout


def test_paths_reach_the_trials_absolute(tmp_path, monkeypatch):
    """Trials run in Ray's working directories, where a relative path points elsewhere."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    cfg, _ = load_config(["task=span", "out_dir=runs/s", "cache_dir=.c", "data.dir=data"])
    assert cfg.out_dir == str(tmp_path / "runs" / "s") and cfg.cache_dir == str(tmp_path / ".c")
    assert cfg.data.dir == str(tmp_path / "data")


def test_a_saved_space_reads_back_equal_steps_and_log_ranges_included():
    dists = {"training.batch_size": IntDistribution(8, 64, step=8),
             "training.warmup_steps": IntDistribution(1, 512, log=True),
             "training.dropout": FloatDistribution(0.0, 0.5, step=0.05),
             "training.lr": FloatDistribution(1e-5, 1e-2, log=True),
             "features.max_length": CategoricalDistribution([128, 256])}
    narrowed = narrow(dists, [{"training.batch_size": 16, "training.warmup_steps": 8, "training.dropout": 0.1,
                               "training.lr": 3e-4, "features.max_length": 256}])
    for space in (dists, narrowed):
        assert space_from_json(json.loads(json.dumps(space_to_json(space)))) == space
    assert narrowed["training.batch_size"].step == 8 and narrowed["training.warmup_steps"].log
    spec = {"training.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}  # a space.json of before
    assert space_from_json(spec) == {"training.lr": FloatDistribution(1e-5, 1e-2, log=True)}
