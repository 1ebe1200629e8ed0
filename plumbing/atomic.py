"""Directories that appear complete or not at all (cache entries, tiny models, demo corpora)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

COMPLETE_MARKER = "COMPLETE"


def is_complete(path: str | Path) -> bool:
    """A directory without the marker is a partial write and is never read as valid."""
    return (Path(path) / COMPLETE_MARKER).is_file()


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling to fill; on success it is marked complete and renamed to ``final``.

    A killed writer leaves only a hidden temp dir or an unmarked directory, which the next writer
    replaces; when a concurrent writer finished first, its equivalent copy is kept.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        if not is_complete(final):
            shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:
                if not is_complete(final):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
