"""Masked or next-token prediction under an attention mode: the objective of stage 0 (causal) and stage 2 (EOS bridge)."""

from __future__ import annotations

from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.losses.language import shifted_cross_entropy, token_accuracy
from cocoa.model.attention import AttentionMode
from cocoa.model.forward import lm_head
from cocoa.model.packing import PADDED, Packing


class LanguageObjective(nn.Module):
    """Shifted cross-entropy on the labelled positions (position ``i-1`` predicts token ``i``) under ``mode``.

    Stage 0 predicts every caption token causally; stage 2 predicts the masked target tokens under
    the ``eos_bridge`` mask (``eos_sees_target``: whether the EOS also sees the target block).
    ``packing`` lays each batch out padded or in packed rows (:class:`~cocoa.model.packing.Packing`).
    """

    def __init__(self, model: nn.Module, mode: AttentionMode, *, eos_sees_target: bool = True,
                 packing: Packing = PADDED) -> None:
        super().__init__()
        self.model, self.mode, self.eos_sees_target, self.packing = model, mode, eos_sees_target, packing

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        hidden = self.packing.hidden_states(self.model, batch, self.mode, eos_sees_target=self.eos_sees_target)
        head = lm_head(self.model)
        return {"loss": shifted_cross_entropy(hidden, batch.labels, head),
                "accuracy": token_accuracy(hidden, batch.labels, head)}
