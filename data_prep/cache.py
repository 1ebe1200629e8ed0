"""Where a feature variant lives in the cache, keyed by everything that changes its content.

The key covers the raw data bytes, the task, the tokenizer fingerprint and every feature and
split setting, so a change to any of them builds a new entry instead of reusing a stale one.
Saving, loading and the COMPLETE marker live in ``featureset.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# Bump when the feature layout or the featurization logic changes: old entries stop matching.
# 3: span windows cut by data_prep itself (tokenizers 0.23.2 dropped some); 4: pair cross negatives,
# the pair examples table's kind and sentence_key columns
FEATURES_VERSION = 4
_CHUNK = 1 << 20


def fingerprint_files(paths: Iterable[Path]) -> str:
    """sha256 over each file's name and bytes, in name order (independent of where the folder is)."""
    h = hashlib.sha256()
    for path in sorted((Path(p) for p in paths), key=lambda p: (p.name, str(p))):
        h.update(path.name.encode("utf-8") + b"\x00")
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-ready copy of settings that may hold OmegaConf containers, tuples or paths."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cache_key setting of unsupported type {type(value).__name__}: {value!r}")


def cache_key(data_fingerprint: str, task: str, tokenizer_fp: str, settings: Mapping) -> str:
    """16 hex chars of the sha256 of a canonical JSON of all inputs (feature + split settings)."""
    blob = json.dumps(
        {"version": FEATURES_VERSION, "data": data_fingerprint, "task": task,
         "tokenizer": tokenizer_fp, "settings": _plain(settings)},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def entry_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "features" / key
