"""Stage 3: contrastive learning (InfoNCE) on the L2-normalised EOS state.

Rows are ``query <EOS>`` and ``target <EOS>`` (and optional hard negatives, up to
``contrastive.negatives_per_query`` a row), collated in
chunks; the stage trains with GradCache (:class:`~cocoa.train.steps.GradCacheStep`) and an
InfoNCE over the whole global batch, optionally at several Matryoshka dims at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.core.errors import ConfigError
from cocoa.core.matryoshka import validate_dims
from cocoa.core.protocol import Protocol
from cocoa.core.schema import Strict
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.data.train_pairs import pairs_digest, read_train_pairs
from cocoa.losses.contrastive import WeightedDims, distributed_info_nce, place_negatives
from cocoa.model.backbone import Backbone
from cocoa.model.forward import lm_head, vl_model
from cocoa.model.packing import PADDED, Packing
from cocoa.stages.base import Stage, StageParts, image_root
from cocoa.stages.sections import RecipeBase
from cocoa.train.batches import BatchPlan, StepBatches
from cocoa.train.community_batches import CommunityBatches, CommunityPlan, mined_by
from cocoa.train.steps import GradCacheStep


class MatryoshkaConfig(Strict):
    """Multi-width InfoNCE: ``sum_i weights[i] * InfoNCE(first dims[i] features, re-normalised)``."""

    dims: list[int] = Field(description="dims, ascending and unique, each at most the model's hidden size")
    weights: list[float] | None = Field(None, description="one positive weight per width; default: 1 each")

    @field_validator("dims")
    @classmethod
    def _dims(cls, dims: list[int]) -> list[int]:
        return list(validate_dims(dims, "dims"))

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None and any(w <= 0 for w in weights):
            raise ValueError(f"weights must be positive, got {weights}")
        return weights

    @model_validator(mode="after")
    def _same_length(self) -> MatryoshkaConfig:
        if self.weights is not None and len(self.weights) != len(self.dims):
            raise ValueError(f"weights has {len(self.weights)} values but dims has {len(self.dims)}: give one "
                             "weight per width")
        return self

    @property
    def loss_weights(self) -> list[float]:
        """The weight of each width (1 each when ``weights`` is not set)."""
        return self.weights if self.weights is not None else [1.0] * len(self.dims)


class ContrastiveConfig(Strict):
    """The recipe's ``contrastive`` section: InfoNCE on EOS embeddings."""

    temperature: float = Field(0.02, gt=0)
    attention: Literal["bidirectional", "causal"] | None = Field(
        None, description="the embedding attention; default: the recipe protocol's (bidirectional for cocoa)")
    hard_negatives: bool = Field(False, description="add each row's hard negatives (neg_text/neg_image_path/"
                                 "neg_video_path, then extra_negatives) as candidates (rows without one add none)")
    negatives_per_query: int = Field(1, ge=1, description="with hard_negatives: at most this many of a row's "
                                     "negatives, its first ones (cocoa mine --negatives N writes N)")
    gradcache_chunk: int | None = Field(None, gt=0, description="GradCache chunks of this many rows, in the "
                                        "batch's order; null with gradcache_tokens null: the whole batch at once")
    gradcache_tokens: int | None = Field(
        None, gt=0, description="GradCache chunks cut by tokens instead: rows sorted longest first, each chunk's "
                                "computed tokens (rows x longest, or packed rows with train.pack_tokens) within "
                                "this budget, so memory stays bounded when lengths vary and chunks carry little "
                                "padding")
    dedupe: bool = Field(False, description="embed identical rows of a batch once (the label texts of "
                         "classification data, say); the loss still sees every row, so loss and gradient "
                         "are those of the batch as given (rows then share one dropout draw)")
    matryoshka: MatryoshkaConfig | None = Field(None, description="train several embedding dims at once")
    mask_same_targets: bool = Field(False, description="leave out of each query's candidates every other "
                                    "target or hard negative with the same content (text and media paths) as "
                                    "its own target: the same answer under another row, as the rows of one "
                                    "class label, is not a negative")

    @model_validator(mode="after")
    def _one_chunking(self) -> ContrastiveConfig:
        if self.gradcache_chunk is not None and self.gradcache_tokens is not None:
            raise ValueError("set at most one of contrastive.gradcache_chunk (rows) and "
                             "contrastive.gradcache_tokens (tokens)")
        if self.negatives_per_query > 1 and not self.hard_negatives:
            raise ValueError("contrastive.negatives_per_query counts hard negatives: set "
                             "contrastive.hard_negatives: true")
        return self

    @property
    def negatives(self) -> int:
        """Hard-negative candidates per query: ``negatives_per_query``, or 0 without hard negatives."""
        return self.negatives_per_query if self.hard_negatives else 0

    @property
    def weighted_dims(self) -> WeightedDims | None:
        """``(dims, weights)`` of the multi-width InfoNCE, or ``None`` for the single-width loss."""
        m = self.matryoshka
        return None if m is None else (m.dims, m.loss_weights)


