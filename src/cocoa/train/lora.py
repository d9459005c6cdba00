"""LoRA / DoRA adapters on the language model (and optionally the vision tower), and merging."""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn

from cocoa.train.config import LoraConfig


def target_regex(config: LoraConfig) -> str:
    """A regex over module names: the LLM's projections, plus the vision blocks' if asked."""
    text = rf".*language_model.*\.({'|'.join(config.targets)})"
    if not config.vision:
        return text
    return rf"({text})|(.*visual\.blocks.*\.({'|'.join(config.vision_targets)}))"


def add_lora(model: nn.Module, config: LoraConfig, trainable_tokens: Sequence[int] = ()) -> PeftModel:
    """Wrap ``model`` with trainable adapters; every base weight is frozen.

    ``trainable_tokens``: input-embedding rows trained as they are (peft's trainable tokens), such
    as a mask token the frozen embedding matrix would otherwise leave at its initial value.
    """
    peft_config = PeftLoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 use_dora=config.dora, target_modules=target_regex(config),
                                 init_lora_weights="gaussian" if config.init == "gaussian" else True,
                                 trainable_token_indices=sorted(set(trainable_tokens)) or None)
    return get_peft_model(model, peft_config)


def merged(model: nn.Module) -> nn.Module:
    """The plain upstream model with adapters merged into its weights (no-op without adapters)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
