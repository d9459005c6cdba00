"""Run one stage from a recipe, top to bottom: backbone, data, objective, trainer, checkpoint.

``cocoa train RECIPE.yaml`` calls :func:`train_stage`; launch it the same way on one CPU
process or with ``torchrun --nproc_per_node N`` on N GPUs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml
from torch import nn

from cocoa.backbone import Backbone
from cocoa.data.collate import Preprocessor
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, TrainPair
from cocoa.data.mmeb import read_caption_corpus, read_train_pairs
from cocoa.data.stages import (
    BatchPlan,
    BridgeBuilder,
    ContrastiveBuilder,
    PretrainBuilder,
    StepDataset,
    WarmupBuilder,
)
from cocoa.encoder import EmbeddingSpec
from cocoa.errors import ConfigError
from cocoa.integrations.st_layout import write_sentence_transformers_files
from cocoa.matryoshka import validate_dims
from cocoa.recipes import Recipe
from cocoa.train import checkpoint, distributed, fsdp
from cocoa.train.lora import add_lora, merged
from cocoa.train.objectives import BridgeObjective, EmbeddingObjective, PretrainObjective, WarmupObjective
from cocoa.train.trainer import FitResult, Trainer

TEXT_COLUMNS = ("caption", "qry", "pos_text", "neg_text")
DEFAULT_CORPUS = {"pretrain": "pretrain/stage1.parquet", "warmup": "pretrain/stage1.parquet",
                  "bridge": "pretrain/stage2.parquet"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def image_root(recipe: Recipe) -> Path:
    return Path(recipe.data.images) if recipe.data.images else Path(recipe.data.root) / "images"


def tokenizer_texts(root: Path) -> list[str]:
    """All training texts under a data folder (train splits and pre-training corpora)."""
    texts: list[str] = []
    for file in sorted(p for sub in ("train", "pretrain") for p in (root / sub).glob("*.parquet")):
        table = pq.read_table(file)
        for column in TEXT_COLUMNS:
            if column in table.column_names:
                texts.extend(str(t).replace(IMAGE_PLACEHOLDER, " ") for t in table.column(column).to_pylist() if t)
    if not texts:
        raise ConfigError(f"no training texts under {root}/train or {root}/pretrain to learn a tokenizer from")
    return texts


def build_backbone(recipe: Recipe) -> Backbone:
    """Load the checkpoint, or build the tiny preset (its tokenizer learned from the training texts)."""
    m = recipe.model
    if m.path is not None:
        return Backbone.load(m.path, attn_implementation=m.attn_implementation, min_pixels=m.min_pixels,
                             max_pixels=m.max_pixels)
    corpus = tokenizer_texts(Path(recipe.data.root)) if m.tokenizer_corpus else None
    return Backbone.tiny(m.tiny or "tiny", m.family, corpus=corpus, seed=recipe.train.seed,
                         attn_implementation=m.attn_implementation)


def corpus_path(recipe: Recipe) -> Path:
    if recipe.data.corpus:
        return Path(recipe.data.corpus)
    return Path(recipe.data.root) / DEFAULT_CORPUS[recipe.stage]


def load_examples(recipe: Recipe) -> list[Any]:
    """The stage's examples: captions (stages 0-1), query/target pairs (stage 2), MMEB-train (stage 3)."""
    data, images = recipe.data, image_root(recipe)
    if recipe.stage in ("pretrain", "warmup"):
        return list(read_caption_corpus(corpus_path(recipe), images, skip_bad=data.skip_bad))
    if recipe.stage == "bridge":
        pairs = read_train_pairs(corpus_path(recipe), None, images, cap=data.cap, seed=recipe.train.seed,
                                 skip_bad=data.skip_bad)
        return [bridge_pair(p) for p in pairs if p.positive.text.replace(IMAGE_PLACEHOLDER, "").strip()]
    return list(read_train_pairs(Path(data.root), data.subsets, images, split=data.split, cap=data.cap,
                                 seed=recipe.train.seed, skip_bad=data.skip_bad))


def bridge_pair(pair: TrainPair) -> TrainPair:
    """Stage 2 reconstructs the positive's text only (as the release does), never its image."""
    text = pair.positive.text.replace(IMAGE_PLACEHOLDER, "").strip()
    return TrainPair(pair.query, Item(text), None, pair.subset)


