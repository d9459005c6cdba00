"""Masked or next-token prediction under an attention mode: the objective of stage 0 (causal) and stage 2 (EOS bridge)."""

from __future__ import annotations

from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.losses.language import shifted_cross_entropy, token_accuracy
from cocoa.model.attention import AttentionMode
from cocoa.model.forward import lm_head
from cocoa.model.packing import packed_hidden_states


class LanguageObjective(nn.Module):
    """Shifted cross-entropy on the labelled positions (position ``i-1`` predicts token ``i``) under ``mode``.

    Stage 0 predicts every caption token causally; stage 2 predicts the masked target tokens under
    the ``eos_bridge`` mask (``eos_sees_target``: whether the EOS also sees the target block).
    ``pack_tokens`` packs each batch into rows of that many tokens (:mod:`cocoa.model.packing`).
    """

    def __init__(self, model: nn.Module, mode: AttentionMode, *, eos_sees_target: bool = True,
                 pack_tokens: int | None = None) -> None:
        super().__init__()
        self.model, self.mode, self.eos_sees_target, self.pack_tokens = model, mode, eos_sees_target, pack_tokens

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        hidden = packed_hidden_states(self.model, batch, self.mode, self.pack_tokens,
                                      eos_sees_target=self.eos_sees_target)
        head = lm_head(self.model)
        return {"loss": shifted_cross_entropy(hidden, batch.labels, head),
                "accuracy": token_accuracy(hidden, batch.labels, head)}
