"""Each stage's objective as a module: ``forward(batch)`` returns the losses.

Wrapping (DDP) or sharding (FSDP) the objective, not just the backbone, keeps every
parameter a stage uses, LM head and MAE decoder included, inside one forward call.
"""

from __future__ import annotations

from torch import Tensor, nn

from cocoa.data.collate import Batch
from cocoa.model import hidden_states, lm_head, pool, vl_model
from cocoa.objectives.language import shifted_cross_entropy, token_accuracy
from cocoa.objectives.mae import MAEHead, merged_patch_targets
from cocoa.recipes import BridgeConfig, ContrastiveConfig, WarmupConfig


class PretrainObjective(nn.Module):
    """Stage 0 (tiny models only): causal language modelling of captions given the image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        hidden = hidden_states(self.model, batch, "causal")
        head = lm_head(self.model)
        return {"loss": shifted_cross_entropy(hidden, batch.labels, head),
                "accuracy": token_accuracy(hidden, batch.labels, head)}


class WarmupObjective(nn.Module):
    """Stage 1: bidirectional MNTP on caption tokens + w * MAE on masked image tokens."""

    def __init__(self, model: nn.Module, config: WarmupConfig, pixel_dim: int, merge_size: int) -> None:
        super().__init__()
        self.model, self.config, self.merge_size = model, config, merge_size
        hidden = model.config.text_config.hidden_size
        self.mae = MAEHead(hidden, pixel_dim * merge_size ** 2)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        masked = batch.image_token_mask
        transform = (lambda feats: feats.hide(masked, self.mae.mask)) if masked is not None else None
        hidden = hidden_states(self.model, batch, "bidirectional", image_transform=transform)
        head = lm_head(self.model)
        mntp = shifted_cross_entropy(hidden, batch.labels, head)
        out = {"mntp": mntp, "accuracy": token_accuracy(hidden, batch.labels, head)}
        if batch.pixel_values is not None and masked is not None:
            image_states = hidden[batch.mm_token_type_ids == 1]
            per_image = (batch.image_grid_thw.prod(-1) // self.merge_size ** 2).tolist()
            targets = merged_patch_targets(batch.pixel_values, self.merge_size)
            out["mae"] = self.mae.loss(image_states, per_image, targets, masked)
        else:
            out["mae"] = self.mae.head.weight.sum() * 0.0
        out["loss"] = mntp + self.config.mae_weight * out["mae"]
        return out


class BridgeObjective(nn.Module):
    """Stage 2: reconstruct masked target tokens through the EOS under the ``eos_bridge`` mask."""

    def __init__(self, model: nn.Module, config: BridgeConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        hidden = hidden_states(self.model, batch, "eos_bridge", eos_sees_target=self.config.eos_sees_target)
        head = lm_head(self.model)
        return {"loss": shifted_cross_entropy(hidden, batch.labels, head),
                "accuracy": token_accuracy(hidden, batch.labels, head)}


class EmbeddingObjective(nn.Module):
    """Stage 3's forward: L2-normalised EOS embeddings (the loss is computed across chunks and ranks)."""

    def __init__(self, model: nn.Module, config: ContrastiveConfig) -> None:
        super().__init__()
        self.model, self.config = model, config
        head = lm_head(model)
        if head.weight is not vl_model(model).get_input_embeddings().weight:
            head.requires_grad_(False)  # never used here: no optimiser state, no (FSDP zero) gradient for it

    def forward(self, batch: Batch) -> Tensor:
        return pool(hidden_states(self.model, batch, self.config.attention), batch)

