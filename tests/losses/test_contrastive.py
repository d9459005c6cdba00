"""Each training loss on a hand-checkable case: shifted cross-entropy, masked auto-encoding, InfoNCE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.losses.contrastive import distributed_info_nce, info_nce, place_negatives
from cocoa.losses.language import shifted_cross_entropy
from cocoa.losses.mae import MAEHead, merged_patch_targets

# --- shifted cross-entropy ------------------------------------------------------------


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


# --- masked auto-encoding --------------------------------------------------------------


def test_merged_patch_targets_groups_and_normalises() -> None:
    torch.manual_seed(0)
    pixels = torch.randn(12, 6) * 3 + 2
    targets = merged_patch_targets(pixels, merge_size=2)
    assert targets.shape == (3, 24)
    assert torch.allclose(targets.mean(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(targets.var(-1, unbiased=False), torch.ones(3), atol=1e-4)
    for g in range(3):
        block = pixels[4 * g: 4 * g + 4].reshape(-1)
        expected = (block - block.mean()) / block.std(unbiased=False)
        assert torch.allclose(targets[g], expected, atol=1e-4)


def test_mae_loss_counts_masked_patches_only() -> None:
    torch.manual_seed(0)
    head = MAEHead(hidden=8, pixel_dim=12, heads=2)
    states = torch.randn(6, 8)
    targets = torch.randn(6, 12)
    masked = torch.tensor([True, False, False, True, False, True])
    per_image = [4, 2]
    base = head.loss(states, per_image, targets, masked)
    changed_unmasked = targets.clone()
    changed_unmasked[[1, 2, 4]] += 5.0
    assert torch.allclose(head.loss(states, per_image, changed_unmasked, masked), base)
    changed_masked = targets.clone()
    changed_masked[3] += 5.0
    assert not torch.allclose(head.loss(states, per_image, changed_masked, masked), base)
    # it is the MSE of the decoded masked rows
    padded = torch.zeros(2, 4, 8)
    padded[0], padded[1, :2] = states[:4], states[4:]
    pad = torch.tensor([[False] * 4, [False, False, True, True]])
    pred = head.head(head.decoder(padded, src_key_padding_mask=pad)[~pad])
    assert torch.allclose(base, F.mse_loss(pred[masked], targets[masked]), atol=1e-6)
    assert float(head.loss(states, per_image, targets, torch.zeros(6, dtype=torch.bool))) == 0.0


def test_mae_mask_replaces_flagged_rows() -> None:
    head = MAEHead(hidden=8, pixel_dim=4, heads=2)
    feats = torch.randn(3, 8)
    out = head.mask(feats, torch.tensor([False, True, False]))
    assert torch.equal(out[0], feats[0]) and torch.equal(out[2], feats[2])
    assert torch.equal(out[1], head.mask_embedding.detach())


# --- InfoNCE ---------------------------------------------------------------------------


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
