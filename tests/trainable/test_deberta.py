"""DeBERTa-v3 and other encoders: the built-in ``tiny-deberta``, a local DeBERTa-v3-style copy
(DebertaV2 weights + a Unigram DebertaV2 tokenizer, as ``save_pretrained`` writes them), token
type ids per model and the attention implementation per model class.

The training runs go through ``trainable.single.run`` (train_loop, then the best checkpoint on
test) and are re-scored with ``trainable.evaluate``; they are ``slow``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data_prep.demo import demo_dir
from data_prep.features import featurize_pair
from data_prep.pipeline import prepare_features
from data_prep.records import PairExample
from data_prep.redsm5 import load_redsm5
from data_prep.symptoms import criteria
from data_prep.tiny import DEBERTA_V3_SETTINGS, TINY_SETTINGS, is_builtin_model, tiny_fingerprint, tiny_model_dir
from data_prep.tokenizer import load_tokenizer, resolve_model, tokenizer_identity
from plumbing.cli import parse_config
from plumbing.errors import UserError
from trainable import evaluate, predict, single
from trainable.batching import Collator, columns_from_table
from trainable.config import TrainConfig
from trainable.model_pass import evaluate as evaluate_split
from trainable.models import build_model
from trainable.session import TEST_METRICS

TEXTS = [f"{s} {v} {t} Entry {i}." for i, (s, v, t) in enumerate(
    (s, v, t) for s in ("I", "My sister", "He") for v in ("can't sleep", "feel tired", "hate myself")
    for t in ("at night.", "every day.", "lately."))]
SHORT_RUN = ["data.demo_posts=60", "features.doc_stride=32", "training.epochs=1"]
NOT_COMPARED = {"checkpoint", "task", "split"}  # evaluate's own bookkeeping keys


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access in any test, whatever the environment says."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> dict[str, Path]:
    """Both built-in models, built from the same texts into one cache."""
    cache = tmp_path_factory.mktemp("cache")
    return {name: tiny_model_dir(TEXTS, cache, name=name) for name in ("tiny", "tiny-deberta")}


# ---------------------------------------------------------------- tiny-deberta, the built-in DeBERTa-v3


def test_tiny_deberta_is_a_small_deberta_v3(builtin):
    from transformers import AutoConfig, AutoModel, DebertaV2Model

    path = builtin["tiny-deberta"]
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "deberta-v2"
    assert {k: getattr(config, k) for k in TINY_SETTINGS} == TINY_SETTINGS
    assert {k: getattr(config, k) for k in DEBERTA_V3_SETTINGS} == DEBERTA_V3_SETTINGS
    assert config.type_vocab_size == 0 and config.relative_attention and not config.position_biased_input
    assert isinstance(AutoModel.from_pretrained(path), DebertaV2Model)
    # the same corpus-trained WordPiece tokenizer as tiny, so tiny's features fit it too
    tok = load_tokenizer(str(path))
    assert type(tok).__name__.startswith("BertTokenizer") and "[UNK]" not in tok.tokenize("I can't sleep")
    assert tokenizer_identity(tok)["fingerprint"] == tokenizer_identity(load_tokenizer(str(builtin["tiny"])))[
        "fingerprint"]


def test_tiny_and_tiny_deberta_never_share_a_directory(builtin):
    assert is_builtin_model("tiny") and is_builtin_model("tiny-deberta")
    assert not is_builtin_model("microsoft/deberta-v3-base")
    tiny, deberta = builtin["tiny"], builtin["tiny-deberta"]
    assert deberta.parent == tiny.parent and deberta.name.startswith("tiny-deberta-")
    assert tiny_fingerprint(TEXTS, name="tiny") != tiny_fingerprint(TEXTS, name="tiny-deberta")
    assert deberta.name == f"tiny-deberta-{tiny_fingerprint(TEXTS, name='tiny-deberta')}"
    stamp = (deberta / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("tiny-deberta", lambda: TEXTS, deberta.parent.parent) == str(deberta)
    assert (deberta / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(ValueError, match="not a built-in model"):
        tiny_fingerprint(TEXTS, name="tiny-roberta")


# ---------------------------------------------------------------- per-model attention and token types


def test_attention_is_sdpa_where_the_class_supports_it_else_eager(builtin):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bert = build_model(str(builtin["tiny"]), "pair")
        deberta = build_model(str(builtin["tiny-deberta"]), "span", gradient_checkpointing=True)
    assert [str(w.message) for w in caught] == []
    assert bert.base_model.config._attn_implementation == "sdpa"
    assert deberta.base_model.config._attn_implementation == "eager"
    assert bert.uses_token_type_ids and not deberta.uses_token_type_ids


def _pair_batch(tokenizer) -> dict[str, torch.Tensor]:
    examples = [PairExample(f"e{i}", c, TEXTS[i], i % 2, "SLEEP_ISSUES", f"p{i}")
                for i, c in enumerate(list(criteria().values())[:4])]
    cols = columns_from_table(featurize_pair(examples, tokenizer, max_length=64))
    return Collator(cols, tokenizer.pad_token_id)(np.arange(len(examples)))


def _encoder_inputs(model, batch) -> tuple[set[str], torch.Tensor]:
    """The keyword arguments the encoder received with a value, and the model's pair logits."""
    seen: set[str] = set()

    def record(module, args, kwargs) -> None:
        seen.update(k for k, v in kwargs.items() if v is not None)  # a classifier passes its None ones on

    hook = model.base_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = model(**batch)["logits"]
    finally:
        hook.remove()
    return seen, logits


