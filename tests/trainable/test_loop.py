"""The train loop on the small demo with the tiny model: learning, accumulation, resume, AMP, TB."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainable.batching import Collator, columns_from_table
from trainable.checkpoint import load_model, read_meta
from trainable.device import amp_dtype, autocast_context
from trainable.loop import accumulate, task_model, train_loop
from trainable.model_pass import evaluate
from trainable.models import build_model
from trainable.session import LocalSession

THROUGHPUT = ("samples_per_s", "tokens_per_s")


class Interrupted(Exception):
    pass


class StopAfter(LocalSession):
    """A LocalSession whose run dies right after reporting epoch ``stop`` (a crash, a kill)."""

    def __init__(self, out_dir, stop: int):
        super().__init__(out_dir)
        self.stop = stop

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.stop:
            raise Interrupted


# lr 2e-3: on this small demo (84 training posts) the default 1e-3 takes most of 8 epochs to start learning
PAIR_RUN = {"epochs": 8, "patience": 0, "lr": 2e-3}


def _history(out_dir) -> list[dict]:
    return json.loads((Path(out_dir) / "metrics.json").read_text())


def _untrained(task, demo_features, train_config, tmp_path) -> dict[str, float]:
    fs = demo_features(task)
    cfg = OmegaConf.create(train_config(task, tmp_path))
    torch.manual_seed(cfg.seed)
    model = task_model(cfg, fs.meta["model"], columns_from_table(fs.features["train"]))
    result = evaluate(model, columns_from_table(fs.features["val"]), fs.examples["val"], cfg,
                      device=torch.device("cpu"), pad_token_id=fs.meta["tokenizer"]["pad_token_id"])
    return {**result.scalars, "loss": result.loss}


@pytest.fixture(scope="module")
def pair_run(train_config, demo_features, tmp_path_factory):
    """An 8-epoch pair run with TensorBoard, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("pair_run")
    config = train_config("pair", out, **PAIR_RUN)
    train_loop(config, session=LocalSession(out), features=demo_features("pair"))
    return out


def test_pair_run_leaves_reports_and_best_checkpoint(pair_run):
    history = _history(pair_run)
    assert [m["epoch"] for m in history] == list(range(1, 9))
    keys = {"epoch", "metric", "val_f1", "val_roc_auc", "val_precision", "train_loss", "val_loss", "lr",
            "val_own_top1", "val_own_mrr", "val_best_f1_thresh", *THROUGHPUT}
    assert keys <= set(history[0])
    assert all(math.isfinite(m["train_loss"]) and m[k] > 0 for m in history for k in THROUGHPUT)
    assert history[0]["setup_s"] > 0 and not any("setup_s" in m for m in history[1:])
    best = max(history, key=lambda m: m["metric"])
    meta = read_meta(pair_run / "checkpoint")
    assert meta["epoch"] == min(m["epoch"] for m in history if m["metric"] == best["metric"])
    assert meta["task"] == "pair" and meta["metric"] == best["metric"]
    assert meta["evidence_threshold"] == next(m for m in history if m["epoch"] == meta["epoch"])["val_best_f1_thresh"]
    assert (pair_run / "checkpoint" / "tokenizer.json").is_file()


def test_pair_learns(pair_run, demo_features, train_config, tmp_path):
    untrained = _untrained("pair", demo_features, train_config, tmp_path)
    history = _history(pair_run)
    # An untrained head calls (nearly) everything evidence: f1 ~ 0.18 on the demo's validation pairs,
    # where each evidence sentence also stands under the nine other criteria (0.76 on the annotated
    # pairs alone). The rankings (ROC-AUC, the own criterion's rank) show what was learned; on this
    # small demo (84 training posts) learning the criterion only starts after ~5 epochs, the 400-post
    # test in test_evaluate_predict.py shows how far it goes.
    assert max(m["metric"] for m in history) > untrained["f1"] + 0.05
    assert max(m["val_roc_auc"] for m in history) > untrained["roc_auc"] + 0.08
    assert max(m["val_own_mrr"] for m in history) > untrained["own_mrr"] + 0.1


