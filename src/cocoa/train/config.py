"""The recipe sections the trainer reads: optimisation and parallelism (``train``) and adapters (``train.lora``).

They live with the trainer, which depends on nothing above it; :mod:`cocoa.recipe` puts them
into a stage's recipe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cocoa.core.packing import PackTokens
from cocoa.core.schema import Strict

#: The release's LoRA targets that name vision-block modules: Qwen2-VL's qkv, fc1, fc2, Qwen2.5-VL's gated MLP
#: (gate/up/down_proj, which its list names for the language model) and Qwen3-VL's linear_fc1/2 (its MLP's
#: names for fc1/fc2). The attention output ``proj`` is not in the release's list.
VISION_TARGETS = ("qkv", "fc1", "fc2", "gate_proj", "up_proj", "down_proj", "linear_fc1", "linear_fc2")


class LoraConfig(Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(64, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    dora: bool = True
    init: Literal["gaussian", "default"] = "gaussian"
    vision: bool = True
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"])
    train_mask_token: bool = Field(
        True, description="stages that mask tokens (warmup, bridge): train the mask token's embedding row, which "
                          "the frozen embedding matrix would otherwise leave at its initial value")
    vision_targets: list[str] = Field(
        default_factory=lambda: list(VISION_TARGETS),
        description="vision-block projections adapted when vision is true: the release's list as it reaches "
                    "the vision tower; add 'proj' (attention output) to adapt that too")


class TrainConfig(Strict):
    output_dir: str
    batch_size: int = Field(8, gt=0, description="per process")
    max_steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    lora: LoraConfig | None = None
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: a full model per process (DDP under torchrun); fsdp: weights, gradients and "
                           "optimiser state sharded across processes (FSDP2), for full fine-tuning")
    gradient_checkpointing: bool = False
    pack_tokens: PackTokens = Field(
        None, description="tokens per packed row: each batch's sequences share rows (segment masks, positions "
                          "per sequence), so the language model computes no padding; null pads every sequence "
                          "to the batch's longest. Every stage's objective reads it (Stage.packing)")
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    log_every: int = Field(10, gt=0)
    save_every: int = Field(200, gt=0)
    keep_checkpoints: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of train.max_steps and train.epochs")
        return self

    @model_validator(mode="after")
    def _fsdp_full_fine_tuning(self) -> TrainConfig:
        if self.parallel == "fsdp" and self.lora is not None:
            raise ValueError("train.parallel=fsdp shards full fine-tuning only: set train.lora to null, "
                             "or keep train.parallel=ddp for LoRA")
        return self
