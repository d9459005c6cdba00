"""The multi-width (Matryoshka) InfoNCE against a brute-force sum of per-width InfoNCE losses."""

from __future__ import annotations

import pytest
import torch

from cocoa.losses.contrastive import distributed_info_nce, matryoshka_info_nce
from tests.helpers import brute_matryoshka


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

