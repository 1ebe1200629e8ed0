"""Reading user files with errors that say where a file is broken."""

from __future__ import annotations

import codecs
from pathlib import Path

from plumbing.errors import DataError


def read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading BOM dropped); bad bytes are located by line and offset."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = skip + e.start  # an offset into the file as it is on disk
        line = data[:at].count(b"\n") + 1
        raise DataError(
            str(path),
            f"not valid UTF-8 text: byte {at} (line {line}) is {data[at:at + 1]!r}; "
            "re-save the file as UTF-8",
        ) from None
