"""cocoa.losses.mae: merged-patch targets, the masked-patch loss and the mask embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cocoa.losses.mae import MAEHead, merged_patch_targets


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