@pytest.mark.slow
@pytest.mark.parametrize("task", ["span", "span_crf"])
def test_span_heads_learn(task, train_config, demo_features, tmp_path):
    """Within 3 epochs both heads learn the no-answer decision (half of the validation examples,
    features.eval_no_answer_ratio=1) and halve the validation loss; an untrained head answers
    nearly everywhere. (Exact evidence spans are beyond the from-scratch tiny BERT on this budget:
    span_f1 stays 0 here; see the tiny-deberta test below.)"""
    untrained = _untrained(task, demo_features, train_config, tmp_path)
    config = train_config(task, tmp_path, epochs=3, patience=0)
    train_loop(config, session=LocalSession(tmp_path), features=demo_features(task))
    history = _history(tmp_path)
    assert max(m["val_f1"] for m in history) > untrained["f1"] + 25
    assert min(m["val_loss"] for m in history) < untrained["loss"] / 2
    if task == "span":
        assert max(m["metric"] for m in history) > untrained["f1"] + 25


# task -> (epochs, the best validation scores it must beat). Only span_crf runs in the suite: the
# span head needs 10 epochs (about 3 min of CI) for the same finding (README's tiny-deberta rows:
# HasAns F1 67 after 10 epochs); add ("span", (10, {"val_HasAns_f1": 50, "val_f1": 65})) to check it.
RELATIVE_ATTENTION_BARS = {
    "span_crf": (8, {"metric": 0.5, "val_HasAns_f1": 60, "val_f1": 70}),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(RELATIVE_ATTENTION_BARS))
def test_span_heads_learn_evidence_spans_with_relative_attention(task, train_config, tmp_path):
    """With tiny-deberta (relative positions: a token can look at its own sentence without first
    learning what absolute positions mean) the heads find the evidence sentences of the default
    400-post demo: HasAns F1 from 0 one epoch in to above 50 (a random model's is near 0), where the
    tiny BERT stays near 15 (README: known limit of the demo). ``span`` needs the loss on every
    answer token (training.inside_weight) for that; from two positions per answer it reaches ~40."""
    epochs, bars = RELATIVE_ATTENTION_BARS[task]
    config = train_config(task, tmp_path, epochs=epochs, patience=0)
    config["data"]["demo_posts"] = 400
    config["model"]["name"] = "tiny-deberta"
    config["features"]["doc_stride"] = 32
    train_loop(config, session=LocalSession(tmp_path))
    history = _history(tmp_path)
    assert history[0]["val_HasAns_f1"] < 5  # one epoch in: no evidence found yet
    for key, bar in bars.items():
        assert max(m[key] for m in history) > bar, (key, [round(m[key], 2) for m in history])


def test_tensorboard_holds_steps_epochs_and_hparams(pair_run):
    acc = EventAccumulator(str(pair_run / "tb"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/f1", "val/roc_auc", "val/own_top1", "val/own_mrr",
            "hparam/best_metric"} <= scalars
    assert [e.step for e in acc.Scalars("val/f1")] == list(range(1, 9))
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams)
    assert "_hparams_/experiment" not in hparams  # TensorBoard builds the experiment from all runs
    assert b"training.lr" in hparams["_hparams_/session_start_info"]


def test_accumulation_equals_one_big_batch(demo_features):
    fs = demo_features("span")
    cols = columns_from_table(fs.features["train"])
    torch.manual_seed(0)
    model = build_model(fs.meta["model"], "span", dropout=0.0, inside_weight=0.5)
    collate = Collator(cols, fs.meta["tokenizer"]["pad_token_id"])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    rows = np.arange(12)

    def grads(micro_batches):
        model.zero_grad()
        loss = accumulate(model, [collate(r) for r in micro_batches], scaler, nullcontext())
        return loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss_one, one = grads([rows])
    loss_acc, acc = grads(np.split(rows, 3))
    assert len(one) == len(acc) > 10
    torch.testing.assert_close(loss_acc, loss_one, rtol=1e-5, atol=1e-6)
    for a, b in zip(acc, one, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(pair_run, train_config, demo_features, tmp_path):
    config = train_config("pair", tmp_path, **PAIR_RUN)  # as pair_run, the uninterrupted run
    with pytest.raises(Interrupted):
        train_loop(config, session=StopAfter(tmp_path, stop=4), features=demo_features("pair"))
    resumed_from = read_meta(tmp_path / "checkpoint")["epoch"]
    config["resume"] = str(tmp_path / "checkpoint")
    train_loop(config, session=LocalSession(tmp_path, resume=config["resume"]), features=demo_features("pair"))
    full, resumed = _history(pair_run), _history(tmp_path)
    assert [m["epoch"] for m in resumed] == list(range(1, 9))
    for a, b in zip(full[resumed_from:], resumed[resumed_from:], strict=True):
        timings = (*THROUGHPUT, "setup_s")  # setup_s: in the first epoch a process runs, resumed or not
        assert {k: v for k, v in a.items() if k not in timings} == {k: v for k, v in b.items() if k not in timings}


def test_bf16_autocast_runs_on_cpu(train_config, demo_features, tmp_path):
    assert amp_dtype("auto", torch.device("cpu")) is None  # CPU bf16 only when asked for
    assert amp_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    fs = demo_features("pair")
    model = build_model(fs.meta["model"], "pair")
    seen = []
    model.base_model.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda mod, inp, out: seen.append(out.dtype))
    batch = Collator(columns_from_table(fs.features["train"]), 0)(np.arange(8))
    loss = accumulate(model, [batch], torch.amp.GradScaler("cpu", enabled=False),
                      autocast_context(torch.device("cpu"), torch.bfloat16))
    assert seen == [torch.bfloat16] and torch.isfinite(loss)

    train_loop(train_config("pair", tmp_path, epochs=1, amp="bf16"), session=LocalSession(tmp_path),
               features=fs)
    (report,) = _history(tmp_path)
    assert math.isfinite(report["train_loss"]) and math.isfinite(report["val_loss"])
    model, meta, _ = load_model(tmp_path / "checkpoint")
    assert meta["task"] == "pair" and next(model.parameters()).dtype == torch.float32


