"""cocoa.losses.contrastive: InfoNCE, placed negatives, distributed and Matryoshka forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cocoa.losses.contrastive import distributed_info_nce, info_nce, matryoshka_info_nce, place_negatives
from tests.helpers import brute_matryoshka


def unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1)


def direct_nce(q: torch.Tensor, t: torch.Tensor, temperature: float, n: torch.Tensor | None = None) -> float:
    cands = t if n is None else torch.cat([t, n])
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ c) / temperature for c in cands]
        top = max(logits)
        total += -(logits[i] - top - math.log(sum(math.exp(v - top) for v in logits)))
    return total / q.shape[0]


def test_info_nce_matches_direct_computation() -> None:
    torch.manual_seed(0)
    q, t, n = unit(5, 16), unit(5, 16), unit(5, 16)
    assert math.isclose(float(info_nce(q, t, 0.05)), direct_nce(q, t, 0.05), rel_tol=1e-5)
    with_neg = float(info_nce(q, t, 0.05, n))
    assert math.isclose(with_neg, direct_nce(q, t, 0.05, n), rel_tol=1e-5)
    assert with_neg > float(info_nce(q, t, 0.05))  # more candidates, higher loss


def test_info_nce_temperature() -> None:
    torch.manual_seed(1)
    q, t = unit(4, 8), unit(4, 8)
    for temperature in (0.02, 0.1, 1.0):
        assert math.isclose(float(info_nce(q, t, temperature)), direct_nce(q, t, temperature), rel_tol=1e-5)
    # logits scale as 1 / T
    assert torch.allclose(info_nce(q, t, 0.1), info_nce(q * 2, t, 0.2), atol=1e-6)
    # aligned pairs: a sharper temperature gives a lower loss
    aligned = unit(4, 8)
    assert float(info_nce(aligned, aligned, 0.02)) < float(info_nce(aligned, aligned, 1.0))
    assert float(info_nce(aligned, aligned, 0.01)) < 1e-3


def test_masked_negatives_are_left_out_of_the_candidates() -> None:
    torch.manual_seed(3)
    q, t, n = unit(4, 16), unit(4, 16), unit(4, 16)
    mask = torch.tensor([True, False, True, False])
    # a masked slot counts for nothing: the same loss as the candidate list without it
    assert math.isclose(float(info_nce(q, t, 0.05, n, mask)), direct_nce(q, t, 0.05, n[mask]), rel_tol=1e-5)
    assert not math.isclose(float(info_nce(q, t, 0.05, n, mask)), float(info_nce(q, t, 0.05, n)), rel_tol=1e-3)
    # whatever it holds, and it gets no gradient
    garbage = n.clone()
    garbage[~mask] = q[~mask]
    garbage.requires_grad_()
    loss = info_nce(q, t, 0.05, garbage, mask)
    loss.backward()
    assert torch.allclose(loss, info_nce(q, t, 0.05, n, mask), atol=1e-6)
    assert float(garbage.grad[~mask].abs().max()) == 0.0 and float(garbage.grad[mask].abs().max()) > 0
    assert math.isclose(float(info_nce(q, t, 0.05, n, torch.zeros(4, dtype=torch.bool))),
                        float(info_nce(q, t, 0.05)), rel_tol=1e-6)


def nce_leaving_out(q: torch.Tensor, cands: torch.Tensor, temperature: float, out: dict[int, set[int]]) -> float:
    """InfoNCE of query i against candidate i with the candidates in ``out[i]`` removed, term by term."""
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ c) / temperature for j, c in enumerate(cands) if j not in out.get(i, set())]
        own = float(q[i] @ cands[i]) / temperature
        total += -(own - math.log(sum(math.exp(v) for v in logits)))
    return total / q.shape[0]


def test_candidates_with_the_query_answer_content_are_left_out() -> None:
    torch.manual_seed(4)
    q, t, n = unit(4, 16), unit(4, 16), unit(4, 16)
    ids = torch.tensor([7, 7, 8, 9])  # targets 0 and 1: one answer under two rows
    negative_ids = torch.tensor([8, -1, 5, 7])  # query 0's slot holds query 2's answer, query 3's slot 0's
    want = nce_leaving_out(q, torch.cat([t, n]), 0.05, {0: {1, 7}, 1: {0, 7}, 2: {4}})
    assert math.isclose(float(info_nce(q, t, 0.05, n, None, ids, negative_ids)), want, rel_tol=1e-5)
    alone = nce_leaving_out(q, t, 0.05, {0: {1}, 1: {0}})
    assert math.isclose(float(info_nce(q, t, 0.05, target_ids=ids)), alone, rel_tol=1e-5)
    distinct = torch.arange(4)
    assert float(info_nce(q, t, 0.05, target_ids=distinct)) == float(info_nce(q, t, 0.05))
    loss, _ = distributed_info_nce(q, t, 0.05, n, torch.ones(4, dtype=torch.bool), None, ids, negative_ids)
    assert math.isclose(float(loss), want, rel_tol=1e-5)


def test_place_negatives_puts_each_in_its_query_slot() -> None:
    emb = torch.randn(2, 8, requires_grad=True)
    negatives, mask = place_negatives(emb, (1, 3), 4)
    assert mask.tolist() == [False, True, False, True]
    assert torch.equal(negatives[1], emb[0]) and torch.equal(negatives[3], emb[1])
    assert float(negatives[0].abs().max()) == 0.0 and float(negatives[2].abs().max()) == 0.0
    negatives[3].sum().backward()
    assert emb.grad[1].tolist() == [1.0] * 8 and emb.grad[0].tolist() == [0.0] * 8
    none, empty = place_negatives(torch.zeros(0, 8), (), 3)
    assert none.shape == (3, 8) and not empty.any()


def test_distributed_info_nce_single_process_is_plain() -> None:
    torch.manual_seed(2)
    q, t, n = unit(3, 8), unit(3, 8), unit(3, 8)
    loss, report = distributed_info_nce(q, t, 0.05, n)
    assert torch.allclose(loss, info_nce(q, t, 0.05, n)) and torch.equal(loss.detach(), report)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_loss_is_the_weighted_sum_of_per_width_info_nce(with_negatives: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    q, t, neg = (torch.nn.functional.normalize(torch.randn(5, 12, generator=gen, dtype=torch.float64), dim=-1)
                 for _ in range(3))
    mask = torch.tensor([True, False, True, True, False])
    dims, weights, temperature = [3, 7, 12], [0.5, 1.0, 2.0], 0.1
    args = (neg, mask) if with_negatives else (None, None)
    got = matryoshka_info_nce(q, t, temperature, dims, weights, *args)
    want = brute_matryoshka(q.numpy(), t.numpy(), temperature, dims, weights,
                            *(a.numpy() if a is not None else None for a in args))
    assert float(got) == pytest.approx(want, rel=1e-6)
    loss, report = distributed_info_nce(q, t, temperature, *args, weighted_dims=(dims, weights))
    assert float(loss) == pytest.approx(want, rel=1e-6) and float(report) == pytest.approx(want, rel=1e-6)
