"""Offline sources: package lookup, clear errors, IDX and emoji parsing."""

from __future__ import annotations

import pytest

from cocoa.data import sources
from cocoa.errors import DataError


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


def test_fashion_mnist_idx_and_digits():
    images, labels = sources.load_fashion_mnist("test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert set(labels.tolist()) == set(range(len(sources.FASHION_CLASSES)))
    digits, targets = sources.load_digits_images()
    assert digits.shape == (1797, 8, 8) and digits.max() == 255 and set(targets.tolist()) == set(range(10))


def test_emoji_list_and_render():
    emojis = sources.parse_emoji_test()
    assert len(emojis) > 3000 and {e.group for e in emojis} >= {"Smileys & Emotion", "Flags"}
    image = sources.EmojiRenderer().render(emojis[0])
    assert image.size == (56, 56) and len(image.getcolors(maxcolors=4096) or []) > 10
