"""A small encode API: texts, images or both in, L2-normalised embeddings out.

Every input becomes an :class:`~cocoa.data.items.Item` and goes through
:meth:`BatchEncoder.encode_items`, the same preprocessing and pooling that training and
evaluation use.

Inputs:

* ``str``: text (a string is never taken for a path);
* :class:`PIL.Image.Image` or :class:`pathlib.Path`: an image;
* ``{"text": ..., "image": ..., "video": ...}``: any of them; here ``image`` may be a path string and
  ``video`` a frame folder or video file path, or a list of frame paths (:mod:`cocoa.data.videos`).

With ``instruction`` the text becomes ``"{instruction}\\n{text}"``; for an input with an image
and no placeholder in its text it becomes ``"<|image_1|> {instruction}\\n{text}"`` (MMEB style),
so the image comes first and the instruction follows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from PIL import Image

from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.core.errors import DataError, ItemError
from cocoa.core.matryoshka import check_dim, truncate
from cocoa.data.items import EMPTY_ITEM, IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, Item, VideoSource, is_empty
from cocoa.data.videos import video_problem
from cocoa.inference.batch_encoder import BatchEncoder

Input: TypeAlias = str | Path | Image.Image | Mapping[str, Any]
INPUT_KEYS = frozenset({"text", "image", "video"})


def with_instruction(text: str, instruction: str | None, placeholder: str | None) -> str:
    """``text`` with ``instruction`` prepended as documented in the module docstring; ``placeholder`` is the
    media placeholder to put first (``None``: the input has no image or video)."""
    if not instruction:
        return text
    prompt = f"{instruction}\n{text}" if text else instruction
    if placeholder is not None and placeholder not in text:
        return f"{placeholder} {prompt}"
    return prompt


def _image(value: Any, index: int) -> str | Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, str | Path) and str(value):
        path = Path(value).expanduser().resolve()
        try:
            with Image.open(path):
                pass
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}", row=index, field="image") from exc
        return str(path)
    raise DataError(f"image must be a PIL image or a path, got {type(value).__name__}", row=index, field="image")


def _video(value: Any, index: int) -> VideoSource:
    if isinstance(value, str | Path) and str(value):
        source: VideoSource = str(Path(value).expanduser().resolve())
    elif isinstance(value, list | tuple) and value and all(isinstance(v, str | Path) and str(v) for v in value):
        source = tuple(str(Path(v).expanduser().resolve()) for v in value)
    else:
        raise DataError("video must be a frame folder or video file path, or a list of frame paths", row=index,
                        field="video")
    if problem := video_problem(source):
        raise DataError(problem, row=index, field="video")
    return source


def to_item(value: Input, instruction: str | None = None, index: int = 0) -> Item:
    """One input (see the module docstring) as an :class:`Item`; ``index`` names it in errors."""
    video = None
    if isinstance(value, str):
        text, image = value, None
    elif isinstance(value, Path | Image.Image):
        text, image = "", _image(value, index)
    elif isinstance(value, Mapping):
        unknown = set(value) - INPUT_KEYS
        if unknown:
            raise DataError(f"unknown keys {sorted(unknown)}; expected 'text', 'image' and/or 'video'", row=index)
        text = value.get("text") or ""
        if not isinstance(text, str):
            raise DataError(f"text must be a string, got {type(text).__name__}", row=index, field="text")
        image = _image(value["image"], index) if value.get("image") is not None else None
        video = _video(value["video"], index) if value.get("video") is not None else None
    else:
        raise DataError(f"unsupported input type {type(value).__name__}; use str, PIL image, Path or dict",
                        row=index)
    if is_empty(text, image, video):
        raise DataError(f"input has {EMPTY_ITEM}", row=index, field="text")
    placeholder = IMAGE_PLACEHOLDER if image is not None else VIDEO_PLACEHOLDER if video is not None else None
    return Item(with_instruction(text, instruction, placeholder), image, video)


def to_items(inputs: Input | Sequence[Input], instruction: str | None = None) -> list[Item]:
    """A single input or a sequence of inputs as items."""
    if isinstance(inputs, str | Path | Image.Image | Mapping):
        inputs = [inputs]
    return [to_item(value, instruction, i) for i, value in enumerate(inputs)]


class Embedder:
    """Encode texts and images with a CoCoA checkpoint: the user API over a :class:`BatchEncoder`."""

    def __init__(self, encoder: BatchEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str | None = None,
                        pack_tokens: int | None = None) -> Embedder:
        """Load a checkpoint folder (see :meth:`BatchEncoder.from_pretrained`); ``pack_tokens`` packs
        each batch into rows of that many tokens."""
        return cls(BatchEncoder.from_pretrained(path, device=device, pack_tokens=pack_tokens))

    @property
    def dim(self) -> int:
        """The full embedding width."""
        return self.encoder.backbone.hidden_size

    @property
    def dims(self) -> tuple[int, ...]:
        """The embedding dims ``dim`` may ask for, ascending: the trained Matryoshka dims and the full one."""
        return self.encoder.dims

    @property
    def image_pixels(self) -> int:
        """The most pixels an image enters the vision tower with under this model's protocol."""
        policy = self.encoder.spec.protocol.image
        high = policy.bounds(self.encoder.backbone.image_processor)[1]
        return max(high, (policy.square or 0) ** 2)

    @property
    def fingerprint(self) -> str:
        """A stable hash of the model; indexes record it to refuse vectors of another model."""
        return self.encoder.fingerprint()

    def encode(self, inputs: Input | Sequence[Input], instruction: str | None = None, batch_size: int = ENCODE_BATCH_SIZE,
               show_progress: bool = False, dim: int | None = None) -> np.ndarray:
        """Float32 ``(n, dim)`` L2-normalised embeddings in input order (a single input gives ``n = 1``).

        ``dim`` (one of :attr:`dims`) keeps the first that many features, re-normalised.
        Bad data is a :class:`DataError` naming the input (``row``, 1-based in the message) and field,
        an image that does not decode included.
        """
        items = to_items(inputs, instruction)
        try:
            return self.encode_items(items, batch_size=batch_size, show_progress=show_progress, dim=dim)
        except ItemError as exc:
            raise ItemError(exc, exc.item, row=exc.item) from exc

    def encode_items(self, items: Sequence[Item], batch_size: int = ENCODE_BATCH_SIZE, show_progress: bool = False,
                     dim: int | None = None) -> np.ndarray:
        """Embeddings of ready-made items (the evaluator's path)."""
        width = self.dim if dim is None else check_dim(dim, self.dims)
        if not items:
            return np.zeros((0, width), dtype=np.float32)
        return self.truncate(self.encoder.encode_items(items, batch_size=batch_size, show_progress=show_progress),
                             width)

    def truncate(self, vectors: np.ndarray, dim: int) -> np.ndarray:
        """Full-width embeddings of this model at ``dim`` (one of :attr:`dims`), re-normalised."""
        width = check_dim(dim, self.dims)
        return vectors if width == vectors.shape[1] else truncate(vectors, width)
