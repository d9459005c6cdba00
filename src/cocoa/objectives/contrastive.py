"""InfoNCE on EOS embeddings with in-batch negatives gathered across ranks.

Every rank gathers all queries and targets of the global batch (without autograd), puts
its own shard back in its slot (with autograd) and computes the loss of the whole global
batch. The gradient reaching the local shard is then exactly that of the global loss; the
loss is scaled by the world size because DDP and FSDP average gradients over ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_local_grad(x: Tensor) -> Tensor:
    """All ranks' ``x`` concatenated in rank order; only the local slot carries gradient."""
    size = world_size()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def info_nce(queries: Tensor, targets: Tensor, temperature: float, negatives: Tensor | None = None) -> Tensor:
    """Mean InfoNCE of query i against target i, with all targets (and negatives) as candidates.

    All inputs are L2-normalised ``(n, d)``; ``negatives`` adds one hard negative per query
    to every query's candidate list.
    """
    candidates = targets if negatives is None else torch.cat([targets, negatives])
    logits = queries @ candidates.T / temperature
    labels = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits.float(), labels)


def distributed_info_nce(queries: Tensor, targets: Tensor, temperature: float,
                         negatives: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(loss to backpropagate, global-batch loss to report)`` across all ranks."""
    q, t = gather_with_local_grad(queries), gather_with_local_grad(targets)
    n = gather_with_local_grad(negatives) if negatives is not None else None
    loss = info_nce(q, t, temperature, n)
    return loss * world_size(), loss.detach()
