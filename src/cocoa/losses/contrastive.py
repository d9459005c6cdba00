"""InfoNCE on EOS embeddings with in-batch negatives gathered across ranks.

Every rank gathers all queries and targets of the global batch (without autograd), puts
its own shard back in its slot (with autograd) and computes the loss of the whole global
batch. The gradient reaching the local shard is then exactly that of the global loss; the
loss is scaled by the world size because DDP and FSDP average gradients over ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from cocoa.core.matryoshka import truncate_tensor

#: ``(dims, weights)``: the Matryoshka dims a loss trains and the weight of each.
WeightedDims = tuple[Sequence[int], Sequence[float]]


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


def info_nce(queries: Tensor, targets: Tensor, temperature: float, negatives: Tensor | None = None,
             negative_mask: Tensor | None = None, target_ids: Tensor | None = None,
             negative_ids: Tensor | None = None) -> Tensor:
    """Mean InfoNCE of query i against target i, with all targets (and negatives) as candidates.

    All inputs are L2-normalised ``(n, d)``; ``negatives`` (``(n * k, d)``: ``k`` slots per query)
    adds the hard negatives of all queries to every query's candidate list, and ``negative_mask``
    (``(n * k,)`` bool) leaves out the empty slots. With content ids of the targets (``(n,)``) and
    of the negative slots (``(n * k,)``), a candidate other than query i's own target whose id equals
    target i's (the same answer under another row: a false negative) is left out too.
    """
    candidates = targets if negatives is None else torch.cat([targets, negatives])
    logits = (queries @ candidates.T / temperature).float()
    n = queries.shape[0]
    keep = torch.ones_like(logits, dtype=torch.bool)
    if negatives is not None and negative_mask is not None:
        keep[:, n:] &= negative_mask
    if target_ids is not None:
        ids = target_ids if negatives is None or negative_ids is None else torch.cat([target_ids, negative_ids])
        same = ids[None, :] == target_ids[:, None]
        own = torch.arange(n, device=same.device)
        same[own, own] = False
        keep &= ~same
    logits = logits.masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, torch.arange(n, device=queries.device))


def matryoshka_info_nce(queries: Tensor, targets: Tensor, temperature: float, dims: Sequence[int],
                        weights: Sequence[float], negatives: Tensor | None = None,
                        negative_mask: Tensor | None = None, target_ids: Tensor | None = None,
                        negative_ids: Tensor | None = None) -> Tensor:
    """``sum_i weights[i] * info_nce`` on the first ``dims[i]`` features of every input, re-normalised."""
    total = queries.new_zeros((), dtype=torch.float32)
    for dim, weight in zip(dims, weights, strict=True):
        cut = None if negatives is None else truncate_tensor(negatives, dim)
        total = total + weight * info_nce(truncate_tensor(queries, dim), truncate_tensor(targets, dim),
                                          temperature, cut, negative_mask, target_ids, negative_ids)
    return total


def place_negatives(embeddings: Tensor, slots: Sequence[int], n: int) -> tuple[Tensor, Tensor]:
    """``(negatives (n, d), mask (n,))`` with hard negative ``i`` of ``embeddings`` in slot ``slots[i]``.

    ``n`` is the number of slots (queries times negatives per query). An empty slot (a query with
    fewer hard negatives) holds zeros that ``info_nce`` masks out, so every rank contributes the
    same shapes to the gather whichever of its rows have negatives.
    """
    index = torch.tensor(list(slots), dtype=torch.long, device=embeddings.device)
    negatives = embeddings.new_zeros(n, embeddings.shape[1]).index_copy(0, index, embeddings)
    mask = torch.zeros(n, dtype=torch.bool, device=embeddings.device).index_fill(0, index, True)
    return negatives, mask


def distributed_info_nce(queries: Tensor, targets: Tensor, temperature: float, negatives: Tensor | None = None,
                         negative_mask: Tensor | None = None, weighted_dims: WeightedDims | None = None,
                         target_ids: Tensor | None = None, negative_ids: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """``(loss to backpropagate, global-batch loss to report)`` across all ranks.

    With ``weighted_dims`` the loss is :func:`matryoshka_info_nce` of the gathered batch; content ids
    (:func:`info_nce`) are gathered with the embeddings.
    """
    q, t = gather_with_local_grad(queries), gather_with_local_grad(targets)
    n = gather_with_local_grad(negatives) if negatives is not None else None
    mask = gather_with_local_grad(negative_mask.to(torch.uint8)).bool() if negative_mask is not None else None
    ids = [None if x is None else gather_with_local_grad(x) for x in (target_ids, negative_ids)]
    if weighted_dims is None:
        loss = info_nce(q, t, temperature, n, mask, *ids)
    else:
        loss = matryoshka_info_nce(q, t, temperature, *weighted_dims, n, mask, *ids)
    return loss * world_size(), loss.detach()
