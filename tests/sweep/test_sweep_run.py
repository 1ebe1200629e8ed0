"""A whole sweep on a local Ray cluster with logical GPUs: the tiny model on a small demo corpus.

One sweep (4 trials, 3 epochs) is run once for the module and then examined: ASHA stops the weak
trial, the rest finish, summary / trials table / TensorBoard (one run per trial, its HParams with
how it ended) / the best checkpoint (inference files only) / test metrics are on disk, the sweep
printed one line per trial event, the features went through the object store once per variant
(the feature cache is deleted before the trials start, so a trial that tokenized would rebuild
it), and trials that overlapped in time held different (node, GPU) pairs.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import ray
from ray_helpers import local_cluster
from sweep_fakes import load_config, read_results

from plumbing.errors import ConfigError
from sweep.run import execute, prepare_run
from sweep.searcher import make_searcher
from sweep.space import feature_variants, variant_key
from trainable.checkpoint import STATE_FILE

EPOCHS = 3
GOOD_LR, BAD_LR = 5e-3, 1e-5
SEED = 0  # its first 4 proposals: GOOD_LR x3, then BAD_LR (checked in the test below)


def sweep_args(tmp: Path, *extra: str) -> list[str]:
    return ["task=span", f"out_dir={tmp / 'run'}", f"cache_dir={tmp / 'cache'}", "data.demo_posts=120",
            f"training.epochs={EPOCHS}", "training.batch_size=16", "training.grad_accum=1", f"seed={SEED}",
            "sweep.num_samples=4", "sweep.startup_trials=4", "sweep.grace_period=1",
            "sweep.reduction_factor=2", "sweep.gpus_per_worker=1", "sweep.cpus_per_worker=1",
            "sweep.verbose=1", f"sweep.space.training.lr=[{BAD_LR},{GOOD_LR}]",
            "sweep.space.training.batch_size=null", "sweep.space.training.grad_accum=null",
            "sweep.space.training.epochs=null", "sweep.space.features.doc_stride=null", *extra]


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and two nodes with 2 and 1 logical GPUs (CPU machine: DDP on gloo)."""
    with local_cluster({"num_cpus": 2, "num_gpus": 2}, {"num_cpus": 1, "num_gpus": 1}, num_cpus=0) as (c, context):
        yield SimpleNamespace(cluster=c, dashboard_url=context.dashboard_url)


def train_runs(dashboard_url: str) -> list[dict]:
    """Ray Train's record of every run (attempts, workers, their nodes and GPU ids): the dashboard's REST
    API that its Train view reads, the only public place that names a worker's GPU ids."""
    request = urllib.request.Request(f"http://{dashboard_url}/api/train/v2/runs/v1", headers=auth_header())
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["train_runs"]