@dataclass
class PairBatch:
    """Rows ``[queries; positives; hard negatives]`` collated in chunks.

    Each query has ``per_query`` hard-negative slots; ``negative_slots`` gives the slot of each hard
    negative row after the positives, in order (query ``i``'s ``j``-th at ``i * per_query + j``), and
    is ``None`` when hard negatives are off.
    """

    chunks: list[Batch]
    n_queries: int
    negative_slots: tuple[int, ...] | None
    per_query: int = 1
    target_ids: tuple[int, ...] | None = None
    """Content ids of the positives and of the negative slots (``-1`` when empty), with
    ``mask_same_targets``: :func:`content_id`."""
    negative_ids: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None
    """The position among the embedded rows (chunk after chunk) of each row above, when that is not
    its own: with ``dedupe`` (identical rows embedded once) or chunks cut by tokens (rows reordered)."""


def content_id(item: Item) -> int:
    """A signed 64-bit id of an item's content (its :meth:`~cocoa.data.items.Item.key`)."""
    digest = hashlib.blake2b(repr(item.key()).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def distinct_rows(items: Sequence[Item]) -> tuple[list[Item], tuple[int, ...]]:
    """The distinct items in first-seen order, and each item's position among them.

    Items are the same when text, image path and video are; an in-memory image counts as distinct.
    """
    seen: dict[tuple[str, str], int] = {}
    distinct: list[Item] = []
    rows = []
    for item in items:
        key = None if isinstance(item.image, Image.Image) else item.key()
        if key is None or key not in seen:
            if key is not None:
                seen[key] = len(distinct)
            rows.append(len(distinct))
            distinct.append(item)
        else:
            rows.append(seen[key])
    return distinct, tuple(rows)


class ContrastiveBuilder:
    """``query <EOS>`` and ``target <EOS>`` rows, chunked for GradCache (identical rows once with ``dedupe``).

    Chunks hold ``chunk`` rows in order, or, with ``chunk_tokens``, rows sorted longest first up to
    that many computed tokens (:meth:`~cocoa.model.packing.Packing.chunks`: whole packed rows when ``packing`` packs).
    """

    def __init__(self, pre: Preprocessor, negatives: int, chunk: int | None, dedupe: bool = False, *,
                 chunk_tokens: int | None = None, packing: Packing = PADDED, content_ids: bool = False) -> None:
        self.pre, self.negatives, self.chunk, self.dedupe = pre, negatives, chunk, dedupe
        self.chunk_tokens, self.packing, self.content_ids = chunk_tokens, packing, content_ids

    def __call__(self, examples: Sequence[TrainPair], rng: np.random.Generator) -> PairBatch:
        rows = [ex.query for ex in examples] + [ex.positive for ex in examples]
        slots = None
        if self.negatives:
            k = self.negatives
            slots = tuple(i * k + j for i, ex in enumerate(examples) for j in range(min(k, len(ex.negatives))))
            rows += [examples[s // k].negatives[s % k] for s in slots]
        target_ids = negative_ids = None
        if self.content_ids:
            target_ids = tuple(content_id(ex.positive) for ex in examples)
            by_slot = dict(zip(slots or (), (content_id(item) for item in rows[2 * len(examples):]), strict=True))
            negative_ids = tuple(by_slot.get(s, -1) for s in range(len(examples) * max(self.negatives, 1)))
        index = None
        if self.dedupe:
            rows, index = distinct_rows(rows)
        seqs = [self.pre.embedding_sequence(item) for item in rows]
        if self.chunk_tokens is None:
            size = self.chunk or len(seqs)
            groups = [list(range(i, min(i + size, len(seqs)))) for i in range(0, len(seqs), size)]
        else:
            groups = self.packing.chunks([len(s) for s in seqs], self.chunk_tokens)
            place = {row: n for n, row in enumerate(row for group in groups for row in group)}
            index = tuple(place[i] for i in (index if index is not None else range(len(seqs))))
        chunks = [collate([seqs[i] for i in group], self.pre.ids.pad) for group in groups]
        return PairBatch(chunks=chunks, n_queries=len(examples), negative_slots=slots, rows=index,
                         per_query=max(self.negatives, 1), target_ids=target_ids, negative_ids=negative_ids)


class EmbeddingObjective(nn.Module):
    """L2-normalised pooled embeddings of a chunk under a protocol (the loss is computed across chunks and ranks)."""

    def __init__(self, model: nn.Module, protocol: Protocol, packing: Packing = PADDED) -> None:
        super().__init__()
        self.model, self.protocol, self.packing = model, protocol, packing
        head = lm_head(model)
        if head.weight is not vl_model(model).get_input_embeddings().weight:
            head.requires_grad_(False)  # never used here: no optimiser state, no (FSDP zero) gradient for it

    def forward(self, batch: Batch) -> Tensor:
        return self.packing.embed(self.model, batch, self.protocol)


class ContrastiveLoss:
    """InfoNCE of the queries against the positives (and hard negatives) of the global batch."""

    def __init__(self, config: ContrastiveConfig) -> None:
        self.config = config

    def __call__(self, emb: Tensor, pairs: PairBatch) -> tuple[Tensor, Tensor]:
        n, temperature, weighted_dims = pairs.n_queries, self.config.temperature, self.config.weighted_dims
        if pairs.rows is not None:
            emb = emb[torch.tensor(pairs.rows, device=emb.device)]
        ids = [None if x is None else torch.tensor(x, dtype=torch.long, device=emb.device)
               for x in (pairs.target_ids, pairs.negative_ids)]
        if pairs.negative_slots is None:
            return distributed_info_nce(emb[:n], emb[n:2 * n], temperature, weighted_dims=weighted_dims,
                                        target_ids=ids[0])
        negatives, mask = place_negatives(emb[2 * n:], pairs.negative_slots, n * pairs.per_query)
        return distributed_info_nce(emb[:n], emb[n:2 * n], temperature, negatives, mask,
                                    weighted_dims=weighted_dims, target_ids=ids[0], negative_ids=ids[1])


class ContrastiveStage(Stage):
    name = "contrastive"
    number = 3
    section, config = "contrastive", ContrastiveConfig

    def examples(self, recipe: RecipeBase) -> list[TrainPair]:
        data = recipe.data
        return list(read_train_pairs(Path(data.root), data.subsets, image_root(recipe), split=data.split,
                                     cap=data.cap, seed=recipe.train.seed, skip_bad=data.skip_bad))

    def batches(self, recipe: RecipeBase, examples: list[Any], world_size: int) -> StepBatches:
        """A random permutation an epoch, or with ``data.batches`` the mined plan's community batches
        (refused when it was mined for other rows or cuts another global batch)."""
        if recipe.data.batches is None:
            return BatchPlan(len(examples), recipe.train.batch_size, world_size, recipe.train.seed)
        return CommunityBatches.checked(CommunityPlan.load(recipe.data.batches), pairs_digest(examples),
                                        recipe.train.batch_size, world_size, recipe.train.seed)

    def parts(self, recipe: RecipeBase, backbone: Backbone, model: nn.Module) -> StageParts:
        c = self.settings(recipe)
        if c.matryoshka is not None:
            validate_dims(c.matryoshka.dims, "contrastive.matryoshka.dims", backbone.hidden_size)
        builder = ContrastiveBuilder(self.preprocessor(recipe, backbone), c.negatives,
                                     c.gradcache_chunk, c.dedupe, chunk_tokens=c.gradcache_tokens,
                                     packing=self.packing(recipe), content_ids=c.mask_same_targets)
        return StageParts(EmbeddingObjective(model, self.protocol(recipe), self.packing(recipe)), builder,
                          GradCacheStep(ContrastiveLoss(c)))

    def protocol(self, recipe: RecipeBase) -> Protocol:
        """The recipe's protocol, with ``contrastive.attention`` when that is set."""
        protocol = super().protocol(recipe)
        attention = self.settings(recipe).attention
        return protocol if attention is None else protocol.replace(attention=attention)

    def embedding_spec(self, recipe: RecipeBase) -> EmbeddingSpec:
        """The protocol, token budget and Matryoshka dims, and how the batches and negatives were drawn."""
        c = self.settings(recipe)
        return EmbeddingSpec(self.protocol(recipe), recipe.data.max_len,
                             tuple(c.matryoshka.dims) if c.matryoshka is not None else None,
                             training_record(recipe, c.negatives))


def training_record(recipe: RecipeBase, negatives: int) -> dict[str, Any]:
    """How stage 3 drew its batches and negatives, as ``cocoa.json``'s ``training`` keeps it.

    ``batches``: the mined plan's folder and manifest (teacher, data digest, p, m, community and batch
    size, seed), or ``None`` for a fresh permutation an epoch. ``hard_negatives``: the data folder whose
    negatives were trained on, how many a query at most, and the plan that mined them when the folder
    is a plan's ``negatives/`` (``cocoa mine``); ``None`` without hard negatives (``negatives`` 0).
    """
    batches = None
    if recipe.data.batches is not None:
        manifest = CommunityPlan.load(recipe.data.batches).manifest
        batches = {"plan": str(recipe.data.batches), **{k: v for k, v in manifest.items() if k != "done"}}
    record = None
    if negatives:
        plan = mined_by(recipe.data.root)
        if plan is not None and negatives > (have := int(CommunityPlan.load(plan).manifest.get("negatives", 1))):
            raise ConfigError(f"contrastive.negatives_per_query is {negatives} but {plan} mined {have} "
                              f"a query: mine again with --negatives {negatives}")
        record = {"data": str(recipe.data.root), "per_query": negatives, "plan": None if plan is None else str(plan)}
    return {"stage": "contrastive", "batches": batches, "hard_negatives": record}
