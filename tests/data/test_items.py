"""The one "nothing to embed" test, shared by readers, encoder, CLI and server."""

from __future__ import annotations

from PIL import Image

from cocoa.data.items import Item, is_empty


def test_blank_text_without_an_image_is_empty_and_anything_else_is_not() -> None:
    assert is_empty("", None) and is_empty(" \n\t", None) and is_empty(None, None)
    assert Item(" ").is_empty
    assert not Item("a cat").is_empty
    assert not Item("", "/images/cat.png").is_empty
    assert not Item("", Image.new("RGB", (4, 4))).is_empty
