"""Run one stage from a recipe, top to bottom: backbone, data, objective, trainer, checkpoint.

``cocoa train RECIPE.yaml`` calls :func:`train_stage`; launch it the same way on one CPU
process or with ``torchrun --nproc_per_node N`` on N GPUs.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml
from torch import nn

from cocoa.core import distributed
from cocoa.core.errors import ConfigError
from cocoa.core.files import atomic_folder, write_json
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.items import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from cocoa.integrations.st_layout import write_sentence_transformers_files
from cocoa.model.backbone import Backbone
from cocoa.pipeline.model_card import write_model_card
from cocoa.recipe import Recipe
from cocoa.stages import get_stage
from cocoa.train import checkpoint, fsdp
from cocoa.train.batches import StepDataset
from cocoa.train.lora import add_lora, merged
from cocoa.train.trainer import FitResult, Trainer, autocast_dtype

TEXT_COLUMNS = ("caption", "qry", "pos_text", "neg_text")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenizer_texts(root: Path) -> list[str]:
    """All training texts under a data folder (train splits and pre-training corpora)."""
    texts: list[str] = []
    for file in sorted(p for sub in ("train", "pretrain") for p in (root / sub).glob("*.parquet")):
        table = pq.read_table(file)
        for column in TEXT_COLUMNS:
            if column in table.column_names:
                texts.extend(str(t).replace(IMAGE_PLACEHOLDER, " ").replace(VIDEO_PLACEHOLDER, " ")
                                 for t in table.column(column).to_pylist() if t)
    if not texts:
        raise ConfigError(f"no training texts under {root}/train or {root}/pretrain to learn a tokenizer from")
    return texts


def frozen_dtype(recipe: Recipe, device: torch.device) -> torch.dtype:
    """The dtype the base weights load in: the autocast dtype (bf16) when adapters train on frozen
    weights, as the authors load them; float32 otherwise (weights that train keep fp32 masters)."""
    amp = autocast_dtype(recipe.train, device)
    return amp if recipe.train.lora is not None and amp is not None else torch.float32


def build_backbone(recipe: Recipe, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load the checkpoint in ``dtype``, or build the tiny preset (its tokenizer learned from the
    training texts) and cast it."""
    m = recipe.model
    if m.path is not None:
        return Backbone.load(m.path, dtype=dtype, attn_implementation=m.attn_implementation, min_pixels=m.min_pixels,
                             max_pixels=m.max_pixels)
    corpus = tokenizer_texts(Path(recipe.data.root)) if m.tokenizer_corpus else None
    backbone = Backbone.tiny(m.tiny or "tiny", m.family, corpus=corpus, seed=recipe.train.seed,
                             attn_implementation=m.attn_implementation)
    backbone.model.to(dtype)
    return backbone


def prepare_model(recipe: Recipe, backbone: Backbone, masks_tokens: bool) -> nn.Module:
    """The model as it trains: checkpointing if asked, and adapters on frozen weights when the recipe
    has LoRA; every parameter that trains is float32, whatever the frozen weights' dtype."""
    model = backbone.model  # the trainer moves (or shards) it onto the device
    model.config.text_config.use_cache = False
    if recipe.train.gradient_checkpointing:
        model.activation_checkpointing_enable()
        model.enable_input_require_grads()
    lora = recipe.train.lora
    if lora is not None:
        model = add_lora(model, lora, [backbone.ids.mask] if lora.train_mask_token and masks_tokens else [])
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model


def write_model(folder: Path, backbone: Backbone, model: nn.Module, spec: EmbeddingSpec,
                is_main: bool = True) -> None:
    """Save the merged model as a plain checkpoint folder, atomically, from the main process.

    Every process calls it: a model sharded by FSDP is gathered to the main process first.
    """
    state = checkpoint.full_state_dict(model) if fsdp.is_sharded(model) else None
    if not is_main:
        return
    with atomic_folder(folder) as tmp:
        Backbone(model=merged(model), tokenizer=backbone.tokenizer, image_processor=backbone.image_processor,
                 ids=backbone.ids).save(tmp, state_dict=state)
        spec.save(tmp)
        write_sentence_transformers_files(tmp)


def train_stage(recipe: Recipe, *, resume: bool = False) -> FitResult:
    """Train one stage; writes ``<output_dir>/model`` (merged), metrics and checkpoints."""
    info = distributed.setup(group=recipe.train.parallel == "fsdp")
    out = Path(recipe.train.output_dir)
    seed_everything(recipe.train.seed)
    backbone = build_backbone(recipe, frozen_dtype(recipe, info.device))
    stage = get_stage(recipe.stage)
    examples = stage.examples(recipe)
    plan = stage.batches(recipe, examples, info.world_size)
    if plan.steps_per_epoch == 0:
        raise ConfigError(f"{len(examples)} examples cannot fill one global batch of {plan.global_batch}")
    total = plan.total_steps(recipe.train.max_steps, recipe.train.epochs)
    spec = stage.embedding_spec(recipe)  # before training: it records the batch plan as the run reads it

    model = prepare_model(recipe, backbone, stage.masks_tokens)
    parts = stage.parts(recipe, backbone, model)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    trainer = Trainer(parts.objective, StepDataset(examples, parts.builder, plan, info.rank), parts.step, total,
                      recipe.train, info, out, num_workers=recipe.data.num_workers)
    result = trainer.fit(resume=resume)
    write_model(out / "model", backbone, model, spec, info.is_main)
    if info.is_main:
        write_model_card(out / "model", out.resolve().name, [recipe], spec)
        write_json(out / "result.json", {"stage": recipe.stage, "examples": len(examples), **result.__dict__})
    del trainer, parts, model
    distributed.barrier()  # the model folder is complete before any process goes on (to the next stage)
    return result