@pytest.mark.parametrize("name", ["tiny", "tiny-deberta"])
def test_token_type_ids_reach_only_encoders_with_type_embeddings(name, builtin):
    tokenizer = load_tokenizer(str(builtin[name]))
    batch = _pair_batch(tokenizer)
    assert (batch["token_type_ids"] == 1).any()  # the tokenizer marks the sentence as segment 1
    torch.manual_seed(0)
    model = build_model(str(builtin[name]), "pair").eval()
    seen, logits = _encoder_inputs(model, batch)
    _, without = _encoder_inputs(model, {k: v for k, v in batch.items() if k != "token_type_ids"})
    if name == "tiny":  # BERT has two segment embeddings: the ids are fed and change the output
        assert "token_type_ids" in seen and not torch.allclose(logits, without)
    else:  # type_vocab_size=0: nothing to feed them to
        assert "token_type_ids" not in seen and torch.equal(logits, without)


def _training_step(model, batch) -> int:
    """Forward and backward; how often the first encoder layer's feed-forward ran."""
    runs: list[int] = []
    # a module inside the layer: the layer's own hooks stay outside the checkpoint
    hook = model.base_model.encoder.layer[0].intermediate.register_forward_hook(lambda *_: runs.append(1))
    try:
        model(**batch)["loss"].backward()
    finally:
        hook.remove()
    return len(runs)


@pytest.mark.parametrize("name", ["tiny", "tiny-deberta"])
def test_gradient_checkpointing_recomputes_layers_and_keeps_the_gradients(name, builtin):
    """training.gradient_checkpointing: in a training step every encoder layer runs again in backward
    (its activations were not kept), and the gradients are those of a plain step (no dropout)."""
    batch = _pair_batch(load_tokenizer(str(builtin[name])))
    calls, grads = {}, {}
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same head weights
        model = build_model(str(builtin[name]), "pair", dropout=0.0, gradient_checkpointing=checkpointing).train()
        calls[checkpointing] = _training_step(model, batch)
        grads[checkpointing] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert calls == {False: 1, True: 2}  # the forward, then its recompute in backward
    assert grads[True].keys() == grads[False].keys() and grads[False]
    for n, grad in grads[False].items():
        torch.testing.assert_close(grads[True][n], grad, msg=n)


