"""The padded batch every forward pass takes, as the collator builds it."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from cocoa.core.tokens import Modality, Role


@dataclass
class Batch:
    """A padded batch; ``pool_index`` is each row's (first) EOS position.

    Images and videos are each concatenated in sequence order (``pixel_values`` /
    ``image_grid_thw``, ``pixel_values_videos`` / ``video_grid_thw``); ``video_second_per_grid``
    is each video's seconds per temporal patch (Qwen2.5-VL's temporal positions).
    ``image_token_mask`` (stage 1 only) flags the merged image tokens hidden from the model.
    """

    input_ids: Tensor
    roles: Tensor
    mm_token_type_ids: Tensor
    labels: Tensor
    pool_index: Tensor
    pixel_values: Tensor | None = None
    image_grid_thw: Tensor | None = None
    image_token_mask: Tensor | None = None
    pixel_values_videos: Tensor | None = None
    video_grid_thw: Tensor | None = None
    video_second_per_grid: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in moved.items()})

    @property
    def attention_mask(self) -> Tensor:
        """The 2-D 0/1 mask of real tokens."""
        return (self.roles != Role.PAD).long()

    @property
    def visual_slots(self) -> Tensor:
        """``(batch, len)`` flags of image and video token positions."""
        return self.mm_token_type_ids != Modality.TEXT

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])
