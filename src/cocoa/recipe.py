"""The YAML recipe of one training stage, validated by a pydantic schema.

Unknown keys and bad values are errors that name the field. ``--set a.b=value`` overrides
are applied to the raw mapping before validation, so they are validated the same way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cocoa.core.protocol import DEFAULT_PROTOCOL, PROTOCOLS, ImagePolicy, Protocol
from cocoa.errors import ConfigError
from cocoa.schema import Strict
from cocoa.stages import STAGES
from cocoa.stages.bridge import BridgeConfig
from cocoa.stages.contrastive import ContrastiveConfig
from cocoa.stages.warmup import WarmupConfig
from cocoa.train.config import TrainConfig


class ModelConfig(Strict):
    """Where the backbone comes from: a checkpoint folder, or a named tiny config."""

    path: str | None = None
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


class ImageConfig(Strict):
    """An image policy (:class:`~cocoa.core.protocol.ImagePolicy`): squash side, then pixel bounds."""

    square: int | None = Field(None, gt=0, description="squash every image to this square side first")
    min_pixels: int | None = Field(None, gt=0, description="default: the image processor's own")
    max_pixels: int | None = Field(None, gt=0, description="default: the image processor's own")
    enlarge: tuple[int, int] | None = Field(None, description="[side, to]: an image with a side under side pixels "
                                                              "is squashed to to x to first")


class ProtocolConfig(Strict):
    """The recipe's ``protocol`` section: the embedding protocol the stage builds its sequences with.

    ``preset`` names one of :data:`~cocoa.core.protocol.PROTOCOLS`; ``image`` replaces its image
    policy for this stage's training data; ``append`` (a token string, or null for none) replaces its
    appended token when given. The saved model records the result.
    """

    preset: str = DEFAULT_PROTOCOL
    image: ImageConfig | None = None
    append: str | None = Field(None, description="left out: the preset's token; null: append nothing")

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
        if "append" in self.model_fields_set:
            protocol = protocol.replace(append=self.append)
        return protocol


class Recipe(Strict):
    """One stage of training, read top to bottom: model, data, objective, optimisation."""

    stage: str = Field(description="one of the registered stages: " + ", ".join(STAGES))
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    protocol: ProtocolConfig = ProtocolConfig()
    warmup: WarmupConfig = WarmupConfig()
    bridge: BridgeConfig = BridgeConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()

    @field_validator("stage")
    @classmethod
    def _registered(cls, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
        return stage


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested mapping."""
    out = yaml.safe_load(yaml.safe_dump(raw))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return out


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a mapping; errors name every bad field."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"invalid recipe {source}:\n" + "\n".join(lines)) from None


BUILTIN_PREFIX = "builtin:"


def builtin(name: str) -> Path:
    """Path of a recipe or pipeline shipped with the package, e.g. ``tiny/bridge`` or ``pipelines/mini``."""
    path = Path(str(resources.files("cocoa") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"no built-in recipe {name!r} ({path})")
    return path


def resolve(path: str | Path, base: Path | None = None) -> Path:
    """``builtin:<name>`` as the shipped file, else ``path`` (relative to ``base`` when given)."""
    text = str(path)
    if text.startswith(BUILTIN_PREFIX):
        return builtin(text[len(BUILTIN_PREFIX):])
    return base / text if base is not None else Path(text)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a YAML recipe (a file, or ``builtin:<name>``)."""
    path = resolve(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping")
    return parse_recipe(apply_overrides(raw, overrides or []), str(path))