# ------------------------------------------------------------ the command and its bad-input messages


def _single(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainable.single", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_single_writes_every_output(demo_cache, tmp_path):
    out = tmp_path / "run"
    proc = _single(f"out_dir={out}", f"cache_dir={demo_cache}", "task=pair", "data.demo_posts=120",
                   "features.max_length=128", "training.epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert {"config.yaml", "metrics.json", "test_metrics.json", "checkpoint", "tb"} <= {p.name for p in out.iterdir()}
    test = json.loads((out / "test_metrics.json").read_text())
    assert {"f1", "roc_auc", "confusion", "per_symptom", "checkpoint_epoch"} <= set(test)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # piped: one line per epoch and why it stopped, no progress bar
    epochs = [ln.split(":")[0] for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert epochs == ["epoch 1/2", "epoch 2/2"]
    assert "finished 2 epochs" in proc.stdout and "\r" not in proc.stdout + proc.stderr
    # a second run into the same out_dir is refused and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _single(f"out_dir={out}", f"cache_dir={demo_cache}", "task=pair", "data.name=redsm5",
                    f"data.dir={tmp_path / 'empty'}")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"resume={out / 'checkpoint'}" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.fixture(scope="module")
def broken_checkpoint(pair_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "checkpoint"
    shutil.copytree(pair_run / "checkpoint", path)
    (path / "model.pt").unlink()
    return path


@pytest.fixture(scope="module")
def old_format_checkpoint(pair_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("old") / "checkpoint"
    shutil.copytree(pair_run / "checkpoint", path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    return path


BAD_INPUTS = {
    "batch_size_0": (["training.batch_size=0"], "training.batch_size"),
    "grad_accum_0": (["training.grad_accum=0"], "training.grad_accum"),
    "fp16_on_cpu": (["training.amp=fp16", "training.device=cpu"], "training.amp=bf16"),  # cpu: CUDA may exist
    "missing_checkpoint": (["resume={tmp}/nowhere"], "does not exist"),
    "incomplete_checkpoint": (["task=pair", "resume={broken}"], "missing model.pt"),
    "other_task_checkpoint": (["task=span", "resume={pair}"], "is a 'pair' checkpoint"),
    "old_format_checkpoint": (["task=pair", "resume={old}"], "has format 1"),
    "unknown_model_offline": (["model.name=no-such-org/no-such-model"], "model.name=tiny"),
    "other_tokenizer": (["task=pair", "data.demo_posts=60", "resume={pair}"], "another tokenizer"),
    "unwritable_out_dir": (["out_dir=/proc/forbidden/run"], "cannot be created"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_a_message(case, pair_run, broken_checkpoint, old_format_checkpoint, demo_cache,
                                         tmp_path):
    args, expected = BAD_INPUTS[case]
    paths = {"tmp": tmp_path, "broken": broken_checkpoint, "old": old_format_checkpoint,
             "pair": pair_run / "checkpoint"}
    args = [a.format(**paths) for a in args]
    proc = _single(f"out_dir={tmp_path / 'out'}", f"cache_dir={demo_cache}", "data.demo_posts=120",
                   "features.max_length=128", "training.epochs=1", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr
