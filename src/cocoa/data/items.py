"""The unit of encoding shared by training, evaluation and inference."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

#: The image placeholder used by MMEB files (Phi-3 style). The collator is the one place
#: that replaces it with the backbone's own image tokens.
IMAGE_PLACEHOLDER = "<|image_1|>"


@dataclass(frozen=True)
class Item:
    """A text, an image, or both, as MMEB rows describe a query or candidate.

    ``text`` is used verbatim and may contain :data:`IMAGE_PLACEHOLDER` marking where the
    image goes; with an image and no placeholder the image is placed before the text.
    ``image`` is an absolute path, a PIL image, or ``None``.
    """

    text: str = ""
    image: str | Image.Image | None = field(default=None, compare=True)

    @property
    def is_empty(self) -> bool:
        """Neither text (blank counts as none) nor image: nothing to embed."""
        return is_empty(self.text, self.image)

    def key(self) -> tuple[str, str]:
        """A hashable identity for de-duplication and caching (paths only)."""
        if isinstance(self.image, Image.Image):
            raise TypeError("items holding in-memory images have no stable key")
        return (self.text, self.image or "")


#: The message of every "nothing to embed" error.
EMPTY_ITEM = "neither text nor image"


def is_empty(text: str | None, image: object | None) -> bool:
    """The one test of an empty input: no image and no text beyond whitespace."""
    return image is None and not (text or "").strip()


def text_problem(text: str | None) -> str | None:
    """What makes ``text`` untokenisable (``None``: nothing): a lone surrogate, which has no UTF-8 form."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text is not valid Unicode: a lone surrogate {text[exc.start]!r} at character {exc.start}"
    return None


@dataclass(frozen=True)
class EvalRow:
    """One MMEB-eval query with its own candidate list; the gold candidate is index 0."""

    query: Item
    candidates: tuple[Item, ...]


@dataclass(frozen=True, eq=False)
class EvalDataset:
    """One MMEB-eval dataset read from disk, with each distinct item stored once.

    Row ``i``'s query is ``items[queries[i]]``; its candidates are ``items[j]`` for each ``j`` of
    ``candidates[i]`` up to the first ``-1`` (which pads rows shorter than the longest).
    """

    name: str
    items: tuple[Item, ...]
    queries: np.ndarray
    candidates: np.ndarray
    source: str

    @property
    def rows(self) -> tuple[EvalRow, ...]:
        """Every row as :class:`EvalRow` objects (built on each access)."""
        counts = (self.candidates >= 0).sum(axis=1).tolist()
        return tuple(EvalRow(self.items[query], tuple(self.items[j] for j in ids[:count]))
                     for query, ids, count in zip(self.queries.tolist(), self.candidates.tolist(), counts,
                                                  strict=True))


@dataclass(frozen=True)
class TrainPair:
    """One MMEB-train row: query, positive target and an optional hard negative."""

    query: Item
    positive: Item
    negative: Item | None = None
    subset: str = ""