def test_every_deberta_parameter_gets_a_gradient(builtin):
    """DDP fails on parameters that never receive a gradient."""
    tokenizer = load_tokenizer(str(builtin["tiny-deberta"]))
    batch = _pair_batch(tokenizer)
    model = build_model(str(builtin["tiny-deberta"]), "pair")
    model(**batch)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_hub_deberta_offline_is_a_clear_user_error(train_config, tmp_path):
    name = "microsoft/deberta-v3-base"
    with pytest.raises(UserError) as e:
        load_tokenizer(name)
    msg = str(e.value)
    assert f"model.name={name}" in msg and "HF_HUB_OFFLINE" in msg and "model.name=tiny" in msg
    with pytest.raises(UserError, match=f"model '{name}' was not found"):
        build_model(name, "pair")
    cfg = OmegaConf.merge(train_config("pair", tmp_path), {"model": {"name": name}})
    with pytest.raises(UserError, match=f"model.name={name}"):
        prepare_features(cfg, verbose=False)


# ---------------------------------------------------------------- training runs


def _train_and_reevaluate(out: Path, args: list[str], split: str = "test") -> tuple[dict, list[dict]]:
    """``trainable.single`` (train, best checkpoint on test), then ``trainable.evaluate`` on ``split``;
    returns evaluate's metrics and the run's per-epoch reports."""
    single.run(parse_config(TrainConfig, [f"out_dir={out}", *args], "trainable.single", ""))
    history = json.loads((out / "metrics.json").read_text())
    evaluate.main([f"checkpoint={out / 'checkpoint'}", f"split={split}", f"out_dir={out / 'eval'}"])
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    if split == "test":  # the reloaded checkpoint scores what single scored right after training
        expected = json.loads((out / TEST_METRICS).read_text())
        assert set(metrics) - NOT_COMPARED == set(expected)
        assert {k: v for k, v in metrics.items() if isinstance(v, float)} == pytest.approx(
            {k: v for k, v in expected.items() if isinstance(v, float)}, nan_ok=True)
    return metrics, history


def _checkpoint_encoder(out: Path) -> tuple[str, dict]:
    from trainable.checkpoint import load_model

    model, meta, _ = load_model(out / "checkpoint")
    assert not model.uses_token_type_ids  # type_vocab_size=0 survives the checkpoint's config.json
    return type(model.base_model).__name__, meta


def _untrained(fs, cfg) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    model = build_model(fs.meta["model"], cfg.task)
    result = evaluate_split(model, columns_from_table(fs.features["val"]), fs.examples["val"], cfg,
                            device=torch.device("cpu"), pad_token_id=fs.meta["tokenizer"]["pad_token_id"])
    return result.scalars


@pytest.mark.slow
def test_tiny_deberta_pair_learns_and_its_checkpoint_reloads(demo_cache, tmp_path):
    # Annotated pairs only: this checks DeBERTa's plumbing; criterion-aware learning is tested on tiny.
    args = ["task=pair", "model.name=tiny-deberta", f"cache_dir={demo_cache}", "data.demo_posts=120",
            "features.max_length=128", "training.epochs=6", "training.patience=0",
            "features.cross_negative_ratio=0", "features.eval_cross_negative_ratio=0"]
    metrics, history = _train_and_reevaluate(tmp_path, args, split="val")
    cfg = parse_config(TrainConfig, args, "trainable.single", "")
    fs = prepare_features(cfg, verbose=False)
    labels = fs.examples["val"].column("label").to_numpy()
    everything_evidence_f1 = 2 * labels.mean() / (1 + labels.mean())  # the best an untrained head scores
    untrained = _untrained(fs, cfg)
    assert untrained["f1"] <= everything_evidence_f1 + 1e-9
    assert max(m["metric"] for m in history) > everything_evidence_f1 + 0.05
    assert max(m["val_roc_auc"] for m in history) > max(untrained["roc_auc"] + 0.15, 0.75)
    best = max(history, key=lambda m: m["metric"])
    assert metrics["checkpoint_epoch"] == best["epoch"] and metrics["f1"] == pytest.approx(best["metric"])
    encoder, meta = _checkpoint_encoder(tmp_path)
    assert encoder == "DebertaV2Model" and Path(meta["model"]).name.startswith("tiny-deberta-")


