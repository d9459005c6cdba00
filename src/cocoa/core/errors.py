"""Errors that name what went wrong and where."""

from __future__ import annotations


class CocoaError(Exception):
    """Base class of every error raised on purpose by cocoa."""


class DataError(CocoaError, ValueError):
    """Bad input data; the message names the file, the row or line, and the field.

    One format for every reader: ``row`` is the 0-based index of a record (a parquet row, an item
    of a list) and is shown 1-based ("row 1" is the first); ``line`` is the 1-based line of a text
    file (JSONL) and is shown as it is.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        self.message, self.file, self.row, self.field, self.line = message, file, row, field, line
        where = ", ".join(
            part for part in (
                f"file {file}" if file is not None else "",
                f"line {line}" if line is not None else "",
                f"row {row + 1}" if row is not None else "",
                f"field '{field}'" if field is not None else "",
            ) if part
        )
        super().__init__(f"{message} ({where})" if where else message)

    def __reduce__(self) -> tuple[object, ...]:
        # file, row, field and line survive a trip through pickle (a DataLoader worker's error)
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[DataError], args: tuple[object, ...], state: dict[str, object]) -> DataError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ItemError(DataError):
    """A :class:`DataError` met while preparing input ``item`` (0-based) of one encode call, such as an
    image whose header read well but whose pixels do not decode; the caller, which knows where that
    input came from, names it."""

    def __init__(self, error: DataError, item: int, *, row: int | None = None) -> None:
        super().__init__(error.message, file=error.file, row=error.row if row is None else row, field=error.field,
                         line=error.line)
        self.item = item


class ConfigError(CocoaError, ValueError):
    """A bad recipe or option value."""
