"""Step-indexed batches: which examples each rank trains on at each step, built on demand.

A builder turns a list of examples into a ready batch using a random generator that depends
only on (seed, step, rank), so a resumed run sees exactly the batches and masks an
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch.utils.data import Dataset


class BatchBuilder(Protocol):
    """Turns one step's examples into that step's batch."""

    def __call__(self, examples: Sequence[Any], rng: np.random.Generator) -> Any: ...


def total_steps(steps_per_epoch: int, max_steps: int | None, epochs: float | None) -> int:
    """``max_steps``, else ``epochs`` (default 1) of ``steps_per_epoch``, at least one step."""
    if max_steps is not None:
        return max_steps
    return max(1, math.ceil((epochs or 1.0) * steps_per_epoch))


class StepBatches(Protocol):
    """Which examples each rank trains on at each step: :class:`BatchPlan`, or a mined
    :class:`~cocoa.train.community_batches.CommunityBatches`."""

    seed: int

    @property
    def global_batch(self) -> int: ...

    @property
    def steps_per_epoch(self) -> int: ...

    def total_steps(self, max_steps: int | None, epochs: float | None) -> int: ...

    def indices(self, step: int, rank: int) -> list[int]: ...


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
        return total_steps(self.steps_per_epoch, max_steps, epochs)

    def indices(self, step: int, rank: int) -> list[int]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_examples)
        start = offset * self.global_batch + rank * self.batch_size
        return perm[start:start + self.batch_size].tolist()


class StepDataset(Dataset):
    """Item ``step`` is the finished batch of that step for this rank."""

    def __init__(self, examples: Sequence[Any], builder: BatchBuilder, plan: StepBatches, rank: int = 0) -> None:
        self.examples, self.builder, self.plan, self.rank = examples, builder, plan, rank

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> Any:
        rng = np.random.default_rng([self.plan.seed, step, self.rank, 7])
        return self.builder([self.examples[i] for i in self.plan.indices(step, self.rank)], rng)


def passthrough(batch: Any) -> Any:
    """DataLoader collate function for datasets that already return batches."""
    return batch
