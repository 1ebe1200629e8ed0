"""JSON files the project writes: strict JSON (no NaN/inf), replaced atomically, read back whole."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and tuples as lists (strict JSON has no inf/NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Write ``value`` through a temporary sibling and a rename: a reader (or a kill) never sees half
    a file. Non-finite floats become null; other values JSON cannot hold are written with str()."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(value), indent=indent, default=str, allow_nan=False),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path, default: Any = None) -> Any:
    """The file's value, or ``default`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """One JSON object per line; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(json_safe(record), ensure_ascii=False) + "\n")
            count += 1
    return count
