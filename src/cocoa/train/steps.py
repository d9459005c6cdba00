"""How a batch becomes gradients: plain back-propagation of a loss, or GradCache over chunks.

A stage picks its step; the trainer only calls it. GradCache embeds every chunk without
gradients, computes the loss on all cached embeddings at once, then re-runs each chunk with
gradients and back-propagates that chunk's share of the cached embedding gradients, so a
large contrastive batch fits in the memory of one chunk and gives the full-batch gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.losses.contrastive import world_size
from cocoa.train import checkpoint


@dataclass(frozen=True)
class StepContext:
    """What a step needs from the trainer."""

    engine: nn.Module
    """The objective to call with gradients (wrapped in DDP, or sharded by FSDP)."""
    module: nn.Module
    """The bare objective, for forwards without gradients."""
    device: torch.device
    autocast: Callable[[], AbstractContextManager]
    accumulate: Callable[[bool], AbstractContextManager]
    """``accumulate(last)``: the context of a chunk's backward (no gradient sync before the last)."""


class Step(Protocol):
    """Forward and backward of one batch; returns the metrics to log."""

    def __call__(self, ctx: StepContext, batch: Any) -> dict[str, float]: ...


class LossStep:
    """The objective returns a dict of losses; back-propagate its ``loss``."""

    def __call__(self, ctx: StepContext, batch: Batch) -> dict[str, float]:
        with ctx.autocast():
            out = ctx.engine(batch.to(ctx.device))
        out["loss"].backward()
        return {k: float(v.detach()) for k, v in out.items()}


class Chunked(Protocol):
    """A batch whose rows are collated in chunks (the objective embeds one chunk per call)."""

    chunks: list[Batch]


#: ``loss(embeddings of every row, batch) -> (loss to back-propagate, loss to report)``.
EmbeddingLoss = Callable[[Tensor, Any], tuple[Tensor, Tensor]]


class GradCacheStep:
    """Embed every chunk, compute ``loss`` on all embeddings, back-propagate chunk by chunk."""

    def __init__(self, loss: EmbeddingLoss) -> None:
        self.loss = loss

    def __call__(self, ctx: StepContext, batch: Chunked) -> dict[str, float]:
        chunks = [c.to(ctx.device) for c in batch.chunks]
        total = most_chunks(len(chunks), ctx.device)
        if total == 1:
            with ctx.autocast():
                emb = ctx.engine(chunks[0]).float()
            loss, report = self.loss(emb, batch)
            loss.backward()
            return {"loss": float(report)}
        rng_states, cached = [], []
        with torch.no_grad(), ctx.autocast():
            for chunk in chunks:
                rng_states.append(checkpoint.rng_state())
                cached.append(ctx.module(chunk).float())
            for _ in range(total - len(chunks)):
                ctx.module(chunks[-1])
        emb = torch.cat(cached).requires_grad_()
        loss, report = self.loss(emb, batch)
        loss.backward()
        grads = torch.split(emb.grad, [len(c) for c in chunks])
        replays = list(zip(chunks, grads, rng_states, strict=True))
        replays += [(chunks[-1], torch.zeros_like(grads[-1]), rng_states[-1])] * (total - len(chunks))
        for i, (chunk, grad, state) in enumerate(replays):
            checkpoint.set_rng_state(state)
            with ctx.accumulate(i == len(replays) - 1), ctx.autocast():
                (ctx.engine(chunk).float() * grad).sum().backward()
        return {"loss": float(report)}


def most_chunks(count: int, device: torch.device) -> int:
    """The most chunks any rank has this step (``count`` in a single process).

    Ranks may have different counts (deduplicated rows, rows without hard negatives, chunks cut
    by tokens). FSDP gathers the weights on every chunk's forward, so a rank with fewer chunks
    runs its last one again, with a zero gradient, until the counts match.
    """
    if world_size() == 1:
        return count
    most = torch.tensor([count], device=device)
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    return int(most)