def build_objective(recipe: Recipe, backbone: Backbone, model: nn.Module) -> tuple[nn.Module, Any]:
    """The stage's objective module and its batch builder."""
    pre = Preprocessor(backbone, recipe.data.max_len)
    if recipe.stage == "pretrain":
        return PretrainObjective(model), PretrainBuilder(pre)
    if recipe.stage == "warmup":
        w = recipe.warmup
        proc = backbone.image_processor
        pixel_dim = 3 * proc.temporal_patch_size * proc.patch_size ** 2
        return (WarmupObjective(model, w, pixel_dim, backbone.merge_size),
                WarmupBuilder(pre, w.text_mask_ratio, w.image_mask_ratio))
    if recipe.stage == "bridge":
        return BridgeObjective(model, recipe.bridge), BridgeBuilder(pre, recipe.bridge.target_mask_ratio)
    c = recipe.contrastive
    if c.matryoshka is not None:
        validate_dims(c.matryoshka.dims, "contrastive.matryoshka.dims", backbone.hidden_size)
    return EmbeddingObjective(model, c), ContrastiveBuilder(pre, c.hard_negatives, c.gradcache_chunk)


def embedding_spec(recipe: Recipe) -> EmbeddingSpec:
    """How the stage's saved model embeds: stage 3's attention and Matryoshka widths, else bidirectional."""
    if recipe.stage != "contrastive":
        return EmbeddingSpec(max_len=recipe.data.max_len)
    c = recipe.contrastive
    return EmbeddingSpec(attention=c.attention, max_len=recipe.data.max_len,
                         matryoshka_dims=tuple(c.matryoshka.dims) if c.matryoshka is not None else None)


def write_model(folder: Path, backbone: Backbone, model: nn.Module, spec: EmbeddingSpec,
                is_main: bool = True) -> None:
    """Save the merged model as a plain checkpoint folder, atomically, from the main process.

    Every process calls it: a model sharded by FSDP is gathered to the main process first.
    """
    state = checkpoint.full_state_dict(model) if fsdp.is_sharded(model) else None
    if not is_main:
        return
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    Backbone(model=merged(model), tokenizer=backbone.tokenizer, image_processor=backbone.image_processor,
             ids=backbone.ids).save(tmp, state_dict=state)
    spec.save(tmp)
    write_sentence_transformers_files(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def train_stage(recipe: Recipe, *, resume: bool = False) -> FitResult:
    """Train one stage; writes ``<output_dir>/model`` (merged), metrics and checkpoints."""
    info = distributed.setup(group=recipe.train.parallel == "fsdp")
    out = Path(recipe.train.output_dir)
    seed_everything(recipe.train.seed)
    backbone = build_backbone(recipe)
    examples = load_examples(recipe)
    plan = BatchPlan(len(examples), recipe.train.batch_size, info.world_size, recipe.train.seed)
    if plan.steps_per_epoch == 0:
        raise ConfigError(f"{len(examples)} examples cannot fill one global batch of {plan.global_batch}")
    total = plan.total_steps(recipe.train.max_steps, recipe.train.epochs)

    model = backbone.model.float()  # the trainer moves (or shards) it onto the device
    model.config.text_config.use_cache = False
    if recipe.train.gradient_checkpointing:
        model.activation_checkpointing_enable()
        model.enable_input_require_grads()
    if recipe.train.lora is not None:
        model = add_lora(model, recipe.train.lora)
    objective, builder = build_objective(recipe, backbone, model)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    trainer = Trainer(objective, StepDataset(examples, builder, plan, info.rank), total, recipe.train, info, out,
                      contrastive=recipe.contrastive if recipe.stage == "contrastive" else None,
                      num_workers=recipe.data.num_workers)
    result = trainer.fit(resume=resume)
    write_model(out / "model", backbone, model, embedding_spec(recipe), info.is_main)
    if info.is_main:
        (out / "result.json").write_text(json.dumps({"stage": recipe.stage, "examples": len(examples),
                                                     **result.__dict__}, indent=2))
    del trainer, objective, model
    distributed.barrier()  # the model folder is complete before any process goes on (to the next stage)
    return result