def auth_header() -> dict[str, str]:
    """The bearer token a token-authenticated Ray (RAY_AUTH_MODE=token) wants on its dashboard's REST
    API, where Ray's clients look for it: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep-e2e")
    cfg, dists = load_config(sweep_args(tmp))
    prepared = prepare_run(cfg, dists)
    # From here on the features exist only in the object store.
    shutil.rmtree(tmp / "cache" / "features")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = execute(cfg, dists, prepared)
    return SimpleNamespace(runs=train_runs(cluster.dashboard_url), cfg=cfg, dists=dists, prepared=prepared,
                           summary=summary, tmp=tmp, run_dir=Path(cfg.out_dir), stdout=stdout.getvalue())


def trials_in_order(summary: dict) -> list[dict]:
    return sorted(summary["trials"], key=lambda t: Path(t["path"]).name)


@pytest.mark.slow
def test_trials_are_the_seeded_proposals(swept):
    searcher = make_searcher(swept.dists, SEED, 4)
    expected = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [p["training.lr"] for p in expected] == [GOOD_LR] * 3 + [BAD_LR]  # the test's premise
    assert [t["params"] for t in trials_in_order(swept.summary)] == expected


@pytest.mark.slow
def test_asha_stops_the_weak_trial_and_the_others_finish(swept):
    summary = swept.summary
    assert summary["num_trials"] == 4 and len({t["trial_id"] for t in summary["trials"]}) == 4
    weak = trials_in_order(summary)[-1]
    assert weak["params"]["training.lr"] == BAD_LR
    assert weak["stop_reason"] == "asha" and weak["epochs_run"] < EPOCHS
    for t in trials_in_order(summary)[:3]:
        assert t["stop_reason"] == "finished" and t["epochs_run"] == EPOCHS and t["state"] == "TERMINATED"
        assert t["error"] is None
    assert summary["best"]["params"]["training.lr"] == GOOD_LR
    on_disk = json.loads((swept.run_dir / "summary.json").read_text())
    assert on_disk["counts"] == {"asha": 1, "finished": 3}
    assert len(pd.read_parquet(swept.run_dir / "trials.parquet")) == 4


@pytest.mark.slow
def test_best_checkpoint_and_the_test_split_evaluation_are_kept(swept):
    best = swept.run_dir / "best_checkpoint"
    assert (best / "meta.json").is_file() and (best / "model.pt").is_file()
    assert not (best / STATE_FILE).exists()  # optimizer & co. stay in the trial's checkpoint, for resume
    assert (Path((best / ".source").read_text()) / STATE_FILE).is_file()
    meta = json.loads((best / "meta.json").read_text())
    assert meta["metric"] == pytest.approx(swept.summary["best"]["metric"])
    test = swept.summary["test"]
    assert test["trial_id"] == swept.summary["best"]["trial_id"]
    assert test["checkpoint_epoch"] == meta["epoch"] and "f1" in test
    for t in swept.summary["trials"]:  # one checkpoint kept per trial
        assert len([p for p in (Path(t["path"]) / "train").glob("checkpoint_*") if p.is_dir()]) <= 1
    for name in ("optimization_history.png", "learning_curves.png", "slice.png", "config.yaml"):
        assert (swept.run_dir / name).is_file()


@pytest.mark.slow
def test_best_checkpoint_is_a_question_answering_model_with_its_card(swept):
    import yaml
    from transformers import AutoModelForQuestionAnswering

    best = swept.run_dir / "best_checkpoint"
    assert type(AutoModelForQuestionAnswering.from_pretrained(best)).__name__ == "BertForQuestionAnswering"
    header = yaml.safe_load((best / "README.md").read_text().split("---")[1])
    results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in header["model-index"][0]["results"]}
    assert results["test"]["f1"] == pytest.approx(swept.summary["test"]["f1"], abs=1e-4)
    assert results["validation"]["f1"] == pytest.approx(swept.summary["best"]["result"]["val_f1"], abs=1e-4)


@pytest.mark.slow
def test_best_checkpoint_is_enough_to_evaluate_and_predict(swept, tmp_path):
    from trainable import evaluate, predict

    best = swept.run_dir / "best_checkpoint"
    evaluate.main([f"checkpoint={best}", "split=val", f"out_dir={tmp_path / 'eval'}",
                   f"cache_dir={tmp_path / 'cache'}"])  # not the sweep's cache: a test below checks it is gone
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["f1"] == pytest.approx(swept.summary["best"]["result"]["val_f1"], abs=1e-4)
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,text\np1,I can't sleep at night and I feel worthless.\np2,Nice weather today.\n")
    predict.main([f"checkpoint={best}", f"input={posts}", f"out_dir={tmp_path / 'predict'}"])
    records = [json.loads(x) for x in (tmp_path / "predict" / "predictions.jsonl").read_text().splitlines()]
    assert {r["post_id"] for r in records} == {"p1", "p2"}


@pytest.mark.slow
def test_every_trial_is_one_tensorboard_run_that_says_how_it_ended(swept):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    tb = EventMultiplexer().AddRunsFromDirectory(str(swept.run_dir))
    tb.Reload()
    trials = {Path(t["path"]).name: t for t in swept.summary["trials"]}
    assert sorted(tb.Runs()) == sorted(f"search/{name}/tb" for name in trials)  # no Tune event files
    for name, t in trials.items():
        run = f"search/{name}/tb"
        steps = [e.step for e in tb.Scalars(run, "val/f1")]
        assert steps[: t["epochs_run"]] == list(range(1, t["epochs_run"] + 1))
        assert "train/loss" in tb.GetAccumulator(run).Tags()["scalars"] or t["epochs_run"] == 1
        content = tb.PluginRunToTagToContent(metadata.PLUGIN_NAME)[run]
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["stop_reason"].string_value == t["stop_reason"], name
        assert start.hparams["training.lr"].number_value == pytest.approx(t["params"]["training.lr"])


@pytest.mark.slow
def test_the_sweep_prints_one_line_per_trial_event(swept):
    lines = swept.stdout.splitlines()
    assert not [x for x in lines if "Trial status" in x or "TrainingReport" in x]  # no Tune tables
    ends = {"finished": "finished 3/3 epochs", "asha": "stopped by ASHA after epoch"}
    for t in swept.summary["trials"]:
        mine = [x.split(": ", 1)[1] for x in lines if x.startswith(f"search trial {t['trial_id']}: ")]
        assert len(mine) == 1 + t["epochs_run"] + 1, mine
        assert mine[0].startswith("started: ") and f"lr={t['params']['training.lr']:.3g}" in mine[0]
        assert [x.split(":")[0] for x in mine[1:-1]] == [f"epoch {e}/3" for e in range(1, t["epochs_run"] + 1)]
        assert mine[-1].startswith(ends[t["stop_reason"]]), mine[-1]


@pytest.mark.slow
def test_features_are_shared_once_per_variant_and_never_rebuilt_by_trials(swept):
    variants = feature_variants(swept.dists)
    refs = swept.prepared.shared.refs
    assert len(variants) == 2 and set(refs) == {variant_key(v) for v in variants}
    assert len({r.hex() for r in refs.values()}) == len(refs)
    for variant in variants:
        fs = ray.get(refs[variant_key(variant)])
        assert fs.meta["settings"]["features"]["max_length"] == variant["features.max_length"]
    timings = json.loads((swept.run_dir / "timings.json").read_text())
    assert timings["variants"] == 2
    assert timings["started_at"] <= timings["features_ready_at"] <= timings["first_result_at"] <= timings["finished_at"]
    # The feature cache was deleted before the trials; preparing features in a trial recreates it.
    assert not (swept.tmp / "cache" / "features").exists()
    for t in swept.summary["trials"]:
        params = json.loads((Path(t["path"]) / "params.json").read_text())
        assert set(params) == set(swept.dists)
        assert all(isinstance(v, int | float | str) for v in params.values())


def gpu_intervals(swept) -> list[tuple[int, int, tuple[str, int]]]:
    """(first result, last result, (node, GPU id)) of every trial, the GPU from Ray Train's record.

    Between its first and last result a trial's worker certainly holds its GPU; the attempt's own
    start and end times are not that (they include waiting for resources and teardown, and a run
    ASHA killed is never marked ended).
    """
    out = []
    for run in swept.runs:
        # One attempt trained. When ASHA stops a trial, its workers may go before its Train controller,
        # which then records that attempt ERRORED and schedules another that is never given workers:
        # PENDING, or ABORTED once Ray Train sees that the controller's process (the trial) is gone.
        trained = [a for a in run["attempts"] if a["workers"]]
        assert len(trained) == 1, run["attempts"]
        untrained = {a["status"] for a in run["attempts"] if not a["workers"]}
        assert untrained <= {"PENDING", "ABORTED"}, run["attempts"]
        slots = [(w["node_id"], g) for w in trained[0]["workers"] for g in w["gpu_ids"]]
        assert len(slots) == 1  # one worker with one GPU per trial
        results = read_results(Path(run["run_settings"]["run_config"]["storage_path"]))
        out.append((results[0]["timestamp"], results[-1]["timestamp"], slots[0]))
    return out


@pytest.mark.slow
def test_overlapping_trials_hold_different_gpus(swept):
    intervals = gpu_intervals(swept)
    assert len(intervals) >= 4
    overlapping = [(x, y) for x, y in itertools.combinations(intervals, 2) if x[0] < y[1] and y[0] < x[1]]
    assert overlapping, "trials should have run concurrently"
    for x, y in overlapping:
        assert x[2] != y[2], (x, y)


@pytest.mark.slow
def test_an_impossible_request_fails_before_any_work_with_what_the_cluster_has(cluster, tmp_path):
    cfg, dists = load_config(sweep_args(tmp_path, "sweep.gpus_per_worker=4"))
    with pytest.raises(ConfigError) as err:
        prepare_run(cfg, dists)
    assert err.value.key == "sweep.gpus_per_worker"
    assert "3 node(s)" in str(err.value) and "2 CPU/2 GPU" in str(err.value)
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "cache").exists()
    cfg, dists = load_config(sweep_args(tmp_path, "sweep.workers_per_trial=4"))
    with pytest.raises(ConfigError, match="holds only 3 such worker"):
        prepare_run(cfg, dists)
