"""One forward path for every stage: image features, a 4-D attention mask, M-RoPE positions.

The upstream modules are called as they are: the vision tower through
``get_image_features``, the language model with an additive 4-D mask from
:mod:`cocoa.attention` and explicitly computed 3-D M-RoPE position ids (required when a 4-D
mask is used). An optional ``image_transform`` edits the merged image tokens before they
enter the language model (stage 1's masked auto-encoding uses it). A vision tower sharded
by FSDP runs on every forward, on a blank image when the batch has none, because every
rank must gather and reduce the same shards in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule

from cocoa.attention import AttentionMode, additive_mask
from cocoa.data.collate import Batch

ImageTransform = Callable[[Tensor], Tensor]


def vl_model(model: nn.Module) -> nn.Module:
    """The ``Qwen2VLModel`` / ``Qwen2_5_VLModel`` inside a generation wrapper (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def lm_head(model: nn.Module) -> nn.Module:
    """The output projection of a generation wrapper (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.lm_head


def image_features(model: nn.Module, batch: Batch) -> Tensor | None:
    """Merged image tokens ``(n_image_tokens, hidden)`` in sequence order, or ``None``."""
    if batch.pixel_values is None:
        return None
    vl = vl_model(model)
    out = vl.get_image_features(batch.pixel_values, batch.image_grid_thw, return_dict=True)
    return torch.cat(out.pooler_output, dim=0)


def blank_image_features(model: nn.Module, device: torch.device) -> Tensor:
    """The vision tower's output for one all-zero merge window (one merged token)."""
    vl = vl_model(model)
    cfg = vl.visual.config
    merge = cfg.spatial_merge_size
    pixels = torch.zeros(merge * merge, cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2,
                         device=device)
    grid = torch.tensor([[1, merge, merge]], device=device)
    return torch.cat(vl.get_image_features(pixels, grid, return_dict=True).pooler_output, dim=0)


def vision_is_sharded(model: nn.Module) -> bool:
    return any(isinstance(block, FSDPModule) for block in vl_model(model).visual.blocks)


def position_ids(model: nn.Module, batch: Batch) -> Tensor:
    """3-D M-RoPE positions ``(3, batch, len)``; padding ignored, images on their 2-D grid."""
    return vl_model(model).get_rope_index(
        batch.input_ids, mm_token_type_ids=batch.mm_token_type_ids, image_grid_thw=batch.image_grid_thw,
        attention_mask=batch.attention_mask)[0]


def hidden_states(model: nn.Module, batch: Batch, mode: AttentionMode, *, eos_sees_target: bool = True,
                  image_transform: ImageTransform | None = None) -> Tensor:
    """Final post-norm hidden states ``(batch, len, hidden)`` under an attention mode."""
    vl = vl_model(model)
    embeds = vl.get_input_embeddings()(batch.input_ids)
    feats = image_features(model, batch)
    if feats is not None:
        if image_transform is not None:
            feats = image_transform(feats)
        slots = (batch.mm_token_type_ids == 1).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(slots, feats.to(embeds.dtype))
    elif vision_is_sharded(model):  # zero-weighted, so every vision weight gets a (zero) gradient
        embeds = embeds + blank_image_features(model, embeds.device).sum().to(embeds.dtype) * 0.0
    mask = additive_mask(batch.roles, mode, embeds.dtype, eos_sees_target=eos_sees_target)
    out = vl.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids(model, batch),
                            use_cache=False)
    return out.last_hidden_state


def pool(hidden: Tensor, batch: Batch) -> Tensor:
    """L2-normalised hidden state at each row's EOS (``batch.pool_index``)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return F.normalize(hidden[rows, batch.pool_index].float(), dim=-1)


def embed(model: nn.Module, batch: Batch, mode: AttentionMode = "bidirectional") -> Tensor:
    """Embeddings ``(batch, hidden)``: the normalised final state at the appended EOS."""
    return pool(hidden_states(model, batch, mode), batch)
