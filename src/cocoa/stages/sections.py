"""The recipe sections every stage reads (``model``, ``data``, ``protocol``, ``train``), and their base.

The assembled :class:`~cocoa.recipe.Recipe` adds each registered stage's own section (a stage's
``section`` and ``config``) on top of :class:`RecipeBase`; stages are handed a recipe as a
:class:`RecipeBase` and read their own section through :meth:`Stage.settings`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cocoa.core.protocol import DEFAULT_PROTOCOL, PROTOCOLS, ImagePolicy, Protocol
from cocoa.core.schema import Strict
from cocoa.train.config import TrainConfig


class ModelConfig(Strict):
    """Where the backbone comes from: a checkpoint folder or Hub id (``org/name[@revision]``), or a named
    tiny config."""

    path: str | None = Field(None, description="a checkpoint folder, or a Hub id org/name[@revision] "
                                               "(downloaded to the Hugging Face cache; HF_HUB_OFFLINE=1 reads it only)")
    tiny: Literal["tiny", "small"] | None = None
    family: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"] = "qwen2_vl"
    tokenizer_corpus: bool = Field(True, description="tiny only: learn the BPE vocabulary from the training texts")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    min_pixels: int | None = Field(None, gt=0)
    max_pixels: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.path is None) == (self.tiny is None):
            raise ValueError("set exactly one of model.path (a checkpoint folder) and model.tiny (a preset)")
        return self


class DataConfig(Strict):
    """Training data: a MiniMMEB folder or an MMEB-train folder, and the pre-training corpora."""

    root: str
    images: str | None = Field(None, description="image root; default: <root>/images")
    corpus: str | None = Field(None, description="pretrain/warmup: caption corpus; bridge: pairs file")
    subsets: list[str] | None = None
    split: Literal["original", "diverse_instruction"] = "original"
    cap: int | None = Field(100_000, gt=0)
    max_len: int = Field(4096, ge=8)
    skip_bad: bool = False
    num_workers: int = Field(0, ge=0)
    batches: str | None = Field(None, description="contrastive only: a batch plan folder from cocoa mine; each "
                                                  "global batch is whole communities of mutual hard negatives")


class ImageConfig(Strict):
    """An image policy (:class:`~cocoa.core.protocol.ImagePolicy`): squash side, then pixel bounds."""

    square: int | None = Field(None, gt=0, description="squash every image to this square side first")
    min_pixels: int | None = Field(None, gt=0, description="default: the image processor's own")
    max_pixels: int | None = Field(None, gt=0, description="default: the image processor's own")
    enlarge: tuple[int, int] | None = Field(None, description="[side, to]: an image with a side under side pixels "
                                                              "is squashed to to x to first")


class VideoConfig(Strict):
    """A video policy (:class:`~cocoa.core.protocol.VideoPolicy`); a field left out keeps the preset's."""

    frames: int | None = Field(None, gt=0, description="frames sampled per video")
    fps: float | None = Field(None, gt=0, description="frame rate assumed for frame folders and lists")
    min_pixels: int | None = Field(None, gt=0, description="per frame; default: the image policy's")
    max_pixels: int | None = Field(None, gt=0, description="per frame; default: the image policy's")
    max_tokens: int | None = Field(None, gt=0, description="the most merged tokens a video may take")


class ProtocolConfig(Strict):
    """The recipe's ``protocol`` section: the embedding protocol the stage builds its sequences with.

    ``preset`` names one of :data:`~cocoa.core.protocol.PROTOCOLS`; ``image`` replaces its image
    policy for this stage's training data and ``video`` the fields of its video policy it names;
    ``embedding_token`` (a token string, or null for none) replaces its embedding token when given. The saved
    model records the result.
    """

    preset: str = DEFAULT_PROTOCOL
    image: ImageConfig | None = None
    video: VideoConfig | None = None
    embedding_token: str | None = Field(None, description="left out: the preset's token; null: none")

    @field_validator("preset")
    @classmethod
    def _known(cls, preset: str) -> str:
        if preset not in PROTOCOLS:
            raise ValueError(f"unknown protocol {preset!r}; choose one of {', '.join(PROTOCOLS)}")
        return preset

    def resolve(self) -> Protocol:
        """The preset with this section's changes."""
        protocol = PROTOCOLS[self.preset]
        if self.image is not None:
            protocol = protocol.replace(image=ImagePolicy(**self.image.model_dump()))
        if self.video is not None:
            protocol = protocol.replace(video=dataclasses.replace(protocol.video, **self.video.model_dump(
                exclude_none=True)))
        if "embedding_token" in self.model_fields_set:
            protocol = protocol.replace(embedding_token=self.embedding_token)
        return protocol


class RecipeBase(Strict):
    """What every stage's recipe has: the stage's name, model, data, protocol and optimisation."""

    stage: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    protocol: ProtocolConfig = ProtocolConfig()
