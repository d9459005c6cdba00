"""From items to padded batches: the one place that places image tokens.

Every stage, the evaluator and the inference API build their sequences here, so training,
evaluation and serving can never disagree about preprocessing. A
:class:`~cocoa.core.protocol.Protocol` decides the details: each image is sized by its image
policy and becomes ``<|vision_start|> <|image_pad|> x n <|vision_end|>`` (or the pads alone),
placed where the text has the MMEB placeholder ``<|image_1|>``, or before the text when it has
none; the protocol's token (if any) is appended to an embedding sequence.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from PIL import Image
from torch import Tensor

from cocoa.core.batch import Batch
from cocoa.core.protocol import DEFAULT_PROTOCOL, Protocol, get_protocol
from cocoa.core.tokens import IGNORE_INDEX, Role
from cocoa.data.images import open_image
from cocoa.data.items import EMPTY_ITEM, IMAGE_PLACEHOLDER, Item, is_empty, text_problem
from cocoa.errors import ConfigError, DataError
from cocoa.model.backbone import Backbone


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
        return sum(self.mm)


class Preprocessor:
    """Tokenises items and images for a backbone under a protocol, never truncating image tokens.

    ``embedding_token`` is the protocol's appended token (stage 2's bridge token too); without
    one it is the tokenizer's EOS, which then serves only as a bridge.
    """

    def __init__(self, backbone: Backbone, max_len: int = 4096, protocol: Protocol | None = None) -> None:
        if max_len < 2:
            raise DataError(f"max_len must be at least 2, got {max_len}", field="max_len")
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.ids = backbone.ids
        self.max_len = max_len
        self.protocol = protocol or get_protocol(DEFAULT_PROTOCOL)
        self.appended = None if self.protocol.append is None else self.token_id(self.protocol.append)
        self.embedding_token = self.ids.eos if self.appended is None else self.appended

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
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

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
        wrapped = self.protocol.image_tokens == "vision_block"
        block = Encoded()
        if wrapped:
            block.add([self.ids.vision_start], role, protected=True)
        block.add([self.ids.image] * n_tokens, role, mm=1, protected=True)
        if wrapped:
            block.add([self.ids.vision_end], role, protected=True)
        block.pixels.append(out["pixel_values"])
        block.grids.append(grid)
        return block

    def item(self, item: Item, role: Role = Role.QUERY) -> Encoded:
        """The tokens of an item, with its image placed at the placeholder (or first)."""
        text = item.text or ""
        if item.image is None:
            if IMAGE_PLACEHOLDER in text:
                raise DataError(f"text has the image placeholder {IMAGE_PLACEHOLDER} but the item has no image",
                                field="text")
            before, after = "", text
        elif IMAGE_PLACEHOLDER in text:
            before, after = text.split(IMAGE_PLACEHOLDER, 1)
            after = after.replace(IMAGE_PLACEHOLDER, "")
        else:
            before, after = "", text
        if is_empty(text, item.image):
            raise DataError(f"item has {EMPTY_ITEM}", field="text")
        if problem := text_problem(text):
            raise DataError(problem, field="text")
        enc = Encoded()
        enc.add(self.text_ids(before), role)
        if item.image is not None:
            enc.extend(self.image_block(item.image, role))
        enc.add(self.text_ids(after), role)
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
                f"{enc.num_image_tokens()} image tokens, over max_len={self.max_len}; raise max_len or lower "
                "the image processor's max_pixels (image tokens are never truncated)", field="max_len")
        keep = [i for i in range(len(enc)) if i not in drop]
        out = Encoded(pixels=enc.pixels, grids=enc.grids)
        for name in ("ids", "roles", "mm", "labels", "protected"):
            values = getattr(enc, name)
            setattr(out, name, [values[i] for i in keep])
        return out

    def embedding_sequence(self, item: Item) -> Encoded:
        """``item`` followed by the protocol's appended token: the sequence whose pooled state is the embedding."""
        if self.appended is None:
            return self.fit(self.item(item))
        enc = self.fit(self.item(item), reserve=1)
        enc.add([self.appended], Role.EOS, protected=True)
        return enc


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
    is_eos = roles == Role.EOS
    pool_index = torch.where(is_eos.any(1), is_eos.int().argmax(1), (roles != Role.PAD).int().cumsum(1).argmax(1))
    pixels = [p for s in seqs for p in s.pixels]
    grids = [g for s in seqs for g in s.grids]
    return Batch(input_ids=input_ids, roles=roles, mm_token_type_ids=mm, labels=labels, pool_index=pool_index,
                 pixel_values=torch.cat(pixels) if pixels else None,
                 image_grid_thw=torch.cat(grids) if grids else None)
