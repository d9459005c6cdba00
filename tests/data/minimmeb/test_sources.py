"""Offline sources: package lookup, clear errors, IDX and emoji parsing."""

from __future__ import annotations

import pytest

from cocoa.core.errors import DataError
from cocoa.data.minimmeb import sources


def test_missing_package_error_names_the_package(monkeypatch):
    monkeypatch.setattr(sources, "_dpkg_files", lambda package: [])
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        sources.fashion_mnist_dir()
    with pytest.raises(DataError, match="fonts-noto-color-emoji"):
        sources.emoji_font_path()


def test_explicit_path_override(tmp_path):
    with pytest.raises(DataError, match="not found at the given path"):
        sources.emoji_test_path(tmp_path / "nope.txt")
    listing = tmp_path / "emoji-test.txt"
    listing.write_text("# group: Animals & Nature\n# subgroup: animal-mammal\n"
                       "1F436                                                  ; fully-qualified     # 🐶 E0.6 dog face\n"
                       "263A                                                   ; unqualified         # ☺ E0.6 smiling face\n",
                       encoding="utf-8")
    assert sources.parse_emoji_test(listing) == [sources.Emoji("🐶", "dog face", "Animals & Nature", "animal-mammal")]


def test_environment_variables_override_the_package_lookup(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "_dpkg_files", lambda package: [])
    copy = tmp_path / "fashion"
    copy.mkdir()
    (copy / "train-images-idx3-ubyte.gz").write_bytes(b"")
    font = tmp_path / "NotoColorEmoji.ttf"
    font.write_bytes(b"")
    monkeypatch.setenv(sources.FASHION_ENV, str(copy))
    monkeypatch.setenv(sources.EMOJI_FONT_ENV, str(font))
    monkeypatch.setenv(sources.EMOJI_TEST_ENV, str(tmp_path / "missing.txt"))
    assert sources.fashion_mnist_dir() == copy
    assert sources.emoji_font_path() == font
    with pytest.raises(DataError, match=r"\$COCOA_EMOJI_TEST") as caught:
        sources.emoji_test_path()
    assert "missing.txt" in str(caught.value)


def test_fashion_mnist_idx():
    images, labels = sources.load_fashion_mnist("test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert set(labels.tolist()) == set(range(len(sources.FASHION_CLASSES)))


def test_emoji_list_and_render():
    emojis = sources.parse_emoji_test()
    assert len(emojis) > 3000 and {e.group for e in emojis} >= {"Smileys & Emotion", "Flags"}
    image = sources.EmojiRenderer().render(emojis[0])
    assert image.size == (56, 56) and len(image.getcolors(maxcolors=4096) or []) > 10


def test_emoji_font_refuses_pillow_without_text_shaping(monkeypatch):
    monkeypatch.setattr(sources.features, "check", lambda feature: feature != "raqm")
    sources._load_font.cache_clear()
    try:
        with pytest.raises(DataError, match="libfribidi0") as caught:
            sources.EmojiRenderer()
        assert "NotoColorEmoji.ttf" in str(caught.value)
    finally:
        sources._load_font.cache_clear()

