"""Masked auto-encoding of image patches (stage 1), in the style of MoCa.

A share of the merged image tokens is replaced by one learned mask vector before the
language model; a light decoder (one bidirectional transformer layer over each image's
tokens plus a linear head) regresses the per-patch normalised pixels of the masked merged
patches from the language model's final states. The loss is MSE on masked patches only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocoa.core.autograd import zero_through


def merged_patch_targets(pixel_values: Tensor, merge_size: int) -> Tensor:
    """``(n_merged, merge**2 * patch_dim)`` pixels, each row normalised to zero mean, unit variance.

    The Qwen2-VL processor lays patches out so that each merge window is
    ``merge_size ** 2`` consecutive rows.
    """
    groups = pixel_values.reshape(-1, merge_size ** 2 * pixel_values.shape[-1]).float()
    mean = groups.mean(-1, keepdim=True)
    var = groups.var(-1, keepdim=True, unbiased=False)
    return (groups - mean) / (var + 1e-6).sqrt()


class MAEHead(nn.Module):
    """Mask vector, a one-layer bidirectional decoder and a linear head to pixel space."""

    def __init__(self, hidden: int, pixel_dim: int, heads: int = 4) -> None:
        super().__init__()
        heads = heads if hidden % heads == 0 else 1
        self.mask_embedding = nn.Parameter(torch.zeros(hidden))
        nn.init.normal_(self.mask_embedding, std=0.02)
        self.decoder = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0,
                                                  batch_first=True, norm_first=True)
        self.head = nn.Linear(hidden, pixel_dim)

    def mask(self, features: Tensor, masked: Tensor) -> Tensor:
        """Replace the rows of ``features`` flagged in ``masked`` by the mask vector."""
        return torch.where(masked[:, None], self.mask_embedding.to(features.dtype), features)

    def loss(self, image_states: Tensor, tokens_per_image: list[int], targets: Tensor, masked: Tensor) -> Tensor:
        """MSE between decoded pixels and ``targets`` over masked merged patches only."""
        if not bool(masked.any()):
            return zero_through(image_states)
        longest = max(tokens_per_image)
        pieces = torch.split(image_states, tokens_per_image)
        padded = torch.zeros(len(pieces), longest, image_states.shape[-1], dtype=image_states.dtype,
                             device=image_states.device)
        pad = torch.ones(len(pieces), longest, dtype=torch.bool, device=image_states.device)
        for i, piece in enumerate(pieces):
            padded[i, :len(piece)] = piece
            pad[i, :len(piece)] = False
        decoded = self.decoder(padded.float(), src_key_padding_mask=pad)[~pad]
        pred = self.head(decoded)
        return F.mse_loss(pred[masked], targets[masked])
