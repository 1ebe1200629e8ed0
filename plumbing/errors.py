"""User-facing errors: anything a user can fix by changing a file, a path or a config value.

Entry points catch ``UserError`` and print its message (exit status 2) instead of a traceback,
so every check in the project raises one of these with a message that names the remedy.
"""

from __future__ import annotations

from pathlib import Path

_SHOWN_EXTRA = 5


class UserError(Exception):
    """A problem with the user's input or configuration, not a bug."""


class DataError(UserError):
    """A problem located in a data file: the message names the file, row and field."""

    def __init__(self, file: str, problem: str, row: int | str | None = None, field: str | None = None):
        where = str(file)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
        self.file, self.row, self.field, self.problem = str(file), row, field, problem


class ConfigError(UserError):
    """A config value of the wrong type or out of range; the message names the dotted key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config '{key}': {problem}")
        self.key = key


class ProblemLog:
    """The row problems of one file; ``raise_first`` reports them all in one DataError."""

    def __init__(self, file: str | Path):
        self.file = str(file)
        self.items: list[tuple[str, object, str | None]] = []

    def add(self, problem: str, row: object = None, field: str | None = None) -> None:
        self.items.append((problem, row, field))

    def raise_first(self) -> None:
        if not self.items:
            return
        items = self.items
        if all(isinstance(row, int) for _, row, _ in items):  # in file order, whichever check found it
            items = sorted(items, key=lambda item: item[1])
        (problem, row, field), rest = items[0], items[1:]
        if rest:
            shown = "; ".join(
                f"row {r} field '{f}'" if f else f"row {r}" for _, r, f in rest[:_SHOWN_EXTRA]
            )
            more = ", ..." if len(rest) > _SHOWN_EXTRA else ""
            problem += f" (and {len(rest)} more problems in this file: {shown}{more})"
        raise DataError(self.file, problem, row=row, field=field)
