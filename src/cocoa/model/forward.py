"""One forward path for every stage: image features, a 4-D attention mask, M-RoPE positions.

The upstream modules are called as they are: the vision tower through
``get_image_features``, the language model with an additive 4-D mask from
:mod:`cocoa.model.attention` and explicitly computed 3-D M-RoPE position ids (required when a 4-D
mask is used). Qwen3-VL's DeepStack features (merged states of early vision layers, added to
the image positions after the first decoder layers) go in through the language model's own
``visual_pos_masks`` / ``deepstack_visual_embeds`` arguments; they only add to image
positions, so every attention mode holds unchanged. An optional ``image_transform`` edits
the image features before they enter the language model (stage 1's masked auto-encoding
uses it). Across ranks the vision tower runs on every forward, on a blank image when the batch
has none, because every rank must gather and reduce the same weights in the same order (FSDP,
DDP); that zero-weighted forward is the one mechanism for unused weights, so DDP runs without
``find_unused_parameters``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule

from cocoa.core.autograd import zero_through
from cocoa.core.batch import Batch
from cocoa.core.protocol import Pooling, Positions
from cocoa.core.tokens import Modality, Role
from cocoa.model.attention import AttentionMode, additive_mask


@dataclass(frozen=True)
class ImageFeatures:
    """Merged image tokens ``(n, hidden)`` in sequence order and, for Qwen3-VL, their DeepStack features.

    ``deepstack[i]`` (same shape as ``tokens``) is added to the image positions after decoder
    layer ``i``; Qwen2(.5)-VL have none.
    """

    tokens: Tensor
    deepstack: tuple[Tensor, ...] = ()

    def hide(self, flags: Tensor, mask: Callable[[Tensor, Tensor], Tensor]) -> ImageFeatures:
        """Flagged tokens replaced through ``mask(tokens, flags)``, their DeepStack features zeroed.

        Zeroing keeps a hidden token's own pixels from reaching the language model through
        DeepStack (what the other tokens learned from them inside the vision tower stays, as
        with Qwen2-VL's merger).
        """
        return ImageFeatures(mask(self.tokens, flags),
                             tuple(d.masked_fill(flags[:, None], 0.0) for d in self.deepstack))

    def split(self, n: int) -> tuple[ImageFeatures, ImageFeatures]:
        """The first ``n`` tokens and the rest."""
        return (ImageFeatures(self.tokens[:n], tuple(d[:n] for d in self.deepstack)),
                ImageFeatures(self.tokens[n:], tuple(d[n:] for d in self.deepstack)))

    @staticmethod
    def interleave(images: ImageFeatures, videos: ImageFeatures, is_image: Tensor) -> ImageFeatures:
        """Image and video features merged in sequence order; ``is_image`` flags each visual slot."""
        def merge(a: Tensor, b: Tensor) -> Tensor:
            out = a.new_empty(len(is_image), a.shape[-1])
            out[is_image] = a
            out[~is_image] = b.to(a.dtype)
            return out

        return ImageFeatures(merge(images.tokens, videos.tokens),
                             tuple(merge(a, b) for a, b in zip(images.deepstack, videos.deepstack, strict=True)))

    def total(self) -> Tensor:
        """Sum of every feature: a zero-weighted use of all vision weights."""
        return sum((d.sum() for d in self.deepstack), self.tokens.sum())


ImageTransform = Callable[[ImageFeatures], ImageFeatures]


def vl_model(model: nn.Module) -> nn.Module:
    """The ``Qwen2VLModel`` / ``Qwen2_5_VLModel`` / ``Qwen3VLModel`` inside a generation wrapper.

    PEFT-wrapped or not.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def lm_head(model: nn.Module) -> nn.Module:
    """The output projection of a generation wrapper (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.lm_head


def vision_features(model: nn.Module, pixel_values: Tensor, grid_thw: Tensor) -> ImageFeatures:
    """The vision tower's merged tokens (and DeepStack features) for ``pixel_values``."""
    out = vl_model(model).get_image_features(pixel_values, grid_thw, return_dict=True)
    deepstack = getattr(out, "deepstack_features", None) or ()
    return ImageFeatures(torch.cat(out.pooler_output, dim=0), tuple(torch.cat(d, dim=0) for d in deepstack))


def visual_features(model: nn.Module, batch: Batch, image_transform: ImageTransform | None = None
                    ) -> ImageFeatures | None:
    """The batch's image and video features in sequence order (``None`` without either), from one call of
    the vision tower (so ranks that shard it run it once per batch, whatever their mix);
    ``image_transform`` edits the image features only."""
    pixels = [p for p in (batch.pixel_values, batch.pixel_values_videos) if p is not None]
    if not pixels:
        return None
    grids = torch.cat([g for g in (batch.image_grid_thw, batch.video_grid_thw) if g is not None])
    feats = vision_features(model, torch.cat(pixels), grids)
    kinds = batch.mm_token_type_ids[batch.visual_slots]
    images, videos = feats.split(int((kinds == Modality.IMAGE).sum()))
    if image_transform is not None and batch.pixel_values is not None:
        images = image_transform(images)
    if batch.pixel_values_videos is None:
        return images
    return videos if batch.pixel_values is None else ImageFeatures.interleave(images, videos, kinds == Modality.IMAGE)


def blank_image_features(model: nn.Module, device: torch.device) -> ImageFeatures:
    """The vision tower's output for one all-zero merge window (one merged token)."""
    cfg = vl_model(model).visual.config
    merge = cfg.spatial_merge_size
    pixels = torch.zeros(merge * merge, cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2,
                         device=device)
    return vision_features(model, pixels, torch.tensor([[1, merge, merge]], device=device))


def vision_runs_on_every_batch(model: nn.Module) -> bool:
    """Whether the vision tower must run even on a batch without images: across ranks, when FSDP
    shards it (every rank gathers the same shards in the same order) or when gradients flow (DDP
    reduces every trainable weight on every step, so each needs a gradient, zero or not)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    return torch.is_grad_enabled() or any(isinstance(block, FSDPModule) for block in vl_model(model).visual.blocks)


def position_ids(model: nn.Module, batch: Batch, positions: Positions = "grid") -> Tensor:
    """3-D M-RoPE positions ``(3, batch, len)``, padding ignored.

    ``grid``: images on their 2-D grid (the model's own rope index). ``sequential``: one running
    position per real token on all three axes, image tokens included.
    """
    if positions == "sequential":
        mask = batch.attention_mask
        running = (mask.cumsum(1) - 1).clamp(min=0) * mask
        return running[None].expand(3, -1, -1).contiguous()
    videos: dict[str, Tensor | None] = {"video_grid_thw": batch.video_grid_thw}
    if model.config.model_type == "qwen2_5_vl" and batch.video_second_per_grid is not None:
        videos["second_per_grid_ts"] = batch.video_second_per_grid
    return vl_model(model).get_rope_index(
        batch.input_ids, mm_token_type_ids=batch.mm_token_type_ids, image_grid_thw=batch.image_grid_thw,
        attention_mask=batch.attention_mask, **videos)[0]


def input_embeddings(model: nn.Module, batch: Batch, image_transform: ImageTransform | None = None
                     ) -> tuple[Tensor, ImageFeatures | None]:
    """Token embeddings ``(batch, len, hidden)`` with the image and video features in their slots, and
    those features (in sequence order); ``image_transform`` edits the image features only."""
    embeds = vl_model(model).get_input_embeddings()(batch.input_ids)
    feats = visual_features(model, batch, image_transform)
    if feats is not None:
        slots = batch.visual_slots.unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(slots, feats.tokens.to(embeds.dtype))
    elif vision_runs_on_every_batch(model):  # zero-weighted: every vision weight gets a (zero) gradient
        embeds = embeds + zero_through(blank_image_features(model, embeds.device).total()).to(embeds.dtype)
    return embeds, feats


def deepstack_kwargs(feats: ImageFeatures | None, image_slots: Tensor) -> dict[str, object]:
    """The language model's DeepStack arguments for ``feats`` at ``image_slots`` (none without DeepStack)."""
    if feats is None or not feats.deepstack:
        return {}
    return {"visual_pos_masks": image_slots, "deepstack_visual_embeds": list(feats.deepstack)}


def hidden_states(model: nn.Module, batch: Batch, mode: AttentionMode, *, eos_sees_target: bool = True,
                  image_transform: ImageTransform | None = None, positions: Positions = "grid") -> Tensor:
    """Final post-norm hidden states ``(batch, len, hidden)`` under an attention mode."""
    embeds, feats = input_embeddings(model, batch, image_transform)
    mask = additive_mask(batch.roles, mode, embeds.dtype, eos_sees_target=eos_sees_target)
    out = vl_model(model).language_model(inputs_embeds=embeds, attention_mask=mask,
                                         position_ids=position_ids(model, batch, positions), use_cache=False,
                                         **deepstack_kwargs(feats, batch.visual_slots))
    return out.last_hidden_state


def pool(hidden: Tensor, batch: Batch, pooling: Pooling = "last") -> Tensor:
    """L2-normalised embeddings: the state at each row's ``pool_index`` (the embedding token, else the
    last real one) for ``last``; the mean over its real tokens for ``mean``."""
    if pooling == "mean":
        real = (batch.roles != Role.PAD).unsqueeze(-1).to(hidden.dtype)
        return F.normalize(((hidden * real).sum(1) / real.sum(1)).float(), dim=-1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return F.normalize(hidden[rows, batch.pool_index].float(), dim=-1)


def embed_padded(model: nn.Module, batch: Batch, mode: AttentionMode = "bidirectional", *, pooling: Pooling = "last",
                 positions: Positions = "grid") -> Tensor:
    """Embeddings ``(batch, hidden)``: the normalised pooled final state (:func:`pool`) of a padded batch.

    :meth:`cocoa.model.packing.Packing.embed` is the entry point that chooses this or packed rows.
    """
    return pool(hidden_states(model, batch, mode, positions=positions), batch, pooling)
