"""Embedding protocols: how an item becomes model input and then an embedding, as named presets.

A :class:`Protocol` fixes every choice that moves an MMEB score while the weights stay the same:
how an image is sized (:class:`ImagePolicy`), how its tokens are laid out in the text, which
token (if any) ends a sequence, which position is pooled, the attention and the M-RoPE positions
of image tokens. Training stages, the evaluator, the encoder and the server all read one, and
a checkpoint records the one it was trained with (``cocoa.json``).

The presets (:data:`PROTOCOLS`) reproduce the reference code paths; ``docs/protocols.md`` says,
point by point, where they come from and how they differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from cocoa.core.errors import ConfigError

ImageTokens = Literal["vision_block", "bare"]
Pooling = Literal["last", "mean"]
Positions = Literal["grid", "sequential"]
EmbeddingAttention = Literal["bidirectional", "causal"]

#: Qwen2-VL's token budget unit: one merged token covers 28 x 28 pixels.
TOKEN_PIXELS = 28 * 28


@dataclass(frozen=True)
class ImagePolicy:
    """How an image is sized before the vision tower.

    ``square``: first squashed to ``square`` x ``square`` pixels (aspect ratio ignored, PIL
    bicubic), as the release's and VLM2Vec v1's ``--image_resolution`` do. ``enlarge`` =
    ``(side, to)``: an image with a side under ``side`` pixels is first squashed to ``to`` x ``to``
    (VLM2Vec v2: ``(28, 56)``). Then the processor's ``smart_resize`` keeps the aspect ratio and
    brings the area within ``[min_pixels, max_pixels]``, on multiples of patch x merge pixels; a
    bound left ``None`` is the checkpoint's own image processor's.
    """

    square: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    enlarge: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.enlarge is not None:
            if (not isinstance(self.enlarge, (list, tuple)) or len(self.enlarge) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.enlarge)):
                raise ConfigError(f"image policy: enlarge must be [side, to], two positive integers, got "
                                  f"{self.enlarge!r}")
            object.__setattr__(self, "enlarge", tuple(self.enlarge))
        for name in ("square", "min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"image policy: {name} must be a positive integer or null, got {value!r}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ConfigError(f"image policy: min_pixels {self.min_pixels} is over max_pixels {self.max_pixels}")

    def bounds(self, processor: Any) -> tuple[int, int]:
        """``(min_pixels, max_pixels)``: this policy's, else ``processor``'s own."""
        low = self.min_pixels if self.min_pixels is not None else int(processor.size["shortest_edge"])
        high = self.max_pixels if self.max_pixels is not None else int(processor.size["longest_edge"])
        if low > high:
            raise ConfigError(f"image policy: min_pixels {low} is over max_pixels {high} (one of them is the "
                              "image processor's own)")
        return low, high

    def side(self, width: int, height: int) -> int | None:
        """The square side an image of ``width`` x ``height`` is squashed to first, or ``None``."""
        if self.enlarge is not None and min(width, height) < self.enlarge[0]:
            return self.enlarge[1]
        return self.square

    def squash(self, image: Image.Image) -> Image.Image:
        """``image`` squashed to its square side (:meth:`side`), or unchanged without one."""
        side = self.side(*image.size)
        if side is None or image.size == (side, side):
            return image
        return image.resize((side, side), Image.Resampling.BICUBIC)

    def resized(self, width: int, height: int, processor: Any) -> tuple[int, int]:
        """``(height, width)`` in pixels that an image of ``width`` x ``height`` enters the vision tower at."""
        side = self.side(width, height)
        if side is not None:
            width = height = side
        low, high = self.bounds(processor)
        factor = int(processor.patch_size) * int(processor.merge_size)
        return smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)

    def tokens(self, width: int, height: int, processor: Any) -> int:
        """Merged image tokens (``<|image_pad|>`` count) of an image of ``width`` x ``height``."""
        h, w = self.resized(width, height, processor)
        factor = int(processor.patch_size) * int(processor.merge_size)
        return (h // factor) * (w // factor)


#: The most frames a video may be sampled to (Qwen2-VL's video processor's ``max_frames``).
MAX_VIDEO_FRAMES = 768
#: The decompression guard of one video frame, as for images.
MAX_FRAME_PIXELS = 64_000_000


@dataclass(frozen=True)
class VideoPolicy:
    """How a video is sampled and sized before the vision tower.

    ``frames`` frames are sampled uniformly over the whole video (VLM2Vec-V2's MMEB-V2 setting is
    8; Qwen3-VL-Embedding's is 64); a video with fewer keeps all of its own. The vision tower
    merges frames in pairs (temporal patch 2), so an odd count repeats the last frame. Every frame
    is sized as the first one is by the processor's ``smart_resize`` within ``[min_pixels,
    max_pixels]`` per frame (``None``: the image policy's bounds).
    ``fps`` is the frame rate assumed for frame folders and frame lists, which carry none (a video
    file's own rate is read from it); it only moves Qwen2.5-VL's temporal positions and Qwen3-VL's
    timestamps. ``max_tokens`` bounds a video's merged tokens; a longer one is refused, naming it.
    """

    frames: int = 8
    fps: float = 1.0
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_tokens: int = 16_384
    max_frame_pixels: int = MAX_FRAME_PIXELS

    def __post_init__(self) -> None:
        for name in ("frames", "max_tokens", "max_frame_pixels", "min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is None and name in ("min_pixels", "max_pixels"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"video policy: {name} must be a positive integer, got {value!r}")
        if self.frames > MAX_VIDEO_FRAMES:
            raise ConfigError(f"video policy: frames is {self.frames}, over the limit of {MAX_VIDEO_FRAMES}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not self.fps > 0:
            raise ConfigError(f"video policy: fps must be a positive number, got {self.fps!r}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ConfigError(f"video policy: min_pixels {self.min_pixels} is over max_pixels {self.max_pixels}")

    def bounds(self, image: ImagePolicy, processor: Any) -> tuple[int, int]:
        """``(min_pixels, max_pixels)`` of one frame: this policy's, else the image policy's."""
        low, high = image.bounds(processor)
        low = self.min_pixels if self.min_pixels is not None else low
        high = self.max_pixels if self.max_pixels is not None else high
        if low > high:
            raise ConfigError(f"video policy: min_pixels {low} is over max_pixels {high}")
        return low, high

    def resized(self, width: int, height: int, image: ImagePolicy, processor: Any) -> tuple[int, int]:
        """``(height, width)`` in pixels that each frame of a ``width`` x ``height`` video enters the tower at."""
        low, high = self.bounds(image, processor)
        factor = int(processor.patch_size) * int(processor.merge_size)
        return smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)

    def sampled(self, available: int) -> int:
        """How many frames a video with ``available`` frames is sampled to."""
        return min(self.frames, available)

    def grid(self, width: int, height: int, frames: int, image: ImagePolicy, processor: Any) -> tuple[int, int, int]:
        """``(t, h, w)`` patch grid of ``frames`` sampled frames: temporal steps, then patches down and across."""
        h, w = self.resized(width, height, image, processor)
        temporal, patch = int(processor.temporal_patch_size), int(processor.patch_size)
        return -(-frames // temporal), h // patch, w // patch

    def tokens(self, width: int, height: int, frames: int, image: ImagePolicy, processor: Any) -> int:
        """Merged video tokens (``<|video_pad|>`` count) of ``frames`` sampled frames of ``width`` x ``height``."""
        t, h, w = self.grid(width, height, frames, image, processor)
        return t * h * w // int(processor.merge_size) ** 2


@dataclass(frozen=True)
class Protocol:
    """Everything between an item and its embedding that is not a weight.

    - ``image``: the :class:`ImagePolicy`; ``video``: the :class:`VideoPolicy`.
    - ``image_tokens``: ``vision_block`` wraps the image pads in ``<|vision_start|>`` /
      ``<|vision_end|>``; ``bare`` puts the pads alone where the MMEB placeholder was
      (VLM2Vec v1).
    - ``embedding_token``: the token added at the end of every sequence, whose state is pooled
      (a token string, ``None``: none); stage 2 bridges query and target through it.
    - ``pooling``: ``last`` pools the last real token (the embedding token when there is one),
      ``mean`` averages every real token.
    - ``attention``: ``bidirectional`` or ``causal``.
    - ``positions``: ``grid`` gives image tokens their 2-D M-RoPE positions; ``sequential``
      gives every token one running position (what Qwen2-VL's rope index did for image pads
      with no ``<|vision_start|>`` before them, in the transformers VLM2Vec v1 ran).
    """

    name: str
    image: ImagePolicy = ImagePolicy()
    video: VideoPolicy = VideoPolicy()
    image_tokens: ImageTokens = "vision_block"
    embedding_token: str | None = "<|endoftext|>"
    pooling: Pooling = "last"
    attention: EmbeddingAttention = "bidirectional"
    positions: Positions = "grid"

    def __post_init__(self) -> None:
        allowed = {"image_tokens": ("vision_block", "bare"), "pooling": ("last", "mean"),
                   "attention": ("bidirectional", "causal"), "positions": ("grid", "sequential")}
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ConfigError(f"protocol {self.name!r}: {name} must be one of {values}, "
                                  f"got {getattr(self, name)!r}")
        if self.embedding_token is not None and not (isinstance(self.embedding_token, str) and self.embedding_token):
            raise ConfigError(f"protocol {self.name!r}: embedding_token must be a token string or null, "
                              f"got {self.embedding_token!r}")

    def replace(self, **changes: Any) -> Protocol:
        """A copy with ``changes``; ``image`` and ``video`` may be given as mappings."""
        if isinstance(changes.get("image"), dict):
            changes["image"] = ImagePolicy(**changes["image"])
        if isinstance(changes.get("video"), dict):
            changes["video"] = VideoPolicy(**changes["video"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``image.enlarge`` as a list)."""
        data = dataclasses.asdict(self)
        if data["image"]["enlarge"] is not None:
            data["image"]["enlarge"] = list(data["image"]["enlarge"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "protocol") -> Protocol:
        """Inverse of :meth:`to_dict`; unknown keys are errors naming ``source``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a protocol must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source}: unknown protocol keys {sorted(unknown)}")
        if "name" not in data:
            raise ConfigError(f"{source}: a protocol needs a name")
        image = data.get("image") or {}
        if not isinstance(image, dict) or set(image) - {f.name for f in dataclasses.fields(ImagePolicy)}:
            raise ConfigError(f"{source}: image must be a mapping of square, min_pixels, max_pixels, enlarge; "
                              f"got {image!r}")
        video = data.get("video") or {}
        if not isinstance(video, dict) or set(video) - {f.name for f in dataclasses.fields(VideoPolicy)}:
            raise ConfigError(f"{source}: video must be a mapping of "
                              f"{', '.join(f.name for f in dataclasses.fields(VideoPolicy))}; got {video!r}")
        return cls(**{**data, "image": ImagePolicy(**image), "video": VideoPolicy(**video)})


#: VLM2Vec v2's defaults (``--min_pixels`` / ``--max_pixels``): 4 to 1280 merged tokens.
VLM2VEC_V2_BOUNDS = {"min_pixels": 4 * TOKEN_PIXELS, "max_pixels": 1280 * TOKEN_PIXELS}
#: VLM2Vec v1's evaluation: a bare ``<|image_pad|>``, no embedding token, the last token pooled, causal,
#: and (no ``<|vision_start|>`` for its rope index to find) one running position for every token.
_VLM2VEC_V1 = {"image_tokens": "bare", "embedding_token": None, "attention": "causal", "positions": "sequential"}

#: The shipped presets by name. The release's and VLM2Vec v1's evaluation read the image processor from the
#: checkpoint (``AutoProcessor``), so their squashed images meet the checkpoint's own pixel bounds
#: (3136 to 12845056 for Qwen2-VL-Instruct); VLM2Vec v2 passes its own.
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("cocoa"),
    Protocol("cocoa-release", ImagePolicy(square=672), embedding_token="<|im_end|>", positions="sequential"),
    Protocol("vlm2vec-v1", ImagePolicy(square=1344), **_VLM2VEC_V1),
    Protocol("vlm2vec-v1-low", ImagePolicy(square=128), **_VLM2VEC_V1),
    Protocol("vlm2vec-v1-mid", ImagePolicy(square=672), **_VLM2VEC_V1),
    Protocol("vlm2vec-v1-high", ImagePolicy(square=1344), **_VLM2VEC_V1),
    Protocol("vlm2vec-v2", ImagePolicy(enlarge=(28, 56), **VLM2VEC_V2_BOUNDS), **_VLM2VEC_V1),
)}
DEFAULT_PROTOCOL = "cocoa"


def get_protocol(name: str) -> Protocol:
    """The preset called ``name``, or an error listing them."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
