"""cocoa.train.steps: GradCache gives the full batch's loss and gradients, dropout replayed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor
from cocoa.losses.contrastive import info_nce
from cocoa.model.packing import Packing
from cocoa.stages.contrastive import ContrastiveBuilder, EmbeddingObjective, PairBatch
from cocoa.train import checkpoint
from cocoa.train.config import LoraConfig
from cocoa.train.lora import add_lora
from tests.helpers import (
    assert_same_grads,
    assert_same_step,
    contrastive_trainer,
    grads,
    make_backbone,
    pairs,
)


def test_gradcache_matches_full_batch(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    full = ContrastiveBuilder(pre, negatives=1, chunk=None)(examples, np.random.default_rng(0))
    chunked = ContrastiveBuilder(pre, negatives=1, chunk=2)(examples, np.random.default_rng(0))
    assert len(full.chunks) == 1 and len(chunked.chunks) == 6 and chunked.negative_slots == (0, 1, 2, 3)
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, 1, None), tmp_path)
    assert_same_step(trainer, objective, full, chunked)


@pytest.mark.parametrize(("packed", "dedupe"), [(False, False), (False, True), (True, False), (True, True)])
def test_gradcache_chunks_cut_by_tokens_match_full_batch(packed: bool, dedupe: bool, image_dir: Path,
                                                        tmp_path: Path) -> None:
    backbone = make_backbone()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    full = ContrastiveBuilder(pre, 1, None, dedupe)(examples, np.random.default_rng(0))
    lengths = [int(n) for n in (full.chunks[0].roles != Role.PAD).sum(1)]
    pack_tokens = 2 * max(lengths) if packed else None
    budget = 2 * max(lengths)  # packed: a row a chunk
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"], Packing(pack_tokens))
    objective.train()
    cut = ContrastiveBuilder(pre, 1, None, dedupe, chunk_tokens=budget, packing=Packing(pack_tokens))(
        examples, np.random.default_rng(0))
    assert len(cut.chunks) > 1 and cut.rows is not None and sorted(set(cut.rows)) == list(range(len(lengths)))
    for chunk in cut.chunks:
        real = (chunk.roles != Role.PAD).sum(1)
        if pack_tokens is None:
            assert len(chunk) == 1 or len(chunk) * int(real.max()) <= budget
        assert real.tolist() == sorted(real.tolist(), reverse=True) or packed
    assert not packed or any(Packing(pack_tokens).rows(chunk) is not None for chunk in cut.chunks)
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, 1, None), tmp_path)
    assert_same_step(trainer, objective, full, cut)


def reference_grads(objective: nn.Module, pairs_: PairBatch, temperature: float) -> tuple[float, dict]:
    """One autograd graph over the chunks run in order (the dropout draws GradCache replays)."""
    emb = torch.cat([objective(c) for c in pairs_.chunks]).float()
    n = pairs_.n_queries
    assert pairs_.negative_slots == tuple(range(n))
    loss = info_nce(emb[:n], emb[n:2 * n], temperature, emb[2 * n:])
    loss.backward()
    return float(loss.detach()), grads(objective)


def test_gradcache_replays_lora_dropout(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    model = add_lora(backbone.model, LoraConfig(r=4, alpha=8, dropout=0.3, dora=True))
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero B so that dropout changes the embeddings, not only the gradients
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    objective = EmbeddingObjective(model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    chunked = ContrastiveBuilder(pre, negatives=1, chunk=3)(examples, np.random.default_rng(0))
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, 1, 3), tmp_path)

    torch.manual_seed(123)
    state = checkpoint.rng_state()
    ref_loss, g_ref = reference_grads(objective, chunked, 0.05)
    checkpoint.set_rng_state(state)
    loss = trainer.compute(chunked)["loss"]
    g_cache = grads(objective)
    assert math.isclose(loss, ref_loss, rel_tol=1e-6)
    assert_same_grads(g_ref, g_cache)
    # dropout really is active: other draws give other gradients (so the replay is what makes it exact)
    torch.manual_seed(456)
    other_loss, g_other = reference_grads(objective, chunked, 0.05)
    assert other_loss != ref_loss
    assert any(not torch.allclose(g_ref[n], g_other[n], rtol=1e-3, atol=1e-7) for n in g_ref)
