"""The offline ``tiny`` model: a WordPiece tokenizer trained on the corpus and a small random BERT.

It lets every command run with no network and no downloaded weights (CI, laptops, demos) while
going through exactly the code path of a real Hugging Face model: the directory it writes loads
with ``AutoTokenizer.from_pretrained`` / ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from data_prep.atomic import atomic_dir, is_complete
from data_prep.symptoms import criteria

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512
# Bump when the recipe below changes, so cached directories built by an older recipe are not reused.
RECIPE_VERSION = 1
TINY_SETTINGS = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": MODEL_MAX_LENGTH,
}


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


def _write(corpus: list[str], out_dir: Path, seed: int, vocab_size: int) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    backend = _train_wordpiece(corpus, vocab_size)
    tokenizer = BertTokenizerFast(tokenizer_object=backend, model_max_length=MODEL_MAX_LENGTH,
                                  pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **TINY_SETTINGS)
    with torch.random.fork_rng(devices=[]):  # seeded weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(out_dir)


def build_tiny_model(
    texts: Iterable[str], out_dir: str | Path, seed: int = 0, vocab_size: int = 4000
) -> Path:
    """Write the tiny tokenizer + model to ``out_dir`` atomically (temp dir, then rename).

    The final directory only ever appears complete (with the COMPLETE marker); when another
    process finished the same directory first, its equivalent copy is kept.
    """
    with atomic_dir(out_dir) as tmp:
        _write(_training_corpus(texts), tmp, seed, vocab_size)
    return Path(out_dir)


def tiny_fingerprint(texts: Iterable[str], seed: int = 0, vocab_size: int = 4000) -> str:
    """Identifies a tiny model: its training corpus (texts + criteria) and every recipe setting."""
    h = hashlib.sha256()
    settings = {"recipe": RECIPE_VERSION, "seed": seed, "vocab_size": vocab_size, **TINY_SETTINGS}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for text in _training_corpus(texts):
        h.update(b"\x00" + text.encode("utf-8"))
    return h.hexdigest()[:16]


def tiny_model_dir(texts: list[str], cache_dir: str | Path, seed: int = 0, vocab_size: int = 4000) -> Path:
    """``<cache_dir>/models/tiny-<fingerprint>``, built on first use."""
    path = Path(cache_dir) / "models" / f"tiny-{tiny_fingerprint(texts, seed, vocab_size)}"
    if not is_complete(path):
        build_tiny_model(texts, path, seed=seed, vocab_size=vocab_size)
    return path
