"""Offline real-data sources: Fashion-MNIST and Noto Color Emoji with the Unicode list.

Each source is found by asking its Debian package (``dpkg -L``). On machines
without these Debian packages, an explicit path or an environment variable overrides the
lookup: ``COCOA_FASHION_MNIST_DIR`` (the folder of the four IDX .gz files),
``COCOA_EMOJI_FONT`` (NotoColorEmoji.ttf) and ``COCOA_EMOJI_TEST`` (emoji-test.txt). A
missing source raises :class:`~cocoa.core.errors.DataError` naming the package to install.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont, features

from cocoa.core.errors import DataError

FASHION_PACKAGE = "dataset-fashion-mnist"
EMOJI_FONT_PACKAGE = "fonts-noto-color-emoji"
UNICODE_PACKAGE = "unicode-data"

#: Fashion-MNIST class names, in label order.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _dpkg_files(package: str) -> list[Path]:
    """Files installed by a Debian package, or an empty list when it (or dpkg) is absent."""
    try:
        result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    except OSError:
        return []
    return [Path(line) for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


FASHION_ENV = "COCOA_FASHION_MNIST_DIR"
EMOJI_FONT_ENV = "COCOA_EMOJI_FONT"
EMOJI_TEST_ENV = "COCOA_EMOJI_TEST"


def _override(explicit: Path | None, env: str) -> Path | None:
    """The explicit path, else the one in environment variable ``env``, else ``None``."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ[env]) if os.environ.get(env) else None


def _find(package: str, suffix: str, override: Path | None, what: str, env: str) -> Path:
    if override is not None:
        if not override.exists():
            raise DataError(f"{what} not found at the given path (argument or ${env})", file=str(override))
        return override
    for path in _dpkg_files(package):
        if str(path).endswith(suffix) and path.is_file():
            return path
    raise DataError(f"{what} not found: install the Debian package '{package}' "
                    f"(apt-get install {package}) or set ${env} to its path")


def fashion_mnist_dir(override: Path | None = None) -> Path:
    """The folder holding the four Fashion-MNIST IDX .gz files."""
    folder = _override(override, FASHION_ENV)
    return _find(FASHION_PACKAGE, "train-images-idx3-ubyte.gz",
                 None if folder is None else folder / "train-images-idx3-ubyte.gz", "Fashion-MNIST", FASHION_ENV).parent


def emoji_font_path(override: Path | None = None) -> Path:
    """NotoColorEmoji.ttf."""
    return _find(EMOJI_FONT_PACKAGE, "NotoColorEmoji.ttf", _override(override, EMOJI_FONT_ENV),
                 "Noto Color Emoji font", EMOJI_FONT_ENV)


def emoji_test_path(override: Path | None = None) -> Path:
    """The Unicode ``emoji-test.txt`` list."""
    return _find(UNICODE_PACKAGE, "emoji/emoji-test.txt", _override(override, EMOJI_TEST_ENV),
                 "Unicode emoji-test.txt", EMOJI_TEST_ENV)


def package_version(package: str) -> str:
    """The installed Debian version of ``package``, or ``"unknown"``."""
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (ubyte data) into an array of its declared shape."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file", file=str(path))
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"IDX body has {body.size} bytes, header says {shape}", file=str(path))
    return body.reshape(shape)


def load_fashion_mnist(split: str, directory: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` of split ``"train"`` or ``"test"``."""
    prefix = {"train": "train", "test": "t10k"}[split]
    root = fashion_mnist_dir(directory)
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    return images, labels


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji from ``emoji-test.txt``."""

    chars: str
    name: str
    group: str
    subgroup: str


def parse_emoji_test(path: Path | None = None) -> list[Emoji]:
    """Every fully-qualified emoji with its name, group and subgroup, in file order."""
    source = emoji_test_path(path)
    emojis: list[Emoji] = []
    group = subgroup = ""
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line and "#" in line:
            codes, rest = line.split(";", 1)
            # comment part: "<emoji> E<version> <name>"
            parts = rest.split("#", 1)[1].strip().split(" ", 2)
            if len(parts) < 3:
                raise DataError("malformed emoji line", file=str(source), field=line)
            chars = "".join(chr(int(code, 16)) for code in codes.split())
            emojis.append(Emoji(chars, parts[2], group, subgroup))
    if not emojis:
        raise DataError("no fully-qualified emoji found", file=str(source))
    return emojis


class EmojiRenderer:
    """Render emoji with the color font: 109 px glyph on a 136x128 canvas, resized to ``size``."""

    def __init__(self, font_path: Path | None = None, size: int = 56) -> None:
        self.font = _load_font(str(emoji_font_path(font_path)))
        self.size = size

    def render(self, emoji: Emoji) -> Image.Image:
        canvas = Image.new("RGB", (136, 128), "white")
        ImageDraw.Draw(canvas).text((0, 0), emoji.chars, font=self.font, embedded_color=True)
        return canvas.resize((self.size, self.size), Image.Resampling.LANCZOS)


@lru_cache(maxsize=4)
def _load_font(path: str) -> ImageFont.FreeTypeFont:
    """The emoji font with libraqm text shaping, without which flags and ZWJ sequences render
    as separate glyphs, collide, and MiniMMEB silently loses a quarter of its emoji."""
    if not features.check("raqm"):
        raise DataError("Pillow cannot shape text here (PIL.features.check('raqm') is False): its wheels need "
                        "the system FriBiDi library (Debian/Ubuntu: apt-get install libfribidi0); without it "
                        "MiniMMEB would differ from the reference build", file=path)
    try:
        return ImageFont.truetype(path, 109, layout_engine=ImageFont.Layout.RAQM)
    except OSError as exc:
        raise DataError(f"cannot load the emoji font: {exc}", file=path) from exc


def source_versions() -> dict[str, str]:
    """Versions of every source package, for the manifest."""
    versions = {name: package_version(name) for name in (FASHION_PACKAGE, EMOJI_FONT_PACKAGE, UNICODE_PACKAGE)}
    versions["pillow"] = f"{PIL.__version__} (raqm {features.version('raqm')}, freetype {features.version('freetype2')})"
    return versions
