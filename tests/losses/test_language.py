"""cocoa.losses.language: shifted cross-entropy on hand-checkable cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.losses.language import shifted_cross_entropy


def test_shifted_cross_entropy_by_hand() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 7)
    labels = torch.tensor([[3, IGNORE_INDEX, 2, 6, IGNORE_INDEX],
                           [IGNORE_INDEX, 4, IGNORE_INDEX, IGNORE_INDEX, 1]])
    loss = shifted_cross_entropy(hidden, labels, nn.Identity())
    # position i - 1 predicts token i: (row 0: 1->2, 2->6), (row 1: 0->4, 3->1)
    terms = [-F.log_softmax(hidden[b, i - 1], -1)[t] for b, i, t in ((0, 2, 2), (0, 3, 6), (1, 1, 4), (1, 4, 1))]
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
    # an unshifted reading would differ
    unshifted = torch.stack([-F.log_softmax(hidden[b, i], -1)[t]
                             for b, i, t in ((0, 2, 2), (0, 3, 6), (1, 1, 4), (1, 4, 1))]).mean()
    assert not torch.allclose(loss, unshifted)


def test_shifted_cross_entropy_ignores_label_zero_and_unlabelled_positions() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(1, 4, 5, requires_grad=True)
    labels = torch.tensor([[3, IGNORE_INDEX, 2, IGNORE_INDEX]])
    base = shifted_cross_entropy(hidden, labels, nn.Identity())
    # the label at position 0 has no predecessor: changing it changes nothing
    other = labels.clone()
    other[0, 0] = 1
    assert torch.equal(shifted_cross_entropy(hidden, other, nn.Identity()), base)
    # only position 1 (predicting label 2) carries gradient
    base.backward()
    grad_rows = hidden.grad[0].abs().sum(-1)
    assert grad_rows[1] > 0
    assert torch.all(grad_rows[[0, 2, 3]] == 0)
    # nothing labelled but position 0: zero loss, still differentiable
    only_first = torch.tensor([[3, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    empty = shifted_cross_entropy(hidden, only_first, nn.Identity())
    assert float(empty.detach()) == 0.0 and empty.requires_grad
