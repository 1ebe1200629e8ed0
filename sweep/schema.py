"""The contract of summary.json: a JSON Schema shipped in sweep/schemas, checked before every write.

Users' scripts, plots and the project's checks read summary.json; checking it against the schema
where it is written turns a renamed key or a NaN into a clear error at the source instead of a
KeyError (or invalid JSON) in someone else's script later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from plumbing.errors import UserError

SCHEMA_FILE = "summary.schema.json"
SCHEMA_PATH = f"sweep/schemas/{SCHEMA_FILE}"


@lru_cache(maxsize=1)
def summary_validator() -> Draft202012Validator:
    """The validator of the packaged schema (loaded once; a bad schema is a bug, so it raises)."""
    schema = json.loads(resources.files("sweep").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: Any) -> str:
    """``trials[2].stop_reason``; keys that are not plain names are quoted (``params['training.lr']``)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier():
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or "(top level)"


def non_finite(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, float]]:
    """Every NaN/inf in ``value`` with its path: JSON has none (json.dumps would write bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from non_finite(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from non_finite(v, (*path, i))


def summary_problems(summary: dict[str, Any]) -> list[str]:
    """Every violation, as ``path: problem``, in document order."""
    found = [(tuple(e.absolute_path), e.message) for e in summary_validator().iter_errors(summary)]
    found += [(p, f"{v} is not valid JSON (a missing value must be null)") for p, v in non_finite(summary)]
    found.sort(key=lambda item: [(isinstance(p, str), p) for p in item[0]])
    return [f"{json_path(p)}: {message}" for p, message in found]


def validate_summary(summary: dict[str, Any]) -> None:
    """Raise a UserError naming every place where ``summary`` breaks the schema (nothing is written)."""
    problems = summary_problems(summary)
    if not problems:
        return
    where = summary.get("run_dir", "the run directory") if isinstance(summary, dict) else "the run directory"
    raise UserError(
        f"summary.json of {where} would break its schema ({SCHEMA_PATH}), so it was not written; "
        f"{len(problems)} problem(s):\n  " + "\n  ".join(problems) + "\n"
        "This is a bug in sweep.summary (please report it with this message) or a hand-edited file in the "
        "run directory (space.json, test_metrics.json, a trial's params.json or result.json): restore the "
        "file and run python -m sweep.report again.")
