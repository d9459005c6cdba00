"""Errors that name what went wrong and where."""

from __future__ import annotations


class CocoaError(Exception):
    """Base class of every error raised on purpose by cocoa."""


class DataError(CocoaError, ValueError):
    """Bad input data; the message names the file, row and field."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.row, self.field = file, row, field
        where = ", ".join(
            part for part in (
                f"file {file}" if file is not None else "",
                f"row {row}" if row is not None else "",
                f"field '{field}'" if field is not None else "",
            ) if part
        )
        super().__init__(f"{message} ({where})" if where else message)


class ConfigError(CocoaError, ValueError):
    """A bad recipe or option value."""
