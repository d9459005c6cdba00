"""From items to padded batches: the one place that places image and video tokens.

Every stage, the evaluator and the inference API build their sequences here, so training,
evaluation and serving can never disagree about preprocessing. A
:class:`~cocoa.core.protocol.Protocol` decides the details: each image is sized by its image
policy and becomes ``<|vision_start|> <|image_pad|> x n <|vision_end|>`` (or the pads alone),
placed where the text has the MMEB placeholder ``<|image_1|>``, or before the text when it has
none; the protocol's embedding token (if any) ends an embedding sequence.

A video is sampled and sized by the video policy and becomes ``<|vision_start|> <|video_pad|> x n
<|vision_end|>`` (Qwen2-VL, Qwen2.5-VL), or, as Qwen3-VL's processor writes it, one such block per
temporal patch, each after its timestamp text ``<t seconds>``; it goes where the text has
``<|video_1|>``, or before the text (after an image placed there).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from cocoa.core.batch import Batch
from cocoa.core.errors import ConfigError, DataError
from cocoa.core.protocol import DEFAULT_PROTOCOL, Protocol, get_protocol
from cocoa.core.tokens import IGNORE_INDEX, Modality, Role
from cocoa.data.images import open_image
from cocoa.data.items import (
    EMPTY_ITEM,
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
    Item,
    VideoSource,
    is_empty,
    text_problem,
)
from cocoa.data.videos import Frames, describe, read_frames
from cocoa.model.backbone import Backbone

#: Splits a text at the image and video placeholders, keeping them.
PLACEHOLDERS = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)})")


@dataclass
class Encoded:
    """One token sequence with per-position role, modality, label and protection flags."""

    ids: list[int] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    mm: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    protected: list[bool] = field(default_factory=list)
    pixels: list[Tensor] = field(default_factory=list)
    grids: list[Tensor] = field(default_factory=list)
    video_pixels: list[Tensor] = field(default_factory=list)
    video_grids: list[Tensor] = field(default_factory=list)
    video_seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: Sequence[int], role: Role, *, mm: int = 0, protected: bool = False) -> None:
        self.ids.extend(ids)
        self.roles.extend([int(role)] * len(ids))
        self.mm.extend([mm] * len(ids))
        self.labels.extend([IGNORE_INDEX] * len(ids))
        self.protected.extend([protected] * len(ids))

    def extend(self, other: Encoded) -> None:
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))

    def num_image_tokens(self) -> int:
        """Image and video tokens (never truncated)."""
        return sum(1 for m in self.mm if m != Modality.TEXT)


class Preprocessor:
    """Tokenises items and images for a backbone under a protocol, never truncating image tokens.

    ``embedding_token_id`` is the id of the protocol's embedding token (``None`` when it has none);
    ``bridge_id`` is what stage 2 joins query and target through: the embedding token, or the
    tokenizer's EOS when the protocol has none.
    """

    def __init__(self, backbone: Backbone, max_len: int = 4096, protocol: Protocol | None = None) -> None:
        if max_len < 2:
            raise DataError(f"max_len must be at least 2, got {max_len}", field="max_len")
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.ids = backbone.ids
        self.max_len = max_len
        self.protocol = protocol or get_protocol(DEFAULT_PROTOCOL)
        token = self.protocol.embedding_token
        self.embedding_token_id = None if token is None else self.token_id(token)
        self.bridge_id = self.ids.eos if self.embedding_token_id is None else self.embedding_token_id

    def token_id(self, token: str) -> int:
        """The id of a single token of the tokenizer, or an error naming the protocol."""
        value = self.tokenizer.convert_tokens_to_ids(token)
        if value is None or value == self.tokenizer.unk_token_id:
            raise ConfigError(f"protocol {self.protocol.name!r} appends {token!r}, which the tokenizer does not "
                              "have as one token")
        return int(value)

    def for_thread(self) -> Preprocessor:
        """A copy with a tokenizer of its own, for use from another thread.

        A fast tokenizer is one Rust object that raises "Already borrowed" when one thread
        changes its truncation or padding while another encodes; copies share nothing.
        """
        clone = copy.copy(self)
        clone.tokenizer = copy.deepcopy(self.tokenizer)
        return clone

    def text_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as text: a special token's string in it (``<|image_pad|>``, ``<|im_end|>``)
        is tokenised as its characters, never as the control token, in every entry point alike."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def pixels(self, image: str | Image.Image) -> dict[str, Tensor]:
        """``pixel_values`` and ``image_grid_thw`` of an image sized by the protocol's image policy."""
        policy = self.protocol.image
        processor = self.backbone.image_processor
        low, high = policy.bounds(processor)
        return processor(images=[policy.squash(open_image(image))], return_tensors="pt",
                         size={"shortest_edge": low, "longest_edge": high})

    def image_block(self, image: str | Image.Image, role: Role = Role.QUERY) -> Encoded:
        """One ``image_pad`` per merged patch (inside ``vision_start`` / ``vision_end`` unless bare), with pixels."""
        out = self.pixels(image)
        grid = out["image_grid_thw"]
        n_tokens = int(grid.prod()) // self.backbone.merge_size ** 2
        block = Encoded()
        self._wrap(block, [self.ids.image] * n_tokens, role, Modality.IMAGE)
        block.pixels.append(out["pixel_values"])
        block.grids.append(grid)
        return block

    def frames(self, video: VideoSource) -> Frames:
        """The sampled frames of ``video`` under the protocol's video policy."""
        return read_frames(video, self.protocol.video)

    def video_block(self, video: VideoSource, role: Role = Role.QUERY) -> Encoded:
        """A video's tokens in the backbone family's layout (see the module docstring), with its pixels."""
        policy, processor = self.protocol.video, self.backbone.image_processor
        frames = self.frames(video)
        width, height = frames.images[0].size
        t, h, w = policy.grid(width, height, len(frames.images), self.protocol.image, processor)
        per_step = h * w // self.backbone.merge_size ** 2
        if t * per_step > policy.max_tokens:
            raise DataError(f"video needs {t * per_step} tokens ({len(frames.images)} frames of {width}x{height}), "
                            f"over the video policy's max_tokens={policy.max_tokens}; sample fewer frames or "
                            "lower max_pixels", file=describe(video))
        low, high = policy.bounds(self.protocol.image, processor)
        pixels, grid = video_pixels(frames.images, processor, low, high)
        temporal = int(processor.temporal_patch_size)
        times = frames.times + frames.times[-1:] * (-len(frames.times) % temporal)
        block = Encoded()
        stamped = self.backbone.family == "qwen3_vl"  # one block per temporal step, after its mean time
        blocks = t if stamped else 1
        for step in range(blocks):
            if stamped:
                stamp = (times[step * temporal] + times[(step + 1) * temporal - 1]) / 2
                block.add(self.text_ids(f"<{stamp:.1f} seconds>"), role, protected=True)
            self._wrap(block, [self.ids.video] * (t * per_step // blocks), role, Modality.VIDEO)
        block.video_pixels.append(pixels)
        block.video_grids.append(grid)
        gaps = [b - a for a, b in zip(frames.times, frames.times[1:], strict=False) if b > a]
        block.video_seconds.append(temporal * (sum(gaps) / len(gaps) if gaps else 1.0 / policy.fps))
        return block

    def _wrap(self, block: Encoded, pads: list[int], role: Role, modality: Modality) -> None:
        """``pads`` inside ``<|vision_start|>`` / ``<|vision_end|>`` unless the protocol lays them bare."""
        wrapped = self.protocol.image_tokens == "vision_block"
        if wrapped:
            block.add([self.ids.vision_start], role, protected=True)
        block.add(pads, role, mm=int(modality), protected=True)
        if wrapped:
            block.add([self.ids.vision_end], role, protected=True)

    def item(self, item: Item, role: Role = Role.QUERY) -> Encoded:
        """The tokens of an item, with its image and video placed at their placeholders (or first)."""
        text = item.text or ""
        if is_empty(text, item.image, item.video):
            raise DataError(f"item has {EMPTY_ITEM}", field="text")
        if problem := text_problem(text):
            raise DataError(problem, field="text")
        media = [(IMAGE_PLACEHOLDER, "image", item.image), (VIDEO_PLACEHOLDER, "video", item.video)]
        for placeholder, name, value in media:
            if value is None and placeholder in text:
                raise DataError(f"text has the {name} placeholder {placeholder} but the item has no {name}",
                                field="text")
        blocks = {}
        if item.image is not None:
            blocks[IMAGE_PLACEHOLDER] = _in_field("image", self.image_block, item.image, role)
        if item.video is not None:
            blocks[VIDEO_PLACEHOLDER] = _in_field("video", self.video_block, item.video, role)
        enc = Encoded()
        for placeholder, block in blocks.items():
            if placeholder not in text:
                enc.extend(block)
        buffer, placed = "", set()
        for part in PLACEHOLDERS.split(text):  # text and placeholders, in order; repeats are dropped
            if part in blocks and part not in placed:
                enc.add(self.text_ids(buffer), role)
                enc.extend(blocks[part])
                buffer = ""
                placed.add(part)
            elif part not in (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER):
                buffer += part
        enc.add(self.text_ids(buffer), role)
        return enc

    def fit(self, enc: Encoded, reserve: int = 0) -> Encoded:
        """Drop trailing text tokens until ``len + reserve <= max_len``; never image tokens."""
        budget = self.max_len - reserve
        excess = len(enc) - budget
        if excess <= 0:
            return enc
        drop: set[int] = set()
        for pos in range(len(enc) - 1, -1, -1):
            if len(drop) == excess:
                break
            if not enc.protected[pos]:
                drop.add(pos)
        if len(drop) < excess:
            raise DataError(
                f"sequence needs {len(enc) - len(drop) + reserve} tokens including "
                f"{enc.num_image_tokens()} image and video tokens, over max_len={self.max_len}; raise max_len, lower "
                "the image processor's max_pixels or sample fewer frames (image tokens are never truncated)",
                field="max_len")
        keep = [i for i in range(len(enc)) if i not in drop]
        out = Encoded(pixels=enc.pixels, grids=enc.grids, video_pixels=enc.video_pixels, video_grids=enc.video_grids,
                      video_seconds=enc.video_seconds)
        for name in ("ids", "roles", "mm", "labels", "protected"):
            values = getattr(enc, name)
            setattr(out, name, [values[i] for i in keep])
        return out

    def embedding_sequence(self, item: Item) -> Encoded:
        """``item`` followed by the protocol's embedding token: the sequence whose pooled state is the embedding."""
        if self.embedding_token_id is None:
            return self.fit(self.item(item))
        enc = self.fit(self.item(item), reserve=1)
        enc.add([self.embedding_token_id], Role.EMBEDDING, protected=True)
        return enc


def _in_field(name: str, make: Callable[..., Encoded], *args: Any) -> Encoded:
    """``make(*args)``, with a :class:`DataError` that names no field naming field ``name``."""
    try:
        return make(*args)
    except DataError as exc:
        if exc.field is not None:
            raise
        raise DataError(exc.message, file=exc.file, row=exc.row, field=name, line=exc.line) from exc


def video_pixels(frames: list[Image.Image], processor: Any, min_pixels: int, max_pixels: int
                 ) -> tuple[Tensor, Tensor]:
    """``(pixel_values_videos, video_grid_thw)`` of ``frames`` in the layout of the upstream video processors.

    Every frame goes through the checkpoint's own image processor at the size ``smart_resize`` gives
    the first frame (so all share one grid); the image processor fills each patch's temporal slots
    with copies of its one frame, and here consecutive frames fill them instead (the last frame
    repeated up to a multiple of the temporal patch). The patch order within each temporal step
    is the image order, as in ``Qwen2VLVideoProcessor``. A still video (two equal frames) thus has
    exactly the pixels of its image.
    """
    height, width = smart_resize(frames[0].height, frames[0].width,
                                 factor=int(processor.patch_size) * int(processor.merge_size),
                                 min_pixels=min_pixels, max_pixels=max_pixels)
    sized = [f if f.size == (width, height) else f.resize((width, height), Image.Resampling.BICUBIC) for f in frames]
    out = processor(images=sized, return_tensors="pt", size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    temporal, patch = int(processor.temporal_patch_size), int(processor.patch_size)
    _, grid_h, grid_w = (int(v) for v in out["image_grid_thw"][0])
    per_frame = out["pixel_values"].reshape(len(sized), grid_h * grid_w, -1, temporal, patch, patch)[:, :, :, 0]
    if pad := -len(sized) % temporal:
        per_frame = torch.cat([per_frame, per_frame[-1:].expand(pad, *per_frame.shape[1:])])
    steps = per_frame.shape[0] // temporal
    stacked = per_frame.reshape(steps, temporal, *per_frame.shape[1:]).permute(0, 2, 3, 1, 4, 5)
    return stacked.reshape(steps * grid_h * grid_w, -1).contiguous(), torch.tensor([[steps, grid_h, grid_w]])


def collate(seqs: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> Batch:
    """Pad sequences into a :class:`Batch` (images concatenated in sequence order)."""
    if not seqs:
        raise DataError("cannot collate an empty batch")
    if padding_side not in ("left", "right"):
        raise DataError(f"padding_side must be 'left' or 'right', got {padding_side!r}", field="padding_side")
    length = max(len(s) for s in seqs)

    def pad(values: list[int], fill: int) -> list[int]:
        filler = [fill] * (length - len(values))
        return values + filler if padding_side == "right" else filler + values

    input_ids = torch.tensor([pad(s.ids, pad_id) for s in seqs], dtype=torch.long)
    roles = torch.tensor([pad(s.roles, int(Role.PAD)) for s in seqs], dtype=torch.long)
    mm = torch.tensor([pad(s.mm, 0) for s in seqs], dtype=torch.int)
    labels = torch.tensor([pad(s.labels, IGNORE_INDEX) for s in seqs], dtype=torch.long)
    is_eos = roles == Role.EMBEDDING
    pool_index = torch.where(is_eos.any(1), is_eos.int().argmax(1), (roles != Role.PAD).int().cumsum(1).argmax(1))
    pixels = [p for s in seqs for p in s.pixels]
    grids = [g for s in seqs for g in s.grids]
    video_pixels = [p for s in seqs for p in s.video_pixels]
    video_grids = [g for s in seqs for g in s.video_grids]
    seconds = [x for s in seqs for x in s.video_seconds]
    return Batch(input_ids=input_ids, roles=roles, mm_token_type_ids=mm, labels=labels, pool_index=pool_index,
                 pixel_values=torch.cat(pixels) if pixels else None,
                 image_grid_thw=torch.cat(grids) if grids else None,
                 pixel_values_videos=torch.cat(video_pixels) if video_pixels else None,
                 video_grid_thw=torch.cat(video_grids) if video_grids else None,
                 video_second_per_grid=torch.tensor(seconds) if seconds else None)
