"""Source pools for MiniMMEB, split so that no eval image can reach a training corpus.

- Fashion-MNIST: the train split feeds training, the test split feeds eval (test images whose
  pixels equal a train image are dropped).
- Emoji: rendered once; emoji whose render collides with another are dropped; a seeded set of
  subgroups is held out (OOD only); the rest is split per subgroup into disjoint train/eval emoji.

Scene tiles and retrieval items are Fashion-MNIST items tinted in one of :data:`COLOURS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cocoa.data.minimmeb.scenes import TILE, Tile
from cocoa.data.minimmeb.sources import (
    Emoji,
    EmojiRenderer,
    load_fashion_mnist,
    parse_emoji_test,
)

#: Fashion-MNIST labels as the texts use them.
FASHION_LABELS = ("t-shirt", "trouser", "pullover", "dress", "coat",
                  "sandal", "shirt", "sneaker", "bag", "ankle boot")
_FASHION_CATEGORIES = {"sandal": "shoes", "sneaker": "shoes", "ankle boot": "shoes", "bag": "bags",
                       "t-shirt": "tops", "pullover": "tops", "shirt": "tops", "coat": "tops"}
#: Tint colours of scene items (name -> RGB of the darkest pixels).
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "red": (205, 30, 30), "green": (30, 150, 50), "blue": (40, 70, 215),
    "orange": (245, 140, 15), "purple": (130, 45, 175), "pink": (240, 95, 175), "brown": (125, 75, 30)}
#: What count questions may ask about: item categories, then "<colour> items".
COUNT_CATEGORIES = ("shoes", "tops", "bags", *(f"{colour} items" for colour in COLOURS))
#: Share of the in-distribution emoji of each subgroup that goes to eval.
EVAL_EMOJI_SHARE = 0.6
#: Share of all emoji held out, by whole subgroups, for OOD datasets.
NOVEL_EMOJI_SHARE = 0.14


def _hash(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def item_image(pixels: np.ndarray) -> Image.Image:
    """A grayscale source image (white-on-black) as a dark-on-white 56x56 RGB image."""
    image = Image.fromarray(255 - pixels, mode="L").resize((TILE, TILE), Image.Resampling.BICUBIC)
    return image.convert("RGB")


def tint(image: Image.Image, rgb: tuple[int, int, int]) -> Image.Image:
    """A dark-on-white item recoloured: white stays white, the darkest pixels become ``rgb``."""
    ink = 1.0 - np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
    pixels = 255.0 * (1.0 - ink) + ink * np.asarray(rgb, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


@dataclass
class EmojiSplit:
    train: list[Emoji]
    eval: list[Emoji]
    novel: list[Emoji]


@dataclass
class Pools:
    """Everything the builders draw from, loaded and split once."""

    fashion_train: tuple[np.ndarray, np.ndarray]
    fashion_eval: tuple[np.ndarray, np.ndarray]
    emoji: EmojiSplit
    emoji_images: dict[str, Image.Image]

    def fashion_tile(self, split: str, index: int, colour: str | None = None) -> Tile:
        """The item as a tile; with ``colour`` tinted, named ``"<colour> <label>"`` and counted as such."""
        images, labels = self.fashion_train if split == "train" else self.fashion_eval
        label = FASHION_LABELS[int(labels[index])]
        categories = tuple(c for c in (_FASHION_CATEGORIES.get(label), colour and f"{colour} items") if c)
        image = item_image(images[index])
        if colour is None:
            return Tile(label, image, categories)
        return Tile(f"{colour} {label}", tint(image, COLOURS[colour]), categories)


def load_pools(seed: int, fashion_dir: Path | None = None, emoji_font: Path | None = None,
               emoji_test: Path | None = None) -> Pools:
    """Load every source and split it (deterministic for ``seed``)."""
    train_images, train_labels = load_fashion_mnist("train", fashion_dir)
    test_images, test_labels = load_fashion_mnist("test", fashion_dir)
    train_hashes = {_hash(image) for image in train_images}
    keep = np.array([_hash(image) not in train_hashes for image in test_images])
    renderer = EmojiRenderer(emoji_font)
    images, unique = _render_unique(parse_emoji_test(emoji_test), renderer)
    return Pools(
        fashion_train=(train_images, train_labels),
        fashion_eval=(test_images[keep], test_labels[keep]),
        emoji=_split_emoji(unique, np.random.default_rng([seed, 1])),
        emoji_images=images,
    )


def _render_unique(emojis: list[Emoji], renderer: EmojiRenderer) -> tuple[dict[str, Image.Image], list[Emoji]]:
    """Render plain emoji (no skin tones, no components); drop those whose renders collide."""
    candidates = [e for e in emojis if e.group != "Component" and "skin tone" not in e.name]
    images = {e.chars: renderer.render(e) for e in candidates}
    counts: dict[str, int] = {}
    hashes = {}
    for emoji in candidates:
        hashes[emoji.chars] = _hash(np.asarray(images[emoji.chars]))
        counts[hashes[emoji.chars]] = counts.get(hashes[emoji.chars], 0) + 1
    unique = [e for e in candidates if counts[hashes[e.chars]] == 1]
    return {e.chars: images[e.chars] for e in unique}, unique


def _split_emoji(emojis: list[Emoji], rng: np.random.Generator) -> EmojiSplit:
    subgroups: dict[str, list[Emoji]] = {}
    for emoji in emojis:
        subgroups.setdefault(emoji.subgroup, []).append(emoji)
    eligible = sorted(name for name, members in subgroups.items() if len(members) >= 6)
    held: set[str] = set()
    for index in rng.permutation(len(eligible)):
        if sum(len(subgroups[name]) for name in held) >= NOVEL_EMOJI_SHARE * len(emojis):
            break
        held.add(eligible[index])
    split = EmojiSplit([], [], [])
    for name in sorted(subgroups):
        members = subgroups[name]
        if name in held:
            split.novel.extend(members)
            continue
        order = [members[i] for i in rng.permutation(len(members))]
        n_eval = max(1, round(EVAL_EMOJI_SHARE * len(members)))
        split.eval.extend(order[:n_eval])
        split.train.extend(order[n_eval:])
    return split
