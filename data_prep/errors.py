"""User-facing errors: anything a user can fix by changing a file, a path or a config value.

Entry points catch ``UserError`` and print its message (exit status 2) instead of a traceback,
so every check in the project raises one of these with a message that names the remedy.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or configuration, not a bug."""


class DataError(UserError):
    """A problem located in a data file: the message names the file, row and field."""

    def __init__(self, file: str, problem: str, row: int | None = None, field: str | None = None):
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
