"""What a training stage is: its examples, batch builder, objective and step behind one interface.

A stage file (``pretrain``, ``warmup``, ``bridge``, ``contrastive``) holds everything of one
stage: its recipe section, how its batches are built, its objective module and which step
strategy trains it. :mod:`cocoa.stages` registers them in one table by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import Protocol
from cocoa.core.schema import Strict
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.captions import CaptionPair, read_caption_corpus
from cocoa.data.collate import Preprocessor
from cocoa.model.backbone import Backbone
from cocoa.model.packing import Packing
from cocoa.stages.sections import RecipeBase
from cocoa.train.batches import BatchBuilder, BatchPlan, StepBatches
from cocoa.train.steps import Step


@dataclass(frozen=True)
class StageParts:
    """What the trainer runs for a stage: the objective module, its batch builder and its step."""

    objective: nn.Module
    builder: BatchBuilder
    step: Step


class Stage(ABC):
    """One stage of the recipe."""

    name: ClassVar[str]
    #: The stage's number in the recipe: 1-3 are CoCoA's three stages, 0 the generative pre-training
    #: a randomly initialised model gets first; a pipeline writes the stage to ``<number>-<name>``.
    number: ClassVar[int]
    #: The stage's training file under the data folder, unless ``data.corpus`` names one.
    default_corpus: ClassVar[str | None] = None
    #: Whether the stage replaces tokens by the mask token (whose embedding row must then train).
    masks_tokens: ClassVar[bool] = False
    #: The recipe section of the stage's own settings and its config class (``None``: it has none).
    section: ClassVar[str | None] = None
    config: ClassVar[type[Strict] | None] = None

    def settings(self, recipe: RecipeBase) -> Any:
        """The stage's own section of ``recipe`` (an instance of :attr:`config`)."""
        if self.section is None:
            raise ValueError(f"stage {self.name!r} has no recipe section")
        return getattr(recipe, self.section)

    @abstractmethod
    def examples(self, recipe: RecipeBase) -> list[Any]:
        """The examples the stage trains on."""

    @abstractmethod
    def parts(self, recipe: RecipeBase, backbone: Backbone, model: nn.Module) -> StageParts:
        """The objective (over ``model``, possibly LoRA-wrapped), batch builder and step."""

    def protocol(self, recipe: RecipeBase) -> Protocol:
        """The protocol the stage builds its sequences with (the recipe's ``protocol`` section)."""
        return recipe.protocol.resolve()

    def batches(self, recipe: RecipeBase, examples: list[Any], world_size: int) -> StepBatches:
        """Which examples each rank trains on at each step: a fresh permutation an epoch."""
        if recipe.data.batches is not None:
            raise ConfigError(f"data.batches (a mined batch plan) is read by the contrastive stage only, "
                              f"not by {self.name}")
        return BatchPlan(len(examples), recipe.train.batch_size, world_size, recipe.train.seed)

    def packing(self, recipe: RecipeBase) -> Packing:
        """How the stage's objective lays out its batches: the recipe's ``train.pack_tokens``."""
        return Packing(recipe.train.pack_tokens)

    def preprocessor(self, recipe: RecipeBase, backbone: Backbone) -> Preprocessor:
        """The stage's preprocessor: its protocol and the recipe's ``data.max_len``."""
        return Preprocessor(backbone, recipe.data.max_len, self.protocol(recipe))

    def embedding_spec(self, recipe: RecipeBase) -> EmbeddingSpec:
        """How the stage's saved model embeds: the stage's protocol, recorded in ``cocoa.json``."""
        return EmbeddingSpec(self.protocol(recipe), recipe.data.max_len)


def image_root(recipe: RecipeBase) -> Path:
    return Path(recipe.data.images) if recipe.data.images else Path(recipe.data.root) / "images"


def corpus_path(recipe: RecipeBase, default: str | None) -> Path:
    """``data.corpus``, else the stage's default file under ``data.root``."""
    if recipe.data.corpus:
        return Path(recipe.data.corpus)
    if default is None:
        raise ValueError(f"stage {recipe.stage!r} reads no corpus file")
    return Path(recipe.data.root) / default


class CaptionStage(Stage):
    """A stage that trains on the image-caption corpus (the reconstruction stages 0 and 1)."""

    default_corpus = "pretrain/stage1.parquet"

    def examples(self, recipe: RecipeBase) -> list[CaptionPair]:
        return list(read_caption_corpus(corpus_path(recipe, self.default_corpus), image_root(recipe),
                                        skip_bad=recipe.data.skip_bad))
