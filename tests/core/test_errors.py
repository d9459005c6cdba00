"""Errors name what went wrong and where, and keep it across processes."""

from __future__ import annotations

import pickle

from cocoa.core.errors import DataError, ItemError
from cocoa.data.images import ImageTooLarge


def test_the_location_is_written_one_way() -> None:
    assert str(DataError("bad", file="f.jsonl", line=3, field="text")) == "bad (file f.jsonl, line 3, field 'text')"
    assert str(DataError("bad", row=0)) == "bad (row 1)" and str(DataError("bad")) == "bad"


def test_fields_survive_pickling_as_from_a_worker_process() -> None:
    for error in (DataError("bad", file="a.png", row=4, field="image"),
                  ItemError(DataError("cut", file="b.png", field="image"), 7),
                  ImageTooLarge("big", file="c.png")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and vars(back) == vars(error)
    assert pickle.loads(pickle.dumps(ItemError(DataError("cut"), 7))).item == 7


def test_an_item_error_keeps_the_message_and_may_name_the_input_as_a_row() -> None:
    error = ItemError(DataError("cut", file="b.png", field="image"), 2, row=2)
    assert (error.item, error.row, error.message) == (2, 2, "cut")
    assert str(error) == "cut (file b.png, row 3, field 'image')"
