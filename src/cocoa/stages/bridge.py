"""Stage 2: EOS-bridged reconstruction.

``[query] <EOS> [target]`` under the ``eos_bridge`` mask: the target block sees the query
only through the EOS, and a share of its tokens is masked and reconstructed, so the EOS
state must carry what the target needs from the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field
from torch import nn

from cocoa.core.batch import Batch
from cocoa.core.schema import Strict
from cocoa.core.tokens import Role
from cocoa.data.collate import Encoded, Preprocessor, collate
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, TrainPair
from cocoa.data.masking import mask_share
from cocoa.data.train_pairs import read_train_pairs
from cocoa.model.backbone import Backbone
from cocoa.stages.base import Stage, StageParts, corpus_path, image_root
from cocoa.stages.language import LanguageObjective
from cocoa.stages.sections import RecipeBase
from cocoa.train.steps import LossStep


class BridgeConfig(Strict):
    """The recipe's ``bridge`` section: reconstruct the target through the EOS."""

    target_mask_ratio: float = Field(0.7, gt=0, le=1)
    eos_sees_target: bool = True
    targets: Literal["clean", "raw"] = Field(
        "clean", description="clean: the positive's text without the image placeholder and outer whitespace, "
                             "rows left empty dropped; raw: pos_text tokenised as it is, placeholder characters "
                             "and newlines included (the release), rows with no text dropped")


class BridgeBuilder:
    """``[query] <EOS> [target]`` with a share of target tokens masked."""

    def __init__(self, pre: Preprocessor, target_ratio: float, raw_targets: bool = False) -> None:
        self.pre, self.target_ratio, self.raw_targets = pre, target_ratio, raw_targets

    def sequence(self, pair: TrainPair, rng: np.random.Generator) -> Encoded:
        enc = self.pre.item(pair.query, Role.QUERY)
        enc.add([self.pre.bridge_id], Role.EMBEDDING, protected=True)
        if self.raw_targets:
            target = Encoded()
            target.add(self.pre.text_ids(pair.positive.text), Role.TARGET)
        else:
            target = self.pre.item(pair.positive, Role.TARGET)
        start = len(enc)
        enc.extend(target)
        enc = self.pre.fit(enc)
        positions = [i for i in range(start, len(enc)) if enc.roles[i] == Role.TARGET and not enc.protected[i]]
        mask_share(enc, positions, self.target_ratio, rng, self.pre.ids.mask)
        return enc

    def __call__(self, examples: Sequence[TrainPair], rng: np.random.Generator) -> Batch:
        return collate([self.sequence(ex, rng) for ex in examples], self.pre.ids.pad)


def bridge_pair(pair: TrainPair, raw: bool = False) -> TrainPair:
    """Stage 2 reconstructs the positive's text only (as the release does), never its image.

    ``raw`` keeps the text as it is (the release tokenises ``pos_text`` with its placeholder);
    otherwise the placeholder and the outer whitespace are removed.
    """
    text = pair.positive.text if raw else pair.positive.text.replace(IMAGE_PLACEHOLDER, "").strip()
    return TrainPair(pair.query, Item(text), (), pair.subset)


class BridgeStage(Stage):
    name = "bridge"
    number = 2
    default_corpus = "pretrain/stage2.parquet"
    masks_tokens = True
    section, config = "bridge", BridgeConfig

    def examples(self, recipe: RecipeBase) -> list[TrainPair]:
        pairs = read_train_pairs(corpus_path(recipe, self.default_corpus), None, image_root(recipe),
                                 cap=recipe.data.cap, seed=recipe.train.seed, skip_bad=recipe.data.skip_bad)
        raw = self.settings(recipe).targets == "raw"
        return [bridge_pair(p, raw) for p in pairs
                if (p.positive.text if raw else p.positive.text.replace(IMAGE_PLACEHOLDER, "").strip())]

    def parts(self, recipe: RecipeBase, backbone: Backbone, model: nn.Module) -> StageParts:
        config = self.settings(recipe)
        builder = BridgeBuilder(self.preprocessor(recipe, backbone), config.target_mask_ratio,
                                config.targets == "raw")
        return StageParts(LanguageObjective(model, "eos_bridge", eos_sees_target=config.eos_sees_target,
                                            packing=self.packing(recipe)), builder,
                          LossStep())
