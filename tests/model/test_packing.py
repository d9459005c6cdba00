"""Packed rows: the same embeddings as padded batches, packing only when it saves rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoa.data.collate import Preprocessor, collate
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed
from cocoa.model.packing import embed_packed, pack_rows, packs
from tests.helpers import embed_all, embedding_items, make_backbone


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_packed_rows_give_the_padded_embeddings(family: str, mode: str, image_dir: Path, video_dir: Path) -> None:
    backbone = make_backbone(family)
    xs = embedding_items(image_dir, video_dir) * 2
    padded = embed_all(backbone, xs, "right", mode)
    lengths = [len(Preprocessor(backbone, 256).embedding_sequence(x)) for x in xs]
    # one row for all, rows of a few sequences, and rows shorter than the longest sequence
    for pack_tokens in (sum(lengths), 2 * max(lengths), max(lengths) // 2):
        for side in ("right", "left"):
            torch.testing.assert_close(embed_all(backbone, xs, side, mode, pack_tokens), padded, atol=2e-5,
                                       rtol=1e-4)


def test_packing_only_when_it_saves_rows(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 256)
    seqs = [pre.embedding_sequence(x) for x in embedding_items(image_dir)]
    longest = max(len(s) for s in seqs)
    assert not packs(collate(seqs[:1], tiny_backbone.ids.pad), 10 * longest)  # one sequence: nothing to save
    assert packs(collate(seqs, tiny_backbone.ids.pad), sum(len(s) for s in seqs))
    assert not packs(collate(seqs, tiny_backbone.ids.pad), longest // 2)  # every sequence a row of its own
    batch = collate(seqs[:1], tiny_backbone.ids.pad)
    with torch.no_grad():  # the padded path itself, not a packed result close to it
        assert torch.equal(embed_packed(tiny_backbone.model, batch, "bidirectional", 512),
                           embed(tiny_backbone.model, batch))


def test_pack_rows_fills_rows_in_order() -> None:
    assert pack_rows([3, 3, 3, 5, 1], 6) == [0, 0, 1, 2, 2]
    assert pack_rows([7, 2, 9, 1], 4) == [0, 1, 2, 3]  # longer than a row: a row of its own
    assert pack_rows([2, 2, 2], 100) == [0, 0, 0]
    # as few rows as greedy filling needs, the longest as short as it can be: [10 | 1 x 6 | 10], not [10, 1, 1 | ... 10]
    assert pack_rows([10, 1, 1, 1, 1, 1, 1, 10], 12) == [0, 1, 1, 1, 1, 1, 1, 2]
    assert pack_rows([4, 4, 4, 4], 9) == [0, 0, 1, 1] and pack_rows([], 5) == []
