"""Scenes: square grids of 56x56 tiles (colour-tinted Fashion-MNIST items) with captions and crops."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

TILE = 56
#: Margin in pixels around a tile when cropping it for grounding (so crops show context).
CROP_MARGIN = 8

_ROWS = {2: ("top", "bottom"), 3: ("top", "middle", "bottom")}
_COLS = {2: ("left", "right"), 3: ("left", "center", "right")}


@dataclass(frozen=True)
class Tile:
    """One tile: its label (what a caption calls it) and the categories it counts towards."""

    label: str
    image: Image.Image
    categories: tuple[str, ...]


def position_names(grid: int) -> list[str]:
    """Cell names in row-major order, e.g. ``top-left`` ... ``bottom-right``."""
    return [f"{row}-{col}" for row in _ROWS[grid] for col in _COLS[grid]]


def compose(tiles: list[Tile], grid: int) -> Image.Image:
    """Paste ``grid * grid`` tiles row-major onto one canvas."""
    canvas = Image.new("RGB", (TILE * grid, TILE * grid), "white")
    for index, tile in enumerate(tiles):
        canvas.paste(tile.image, ((index % grid) * TILE, (index // grid) * TILE))
    return canvas


def crop(scene: Image.Image, index: int, grid: int) -> Image.Image:
    """The tile at ``index`` with a margin of context, resized to one tile."""
    left, top = (index % grid) * TILE, (index // grid) * TILE
    box = (max(0, left - CROP_MARGIN), max(0, top - CROP_MARGIN),
           min(scene.width, left + TILE + CROP_MARGIN), min(scene.height, top + TILE + CROP_MARGIN))
    return scene.crop(box).resize((TILE, TILE), Image.Resampling.BILINEAR)


def caption(labels: list[str], grid: int) -> str:
    """A caption that says what is where."""
    parts = [f"{with_article(label)} in the {pos}" for label, pos in zip(labels, position_names(grid), strict=True)]
    return f"A {grid}x{grid} grid with " + ", ".join(parts[:-1]) + f" and {parts[-1]}."


def with_article(label: str) -> str:
    return f"an {label}" if label[:1].lower() in "aeiou" else f"a {label}"
