"""Stage 0 (tiny models only): causal captioning, standing in for a pretrained MLLM.

Sequences are ``<image> caption <EOS>`` with the causal LM loss on the caption and the EOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from cocoa.core.batch import Batch
from cocoa.core.tokens import IGNORE_INDEX, Role
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Encoded, Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone
from cocoa.stages.base import CaptionStage, StageParts
from cocoa.stages.language import LanguageObjective
from cocoa.stages.sections import RecipeBase
from cocoa.train.steps import LossStep


class PretrainBuilder:
    """``<image> caption <EOS>``, labels on the caption tokens and the EOS."""

    def __init__(self, pre: Preprocessor) -> None:
        self.pre = pre

    def sequence(self, ex: CaptionPair) -> Encoded:
        enc = self.pre.fit(self.pre.item(Item(ex.caption, ex.media.image, ex.media.video)), reserve=1)
        enc.add([self.pre.ids.eos], Role.QUERY, protected=True)
        enc.labels = [i if not p else IGNORE_INDEX for i, p in zip(enc.ids, enc.protected, strict=True)]
        enc.labels[-1] = self.pre.ids.eos
        return enc

    def __call__(self, examples: Sequence[CaptionPair], rng: np.random.Generator) -> Batch:
        return collate([self.sequence(ex) for ex in examples], self.pre.ids.pad)


class PretrainStage(CaptionStage):
    name = "pretrain"
    number = 0

    def parts(self, recipe: RecipeBase, backbone: Backbone, model: nn.Module) -> StageParts:
        return StageParts(LanguageObjective(model, "causal", packing=self.packing(recipe)), PretrainBuilder(self.preprocessor(recipe, backbone)),
                          LossStep())
