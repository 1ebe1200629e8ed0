"""The offline tiny model, model resolution and tokenizer loading / identity."""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from data_prep.features import featurize_span
from data_prep.records import Answer, QAExample
from data_prep.symptoms import criteria
from data_prep.tiny import build_tiny_model, tiny_model_dir
from data_prep.tokenizer import load_tokenizer, resolve_model, tokenizer_identity
from plumbing.atomic import COMPLETE_MARKER, is_complete
from plumbing.errors import UserError

SUBJECTS = ["I", "My sister", "Everyone", "My friend", "He", "She"]
VERBS = ["can't sleep", "feel tired", "stopped eating", "hate myself", "lost interest in music",
         "cannot focus", "keep crying", "walk slowly"]
TAILS = ["at night.", "every day.", "since January.", "lately.", "at work.", "for weeks now."]


def corpus(n: int = 300, salt: str = "") -> list[str]:
    return [f"{SUBJECTS[i % 6]} {VERBS[i % 8]} {TAILS[i % 5]} {salt}Entry {i}." for i in range(n)]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access in any test, whatever the environment says."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(corpus(), tmp_path_factory.mktemp("cache"))


def _padded_batch(table, pad_id: int) -> dict[str, torch.Tensor]:
    rows = table.column("input_ids").to_pylist()
    types = table.column("token_type_ids").to_pylist()
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    tt = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for i, (r, t) in enumerate(zip(rows, types, strict=True)):
        ids[i, :len(r)], tt[i, :len(t)], mask[i, :len(r)] = r, t, 1
    return {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(tt),
            "attention_mask": torch.from_numpy(mask)}


def test_tiny_model_loads_offline_and_runs_forward_on_features(tiny):
    from transformers import AutoModel, AutoTokenizer

    assert is_complete(tiny) and tiny.name.startswith("tiny-") and tiny.parent.name == "models"
    tok = AutoTokenizer.from_pretrained(str(tiny))
    model = AutoModel.from_pretrained(str(tiny))
    assert tok.is_fast and tok.model_max_length == 512
    assert {tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token} == {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size,
            cfg.max_position_embeddings, cfg.vocab_size) == (128, 2, 4, 256, 512, len(tok))
    assert "[UNK]" not in tok.tokenize("I can't sleep at night")  # the vocabulary fits the corpus
    assert all("[UNK]" not in tok.tokenize(c) for c in criteria().values())  # and the questions

    text = " ".join(corpus(40))
    answer = "My friend cannot focus"
    ex = QAExample("p1/X", "trouble sleeping", text, (Answer(answer, text.index(answer)),), "p1")
    table = featurize_span([ex, ex], tok, max_length=64, doc_stride=16)
    batch = _padded_batch(table, tok.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    assert out.last_hidden_state.shape == (table.num_rows, batch["input_ids"].shape[1], 128)
    assert torch.isfinite(out.last_hidden_state).all()


def test_tinys_pooler_passes_the_cls_state_on_through_tanh(tiny):
    """The pair model is BERT's sequence classifier, which reads the pooler; tiny's starts as the identity."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(tiny)).eval()
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        out = model(**batch)
    torch.testing.assert_close(out.pooler_output, torch.tanh(out.last_hidden_state[:, 0]))


def test_pair_template_and_token_types(tiny):
    tok = load_tokenizer(str(tiny))
    enc = tok("trouble sleeping", "I cannot sleep")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    first_sep = tokens.index("[SEP]")
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "trouble sleeping i cannot sleep"


def test_tiny_dir_is_cached_and_keyed_by_texts(tiny):
    weights = tiny / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert tiny_model_dir(corpus(), tiny.parent.parent) == tiny
    assert weights.stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = tiny_model_dir(corpus(salt="extra "), tiny.parent.parent)
    assert other != tiny and is_complete(other)
    assert tokenizer_identity(load_tokenizer(str(other)))["fingerprint"] != \
        tokenizer_identity(load_tokenizer(str(tiny)))["fingerprint"]


def test_partial_directory_is_rebuilt(tmp_path):
    texts = corpus(50)
    first = tiny_model_dir(texts, tmp_path)
    (first / COMPLETE_MARKER).unlink()
    (first / "model.safetensors").write_bytes(b"truncated")
    rebuilt = tiny_model_dir(texts, tmp_path)
    assert rebuilt == first and is_complete(rebuilt)
    from transformers import AutoModel

    AutoModel.from_pretrained(str(rebuilt))  # the truncated weights were replaced


def test_failed_build_leaves_nothing(tmp_path):
    def broken():
        yield "I can't sleep."
        raise RuntimeError("corpus read failed")

    with pytest.raises(RuntimeError, match="corpus read failed"):
        build_tiny_model(broken(), tmp_path / "models" / "tiny-x")
    assert list((tmp_path / "models").iterdir()) == []


def test_seed_controls_weights(tmp_path):
    from transformers import AutoModel

    texts = corpus(50)
    a = build_tiny_model(texts, tmp_path / "a", seed=1)
    b = build_tiny_model(texts, tmp_path / "b", seed=1)
    c = build_tiny_model(texts, tmp_path / "c", seed=2)
    wa, wb, wc = (AutoModel.from_pretrained(str(p)).embeddings.word_embeddings.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    fa, fb = (tokenizer_identity(load_tokenizer(str(p)))["fingerprint"] for p in (a, b))
    assert fa == fb  # same texts -> same vocabulary, wherever the directory is


def test_resolve_model(tiny, tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return corpus()

    assert resolve_model("tiny", texts, tiny.parent.parent) == str(tiny)
    assert calls == [1]
    assert resolve_model(str(tiny), texts, tmp_path) == str(tiny)
    assert resolve_model("bert-base-uncased", texts, tmp_path) == "bert-base-uncased"
    assert calls == [1]  # the corpus is only read for the tiny model


def test_hub_name_offline_is_a_clear_user_error():
    with pytest.raises(UserError) as e:
        load_tokenizer("bert-base-uncased")
    msg = str(e.value)
    assert "model.name=bert-base-uncased" in msg and "HF_HUB_OFFLINE" in msg
    assert "model.name=/path/to/dir" in msg and "model.name=tiny" in msg


def test_bad_local_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_tokenizer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no loadable tokenizer"):
        load_tokenizer(str(tmp_path / "empty"))


def test_slow_tokenizer_is_refused(tmp_path):
    from transformers import ByT5Tokenizer

    ByT5Tokenizer().save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not a fast"):
        load_tokenizer(str(tmp_path))


def test_identity_is_stable_and_ignores_call_state(tiny):
    tok = load_tokenizer(str(tiny))
    before = tokenizer_identity(tok)
    assert before["vocab_size"] == len(tok) and before["uses_token_type_ids"] is True
    assert (before["cls_token_id"], before["pad_token_id"]) == (tok.cls_token_id, tok.pad_token_id)
    assert len(before["fingerprint"]) == 64
    tok(["a b c " * 50], truncation=True, max_length=16, padding="max_length")
    assert tokenizer_identity(tok) == before
    assert tokenizer_identity(load_tokenizer(str(tiny))) == before


def test_fingerprint_survives_save_pretrained(tiny, tmp_path):
    """A checkpoint's copy of the tokenizer must still match the features it was trained on."""
    tok = load_tokenizer(str(tiny))
    tok.save_pretrained(tmp_path)
    copy = load_tokenizer(str(tmp_path))
    assert tokenizer_identity(copy)["fingerprint"] == tokenizer_identity(tok)["fingerprint"]
