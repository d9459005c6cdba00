"""The YAML recipe of one training stage, validated by a pydantic schema.

Unknown keys and bad values are errors that name the field. ``--set a.b=value`` overrides
are applied to the raw mapping before validation, so they are validated the same way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, create_model, field_validator

from cocoa.core.errors import ConfigError
from cocoa.stages import STAGES
from cocoa.stages.sections import RecipeBase


class _Recipe(RecipeBase):
    """The sections every stage reads, and the stage's name checked against the registry."""

    @field_validator("stage")
    @classmethod
    def _registered(cls, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
        return stage


def _stage_sections() -> dict[str, Any]:
    """Each registered stage's section, with its config class and defaults, by section name."""
    sections: dict[str, Any] = {}
    for stage in STAGES.values():
        if stage.section is None or stage.config is None:
            continue
        if stage.section in RecipeBase.model_fields or stage.section in sections:
            raise ConfigError(f"stage {stage.name!r}: section {stage.section!r} is already taken")
        sections[stage.section] = (stage.config, stage.config())
    return sections


#: One stage of training, read top to bottom: model, data, objective, optimisation; plus the
#: section of every registered stage (``warmup``, ``bridge``, ``contrastive``), from the registry.
Recipe = create_model("Recipe", __base__=_Recipe, __module__=__name__, **_stage_sections())


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


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> RecipeBase:
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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeBase:
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