@pytest.mark.slow
def test_tiny_deberta_span_runs_end_to_end(demo_cache, tmp_path):
    metrics, history = _train_and_reevaluate(tmp_path, ["task=span", "model.name=tiny-deberta",
                                                        f"cache_dir={demo_cache}", *SHORT_RUN,
                                                        "features.max_length=96"])
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1_thresh"} <= set(metrics)
    assert _checkpoint_encoder(tmp_path)[0] == "DebertaV2Model"


# ---------------------------------------------------------------- a local DeBERTa-v3-style copy


def _deberta_v3_tokenizer(texts: list[str]):
    """A DeBERTa-v3-style tokenizer (Unigram over Metaspace, [PAD] [CLS] [SEP] [UNK] first) trained on
    ``texts``: what microsoft/deberta-v3-base ships, with a small vocabulary and no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import DebertaV2TokenizerFast

    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    scratch = Tokenizer(models.Unigram())
    scratch.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    scratch.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=1500, special_tokens=special,
                                                               unk_token="[UNK]", show_progress=False))
    vocab = [tuple(piece) for piece in json.loads(scratch.to_str())["model"]["vocab"]]
    return DebertaV2TokenizerFast(vocab=vocab, unk_id=special.index("[UNK]"), model_max_length=512)


@pytest.fixture(scope="module")
def deberta_v3_copy(demo_cache, tmp_path_factory) -> Path:
    """A directory as ``save_pretrained`` writes microsoft/deberta-v3-base, at tiny size."""
    from transformers import DebertaV2Config, DebertaV2Model

    texts = [p.text for p in load_redsm5(demo_dir(Path(demo_cache), 60, 13)).posts] + list(criteria().values())
    tokenizer = _deberta_v3_tokenizer(texts)
    config = DebertaV2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **TINY_SETTINGS,
                             **DEBERTA_V3_SETTINGS)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("deberta-v3-copy")
    DebertaV2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("task", ["pair", "span"])
def test_local_deberta_v3_copy_trains_checkpoints_and_evaluates(task, deberta_v3_copy, demo_cache, tmp_path):
    tok = load_tokenizer(str(deberta_v3_copy))
    assert type(tok).__name__.startswith("DebertaV2Tokenizer") and tokenizer_identity(tok)["uses_token_type_ids"]
    # its small Unigram vocabulary cuts the longest criterion into 68 tokens, hence longer windows
    metrics, history = _train_and_reevaluate(tmp_path, [f"task={task}", f"model.name={deberta_v3_copy}",
                                                        f"cache_dir={demo_cache}", *SHORT_RUN,
                                                        "features.max_length=128"])
    assert len(history) == 1 and np.isfinite(history[0]["val_loss"])
    encoder, meta = _checkpoint_encoder(tmp_path)
    assert encoder == "DebertaV2Model" and meta["model"] == str(deberta_v3_copy)
    assert type(load_tokenizer(str(tmp_path / "checkpoint"))).__name__.startswith("DebertaV2Tokenizer")
    if task == "span":  # Metaspace offsets still cut the post's own characters
        posts = tmp_path / "posts.jsonl"
        text = "I can\u2019t sleep at night.  Everything feels pointless and I\u2019m tired."
        posts.write_text(json.dumps({"post_id": "p1", "text": text}) + "\n", encoding="utf-8")
        predict.main([f"checkpoint={tmp_path / 'checkpoint'}", f"input={posts}", f"out_dir={tmp_path / 'pred'}"])
        records = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
        spans = [r["best_span"] for r in records if r["best_span"]]
        assert spans and all(text[s["start"]:s["end"]] == s["text"] for s in spans)
