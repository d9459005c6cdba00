"""Column helpers: string codes, list lengths, first-appearance ids and padded index matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cocoa.data.columns import CODED_STRING, Strings, entry_rows, first_appearance_ids, list_lengths, padded


def _decoded(strings: Strings) -> list[str]:
    return [strings.values[code] for code in strings.codes.tolist()]


def test_strings_read_nulls_as_empty_across_chunks_and_types() -> None:
    plain = pa.chunked_array([["a", None], [None, ""], ["b"]])
    coded = pa.chunked_array([pa.array(["", "a"]).cast(CODED_STRING), pa.array([None, "c", "a"]).cast(CODED_STRING)])
    for column, expected in ((plain, ["a", "", "", "", "b"]), (coded, ["", "a", "", "c", "a"])):
        strings = Strings.of(column)
        assert _decoded(strings) == expected
        assert len(set(strings.values)) == len(strings.values)
        assert strings.empty().tolist() == [value == "" for value in expected]
    assert len(Strings.of(pa.chunked_array([], type=pa.string()))) == 0


def test_strings_concat_and_take_keep_entries_in_order() -> None:
    left, right = Strings.of(pa.chunked_array([["x", "y"]])), Strings.of(pa.chunked_array([["y", "z", "x"]]))
    both = Strings.concat([left, right])
    assert _decoded(both) == ["x", "y", "y", "z", "x"]
    assert len(both.values) == 3
    assert _decoded(both.take(np.array([True, False, False, True, True]))) == ["x", "z", "x"]


def test_list_lengths_and_entry_rows() -> None:
    column = pa.chunked_array([pa.array([["x", "y"], None, [], ["z"]], pa.list_(pa.string()))])
    lengths = list_lengths(column)
    assert lengths.tolist() == [2, -1, 0, 1]
    assert entry_rows(lengths).tolist() == [0, 0, 3]


def test_first_appearance_ids() -> None:
    ids, values = first_appearance_ids(np.array([7, 3, 7, 9, 3]))
    assert (ids.tolist(), values.tolist()) == ([0, 1, 0, 2, 1], [7, 3, 9])


def test_padded_rows_keep_order_and_pad_with_minus_one() -> None:
    matrix = padded(np.array([5, 6, 7, 8]), np.array([1, 3, 0]))
    assert matrix.tolist() == [[5, -1, -1], [6, 7, 8], [-1, -1, -1]]
    assert padded(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).shape == (0, 1)
