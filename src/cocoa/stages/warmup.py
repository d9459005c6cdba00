"""Stage 1: bidirectional warm-up by joint reconstruction.

``<image> caption`` under bidirectional attention, with masked caption tokens predicted
(MNTP) and masked image tokens auto-encoded back to their pixel patches (MAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from cocoa.core.autograd import zero_through
from cocoa.core.batch import Batch
from cocoa.core.schema import Strict
from cocoa.core.tokens import Modality
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Encoded, Preprocessor, collate
from cocoa.data.items import Item
from cocoa.data.masking import choose_masked, mask_share
from cocoa.losses.language import shifted_cross_entropy, token_accuracy
from cocoa.losses.mae import MAEHead, merged_patch_targets
from cocoa.model.backbone import Backbone
from cocoa.model.forward import lm_head
from cocoa.model.packing import PADDED, Packing
from cocoa.stages.base import CaptionStage, StageParts
from cocoa.stages.sections import RecipeBase
from cocoa.train.steps import LossStep


class WarmupConfig(Strict):
    """The recipe's ``warmup`` section: MNTP on caption tokens plus MAE on image patches."""

    text_mask_ratio: float = Field(0.2, gt=0, lt=1)
    image_mask_ratio: float = Field(0.5, ge=0, lt=1)
    mae_weight: float = Field(0.5, ge=0)


class WarmupBuilder:
    """``<image> caption`` with a share of caption tokens and of image tokens masked."""

    def __init__(self, pre: Preprocessor, text_ratio: float, image_ratio: float) -> None:
        self.pre, self.text_ratio, self.image_ratio = pre, text_ratio, image_ratio

    def sequence(self, ex: CaptionPair, rng: np.random.Generator) -> Encoded:
        enc = self.pre.fit(self.pre.item(Item(ex.caption, ex.media.image, ex.media.video)))
        text = [i for i, protected in enumerate(enc.protected) if not protected]
        mask_share(enc, text, self.text_ratio, rng, self.pre.ids.mask)
        return enc

    def __call__(self, examples: Sequence[CaptionPair], rng: np.random.Generator) -> Batch:
        seqs = [self.sequence(ex, rng) for ex in examples]
        batch = collate(seqs, self.pre.ids.pad)
        n_image_tokens = int((batch.mm_token_type_ids == Modality.IMAGE).sum())
        flags = np.zeros(n_image_tokens, dtype=bool)
        flags[choose_masked(n_image_tokens, self.image_ratio, rng)] = True
        batch.image_token_mask = torch.from_numpy(flags)
        return batch


class WarmupObjective(nn.Module):
    """Bidirectional MNTP on caption tokens + ``mae_weight`` * MAE on masked image tokens."""

    def __init__(self, model: nn.Module, config: WarmupConfig, pixel_dim: int, merge_size: int,
                 packing: Packing = PADDED) -> None:
        super().__init__()
        self.model, self.config, self.merge_size, self.packing = model, config, merge_size, packing
        hidden = model.config.text_config.hidden_size
        self.mae = MAEHead(hidden, pixel_dim * merge_size ** 2)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        masked = batch.image_token_mask
        transform = (lambda feats: feats.hide(masked, self.mae.mask)) if masked is not None else None
        hidden = self.packing.hidden_states(self.model, batch, "bidirectional", image_transform=transform)
        head = lm_head(self.model)
        mntp = shifted_cross_entropy(hidden, batch.labels, head)
        out = {"mntp": mntp, "accuracy": token_accuracy(hidden, batch.labels, head)}
        if batch.pixel_values is not None and masked is not None:
            image_states = hidden[batch.mm_token_type_ids == Modality.IMAGE]
            per_image = (batch.image_grid_thw.prod(-1) // self.merge_size ** 2).tolist()
            targets = merged_patch_targets(batch.pixel_values, self.merge_size)
            out["mae"] = self.mae.loss(image_states, per_image, targets, masked)
        else:
            out["mae"] = zero_through(self.mae.head.weight)
        out["loss"] = mntp + self.config.mae_weight * out["mae"]
        return out


class WarmupStage(CaptionStage):
    name = "warmup"
    number = 1
    masks_tokens = True
    section, config = "warmup", WarmupConfig

    def parts(self, recipe: RecipeBase, backbone: Backbone, model: nn.Module) -> StageParts:
        w = self.settings(recipe)
        proc = backbone.image_processor
        pixel_dim = 3 * proc.temporal_patch_size * proc.patch_size ** 2
        builder = WarmupBuilder(self.preprocessor(recipe, backbone), w.text_mask_ratio, w.image_mask_ratio)
        return StageParts(WarmupObjective(model, w, pixel_dim, backbone.merge_size, self.packing(recipe)), builder, LossStep())
