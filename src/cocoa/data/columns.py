"""Arrow and numpy helpers for readers that work column by column, without one object per value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The Arrow type of a string column read as codes into its distinct values.
CODED_STRING = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True, eq=False)
class Strings:
    """A string column as ``codes`` into its distinct ``values``; a null reads as ``""``."""

    codes: np.ndarray
    values: list[str]

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> Strings:
        """The strings of a :data:`CODED_STRING` or plain string column."""
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        column = column.unify_dictionaries()
        values = column.chunk(0).dictionary.to_pylist() if column.num_chunks else []
        codes = [chunk.indices.fill_null(len(values)).to_numpy() for chunk in column.chunks]
        return cls.merged(np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64),
                          [*values, ""] if column.null_count else values)

    @classmethod
    def merged(cls, codes: np.ndarray, values: list[str]) -> Strings:
        """``codes`` into ``values`` with repeated values merged into one code."""
        first: dict[str, int] = {}
        remap = np.array([first.setdefault(value, len(first)) for value in values], dtype=np.int64)
        return cls(remap[codes], list(first))

    @classmethod
    def concat(cls, parts: Sequence[Strings]) -> Strings:
        """The entries of ``parts`` one after the other."""
        offsets = np.cumsum([0, *(len(part.values) for part in parts)])
        codes = [part.codes + offset for part, offset in zip(parts, offsets, strict=False)]
        return cls.merged(np.concatenate(codes), [value for part in parts for value in part.values])

    def __len__(self) -> int:
        return len(self.codes)

    def empty(self) -> np.ndarray:
        """Per entry: whether it is ``""``."""
        return np.array([not value for value in self.values], dtype=bool)[self.codes]

    def take(self, keep: np.ndarray) -> Strings:
        """The entries where ``keep`` is true (or at the indices in ``keep``)."""
        return Strings(self.codes[keep], self.values)


def list_lengths(column: pa.ChunkedArray) -> np.ndarray:
    """Entries per row of a list column, ``-1`` for a null list."""
    return pc.list_value_length(column).fill_null(-1).to_numpy().astype(np.int64)


def entry_rows(lengths: np.ndarray) -> np.ndarray:
    """The row of each entry of rows holding ``lengths`` entries one after the other (``-1``: none)."""
    return np.repeat(np.arange(len(lengths)), np.maximum(lengths, 0))


def first_appearance_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per key the id of its value, ids numbered in order of first appearance, and the values by id."""
    encoded = pa.array(keys).dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_numpy()


def padded(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A matrix whose row ``i`` holds the next ``lengths[i]`` entries of ``flat``, padded with ``-1``.

    It has at least one column, so that every row has a first entry to look at.
    """
    matrix = np.full((len(lengths), int(lengths.max(initial=1))), -1, dtype=np.int64)
    matrix[np.arange(matrix.shape[1]) < lengths[:, None]] = flat
    return matrix
