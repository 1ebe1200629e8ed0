"""The offline built-in models: a WordPiece tokenizer trained on the corpus and a small random encoder.

``tiny`` is a small BERT; ``tiny-deberta`` is a DeBERTa-v3-shaped model of the same size (relative
attention, no absolute positions, no token types), so the DeBERTa code paths run offline too. They
let every command run with no network and no downloaded weights (CI, laptops, demos) while going
through exactly the code path of a real Hugging Face model: the directory written loads with
``AutoTokenizer.from_pretrained`` / ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from data_prep.pretrained import is_packaged_model
from data_prep.symptoms import criteria
from plumbing.atomic import atomic_dir, is_complete

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512
# Bump when the recipe below changes, so cached directories built by an older recipe are not reused.
# 2: tiny's pooler starts as the identity (see _write).
RECIPE_VERSION = 2
TINY_SETTINGS = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": MODEL_MAX_LENGTH,
}
# What microsoft/deberta-v3-base's config sets beyond the sizes (relative attention with log buckets,
# shared keys, no absolute position or token type embeddings).
DEBERTA_V3_SETTINGS = {
    "relative_attention": True,
    "position_buckets": 256,
    "max_relative_positions": -1,
    "norm_rel_ebd": "layer_norm",
    "share_att_key": True,
    "pos_att_type": ["p2c", "c2p"],
    "position_biased_input": False,
    "type_vocab_size": 0,
    "layer_norm_eps": 1e-7,
}
TINY = "tiny"
# Model built from the corpus -> its settings beyond TINY_SETTINGS (all of it goes into the fingerprint).
BUILTIN_MODELS: dict[str, dict] = {
    TINY: {},  # BERT; empty so the fingerprints of existing tiny directories stay valid
    "tiny-deberta": {"architecture": "deberta-v2", **DEBERTA_V3_SETTINGS},
}


def is_builtin_model(name: str) -> bool:
    """``model.name`` values that resolve to a directory under ``cache_dir/models`` rather than being a
    dir or hub name: built offline from the corpus (tiny, tiny-deberta) or extracted from an
    installed package (minilm, see data_prep.pretrained).
    """
    return name in BUILTIN_MODELS or is_packaged_model(name)


def _check_builtin(name: str) -> None:
    if name not in BUILTIN_MODELS:  # a programming error: callers check which kind of built-in first
        raise ValueError(f"not a built-in model built from the corpus: {name!r} (known: {', '.join(BUILTIN_MODELS)})")


def _pipeline(vocab: dict[str, int] | None = None):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _continuation_pieces(tok, texts: list[str]) -> list[str]:
    """``##c`` for every character seen inside a word, sorted.

    The WordPiece trainer creates these lazily in hash-map order, and their ids break ties
    between equally frequent merges, so the same texts gave different vocabularies from run to
    run (huggingface/tokenizers#1794). Declared up front, they get fixed ids and training is
    deterministic: the same corpus gives the same tokenizer on every node.
    """
    chars: set[str] = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return sorted(f"##{c}" for c in chars)


def _train_wordpiece(texts: list[str], vocab_size: int):
    from tokenizers import processors, trainers

    scratch = _pipeline()
    pieces = _continuation_pieces(scratch, texts)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *pieces])
    scratch.train_from_iterator(texts, trainer)
    # A fresh pipeline: the pieces were only special for the trainer; ids are numbered canonically.
    rest = sorted(set(scratch.get_vocab(with_added_tokens=False)) - set(SPECIAL_TOKENS))
    tok = _pipeline({token: i for i, token in enumerate([*SPECIAL_TOKENS, *rest])})
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def _training_corpus(texts: Iterable[str]) -> list[str]:
    """The corpus plus the criterion texts, so span questions and pair criteria never fall to [UNK]."""
    return [str(t) for t in texts] + list(criteria().values())


def _model_config(name: str, vocab_size: int, pad_token_id: int):
    from transformers import BertConfig, DebertaV2Config

    settings = dict(BUILTIN_MODELS[name])
    config_class = {"bert": BertConfig, "deberta-v2": DebertaV2Config}[settings.pop("architecture", "bert")]
    return config_class(vocab_size=vocab_size, pad_token_id=pad_token_id, **TINY_SETTINGS, **settings)


def _write(name: str, corpus: list[str], out_dir: Path, seed: int, vocab_size: int) -> None:
    import torch
    from transformers import AutoModel, BertTokenizerFast

    backend = _train_wordpiece(corpus, vocab_size)
    tokenizer = BertTokenizerFast(tokenizer_object=backend, model_max_length=MODEL_MAX_LENGTH,
                                  pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(out_dir)
    config = _model_config(name, len(tokenizer), tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):  # seeded weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
    pooler = getattr(model, "pooler", None)
    if pooler is not None:
        # BERT's pooler (tanh of a dense layer over [CLS]) feeds its sequence classifier, the pair model. A
        # pretrained BERT's comes from pretraining; a random one would put a second random layer between the
        # [CLS] state and the classifier, and on the demo the pair model then learns about 0.1 F1 slower.
        # Started as the identity it passes tanh([CLS]) on, and training shapes it from there.
        with torch.no_grad():
            pooler.dense.weight.copy_(torch.eye(config.hidden_size))
            pooler.dense.bias.zero_()
    model.save_pretrained(out_dir)


def build_tiny_model(
    texts: Iterable[str], out_dir: str | Path, seed: int = 0, vocab_size: int = 4000, name: str = TINY
) -> Path:
    """Write the built-in model ``name``'s tokenizer + weights to ``out_dir`` atomically (temp dir,
    then rename).

    The final directory only ever appears complete (with the COMPLETE marker); when another
    process finished the same directory first, its equivalent copy is kept.
    """
    _check_builtin(name)
    with atomic_dir(out_dir) as tmp:
        _write(name, _training_corpus(texts), tmp, seed, vocab_size)
    return Path(out_dir)


def tiny_fingerprint(texts: Iterable[str], seed: int = 0, vocab_size: int = 4000, name: str = TINY) -> str:
    """Identifies a built-in model: its training corpus (texts + criteria) and every recipe setting."""
    _check_builtin(name)
    h = hashlib.sha256()
    settings = {"recipe": RECIPE_VERSION, "seed": seed, "vocab_size": vocab_size, **TINY_SETTINGS,
                **BUILTIN_MODELS[name]}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for text in _training_corpus(texts):
        h.update(b"\x00" + text.encode("utf-8"))
    return h.hexdigest()[:16]


def tiny_model_dir(texts: list[str], cache_dir: str | Path, seed: int = 0, vocab_size: int = 4000,
                   name: str = TINY) -> Path:
    """``<cache_dir>/models/<name>-<fingerprint>``, built on first use."""
    path = Path(cache_dir) / "models" / f"{name}-{tiny_fingerprint(texts, seed, vocab_size, name)}"
    if not is_complete(path):
        build_tiny_model(texts, path, seed=seed, vocab_size=vocab_size, name=name)
    return path
