"""JSON files the project writes: strict JSON (no NaN/inf), replaced atomically, read back whole."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from plumbing import storage


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists and numpy scalars as Python numbers
    (strict JSON has no inf/NaN, and json writes no float32)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> str:
    """Write ``value`` whole (a local file through a temporary sibling and a rename, an object in one
    upload): a reader or a kill never sees half a file. Non-finite floats become null; other values
    JSON cannot hold are written with str()."""
    storage.write_text(str(path), json.dumps(json_safe(value), indent=indent, default=str, allow_nan=False))
    return str(path)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """One JSON object per line; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(json_safe(record), ensure_ascii=False) + "\n")
            count += 1
    return count
