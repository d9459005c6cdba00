"""The unit of encoding shared by training, evaluation and inference."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

#: The image placeholder used by MMEB files (Phi-3 style). The collator is the one place
#: that replaces it with the backbone's own image tokens.
IMAGE_PLACEHOLDER = "<|image_1|>"
#: Where a video goes in an item's text; without it the video is placed before the text.
VIDEO_PLACEHOLDER = "<|video_1|>"


class EveryFrame(str):
    """A frame folder read whole: every frame, none sampled away by the protocol's frame count
    (VLM2Vec-V2 reads MomentSeeker's clips so). Its cache key differs from the plain folder's."""

    __slots__ = ()


#: An item's video: a frame folder or video file path, or a tuple of frame paths (:mod:`cocoa.data.videos`).
VideoSource = str | tuple[str, ...]
#: Added to the key of an :class:`EveryFrame` video.
EVERY_FRAME_KEY = "#every-frame"
#: Separates the image path from the video in :meth:`Item.key` (no path holds a NUL).
VIDEO_KEY = "\0video:"


@dataclass(frozen=True)
class Item:
    """A text, an image, a video, or text with either or both, as MMEB rows describe a query or candidate.

    ``text`` is used verbatim and may contain :data:`IMAGE_PLACEHOLDER` / :data:`VIDEO_PLACEHOLDER`
    marking where the image / video goes; without a placeholder it is placed before the text.
    ``image`` is an absolute path, a PIL image, or ``None``; ``video`` a :data:`VideoSource` or ``None``.
    """

    text: str = ""
    image: str | Image.Image | None = field(default=None, compare=True)
    video: VideoSource | None = None

    @property
    def is_empty(self) -> bool:
        """Neither text (blank counts as none) nor image nor video: nothing to embed."""
        return is_empty(self.text, self.image, self.video)

    def key(self) -> tuple[str, str]:
        """A hashable identity for de-duplication and caching (paths only): the text and the media paths."""
        if isinstance(self.image, Image.Image):
            raise TypeError("items holding in-memory images have no stable key")
        if self.video is None:
            return (self.text, self.image or "")
        video = self.video if isinstance(self.video, str) else "\n".join(self.video)
        video += EVERY_FRAME_KEY if isinstance(self.video, EveryFrame) else ""
        return (self.text, f"{self.image or ''}{VIDEO_KEY}{video}")


#: The message of every "nothing to embed" error.
EMPTY_ITEM = "neither text nor image"


def is_empty(text: str | None, image: object | None, video: object | None = None) -> bool:
    """The one test of an empty input: no image, no video and no text beyond whitespace."""
    return image is None and video is None and not (text or "").strip()


def text_problem(text: str | None) -> str | None:
    """What makes ``text`` untokenisable (``None``: nothing): a lone surrogate, which has no UTF-8 form."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text is not valid Unicode: a lone surrogate {text[exc.start]!r} at character {exc.start}"
    return None


class ItemTable:
    """Distinct items in first-seen order, each stored once (by :meth:`Item.key`)."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._index: dict[tuple[str, str], int] = {}

    def add(self, item: Item) -> int:
        """The position of ``item`` (added if new)."""
        key = item.key()
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(item)
        return self._index[key]


@dataclass(frozen=True)
class EvalRow:
    """One MMEB-eval query with its own candidate list; the gold candidate is index 0."""

    query: Item
    candidates: tuple[Item, ...]


@dataclass(frozen=True, eq=False)
class EvalDataset:
    """One MMEB-eval dataset read from disk, with each distinct item stored once.

    Row ``i``'s query is ``items[queries[i]]``; its candidates are ``items[j]`` for each ``j`` of
    ``candidates[i]`` up to the first ``-1`` (which pads rows shorter than the longest). The gold
    candidate is the first; with ``golds``, row ``i``'s first ``golds[i]`` candidates are all gold
    (several, or none when the source's gold is not among its candidates).
    """

    name: str
    items: tuple[Item, ...]
    queries: np.ndarray
    candidates: np.ndarray
    source: str
    golds: np.ndarray | None = None

    @property
    def rows(self) -> tuple[EvalRow, ...]:
        """Every row as :class:`EvalRow` objects (built on each access)."""
        counts = (self.candidates >= 0).sum(axis=1).tolist()
        return tuple(EvalRow(self.items[query], tuple(self.items[j] for j in ids[:count]))
                     for query, ids, count in zip(self.queries.tolist(), self.candidates.tolist(), counts,
                                                  strict=True))


@dataclass(frozen=True)
class TrainPair:
    """One MMEB-train row: query, positive target and its hard negatives (none, one or more)."""

    query: Item
    positive: Item
    negatives: tuple[Item, ...] = ()
    subset: str = ""
