"""Per-stage batch builders and the step-indexed dataset that feeds the trainer.

A builder turns a list of examples into a ready :class:`~cocoa.data.collate.Batch` using a
random generator that depends only on (seed, step, rank), so a resumed run sees exactly
the batches and masks an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cocoa.attention import Role
from cocoa.data.collate import IGNORE_INDEX, Batch, Encoded, Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.data.mmeb import CaptionPair
from cocoa.objectives.language import choose_masked, mask_tokens


class BatchBuilder(Protocol):
    def __call__(self, examples: Sequence[Any], rng: np.random.Generator) -> Any: ...


def mask_share(enc: Encoded, positions: list[int], ratio: float, rng: np.random.Generator, mask_id: int) -> None:
    """Mask a ``ratio`` share of ``positions`` in place; their labels become the original ids."""
    chosen = choose_masked(len(positions), ratio, rng)
    masked, labels = mask_tokens([enc.ids[i] for i in positions], chosen, mask_id)
    for pos, new_id, label in zip(positions, masked, labels, strict=True):
        enc.ids[pos], enc.labels[pos] = new_id, label


class PretrainBuilder:
    """Stage 0: ``<image> caption <EOS>``, causal LM loss on the caption and the EOS."""

    def __init__(self, pre: Preprocessor) -> None:
        self.pre = pre

    def sequence(self, ex: CaptionPair) -> Encoded:
        enc = self.pre.fit(self.pre.item(Item(ex.caption, ex.image.image)), reserve=1)
        enc.add([self.pre.ids.eos], Role.QUERY, protected=True)
        enc.labels = [i if not p else IGNORE_INDEX for i, p in zip(enc.ids, enc.protected, strict=True)]
        enc.labels[-1] = self.pre.ids.eos
        return enc

    def __call__(self, examples: Sequence[CaptionPair], rng: np.random.Generator) -> Batch:
        return collate([self.sequence(ex) for ex in examples], self.pre.ids.pad)


class WarmupBuilder:
    """Stage 1: ``<image> caption`` with masked caption tokens (MNTP) and masked image tokens (MAE)."""

    def __init__(self, pre: Preprocessor, text_ratio: float, image_ratio: float) -> None:
        self.pre, self.text_ratio, self.image_ratio = pre, text_ratio, image_ratio

    def sequence(self, ex: CaptionPair, rng: np.random.Generator) -> Encoded:
        enc = self.pre.fit(self.pre.item(Item(ex.caption, ex.image.image)))
        text = [i for i, protected in enumerate(enc.protected) if not protected]
        mask_share(enc, text, self.text_ratio, rng, self.pre.ids.mask)
        return enc

    def __call__(self, examples: Sequence[CaptionPair], rng: np.random.Generator) -> Batch:
        seqs = [self.sequence(ex, rng) for ex in examples]
        batch = collate(seqs, self.pre.ids.pad)
        n_image_tokens = int(batch.mm_token_type_ids.sum())
        flags = np.zeros(n_image_tokens, dtype=bool)
        flags[choose_masked(n_image_tokens, self.image_ratio, rng)] = True
        batch.image_token_mask = torch.from_numpy(flags)
        return batch


class BridgeBuilder:
    """Stage 2: ``[query] <EOS> [target]`` with a share of target tokens masked."""

    def __init__(self, pre: Preprocessor, target_ratio: float) -> None:
        self.pre, self.target_ratio = pre, target_ratio

    def sequence(self, pair: TrainPair, rng: np.random.Generator) -> Encoded:
        enc = self.pre.item(pair.query, Role.QUERY)
        enc.add([self.pre.ids.eos], Role.EOS, protected=True)
        target = self.pre.item(pair.positive, Role.TARGET)
        start = len(enc)
        enc.extend(target)
        enc = self.pre.fit(enc)
        positions = [i for i in range(start, len(enc)) if enc.roles[i] == Role.TARGET and not enc.protected[i]]
        mask_share(enc, positions, self.target_ratio, rng, self.pre.ids.mask)
        return enc

    def __call__(self, examples: Sequence[TrainPair], rng: np.random.Generator) -> Batch:
        return collate([self.sequence(ex, rng) for ex in examples], self.pre.ids.pad)


@dataclass
class PairBatch:
    """Stage 3 input: rows ``[queries; positives; hard negatives]`` collated in chunks.

    ``negative_of`` lists the queries (by position) whose hard negatives follow the positives,
    in order; ``None`` when hard negatives are off.
    """

    chunks: list[Batch]
    n_queries: int
    negative_of: tuple[int, ...] | None


class ContrastiveBuilder:
    """Stage 3: ``query <EOS>`` and ``target <EOS>`` rows, chunked for GradCache."""

    def __init__(self, pre: Preprocessor, hard_negatives: bool, chunk: int | None) -> None:
        self.pre, self.hard_negatives, self.chunk = pre, hard_negatives, chunk

    def __call__(self, examples: Sequence[TrainPair], rng: np.random.Generator) -> PairBatch:
        rows = [ex.query for ex in examples] + [ex.positive for ex in examples]
        negative_of = None
        if self.hard_negatives:
            negative_of = tuple(i for i, ex in enumerate(examples) if ex.negative is not None)
            rows += [examples[i].negative for i in negative_of]  # type: ignore[misc]
        seqs = [self.pre.embedding_sequence(item) for item in rows]
        size = self.chunk or len(seqs)
        chunks = [collate(seqs[i:i + size], self.pre.ids.pad) for i in range(0, len(seqs), size)]
        return PairBatch(chunks=chunks, n_queries=len(examples), negative_of=negative_of)


@dataclass(frozen=True)
class BatchPlan:
    """Which examples each rank trains on at each step (a fresh permutation per epoch)."""

    n_examples: int
    batch_size: int
    world_size: int = 1
    seed: int = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.n_examples // self.global_batch

    def total_steps(self, max_steps: int | None, epochs: float | None) -> int:
        if max_steps is not None:
            return max_steps
        return max(1, math.ceil((epochs or 1.0) * self.steps_per_epoch))

    def indices(self, step: int, rank: int) -> list[int]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_examples)
        start = offset * self.global_batch + rank * self.batch_size
        return perm[start:start + self.batch_size].tolist()


class StepDataset(Dataset):
    """Item ``step`` is the finished batch of that step for this rank."""

    def __init__(self, examples: Sequence[Any], builder: BatchBuilder, plan: BatchPlan, rank: int = 0) -> None:
        self.examples, self.builder, self.plan, self.rank = examples, builder, plan, rank

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> Any:
        rng = np.random.default_rng([self.plan.seed, step, self.rank, 7])
        return self.builder([self.examples[i] for i in self.plan.indices(step, self.rank)], rng)


def passthrough(batch: Any) -> Any:
    """DataLoader collate function for datasets that already return batches."""
    return batch

