"""Packed rows: the same embeddings as padded batches, packing only when it saves rows."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor, collate
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed_padded
from cocoa.model.packing import Packing, pack_rows, token_chunks
from tests.helpers import embed_all, embedding_items, make_backbone


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_packed_rows_give_the_padded_embeddings(family: str, mode: str, image_dir: Path, video_dir: Path) -> None:
    backbone = make_backbone(family)
    xs = embedding_items(image_dir, video_dir) * 2
    padded = embed_all(backbone, xs, "right", mode)
    lengths = [len(Preprocessor(backbone, 256).embedding_sequence(x)) for x in xs]
    rows = pack_rows(lengths, 2 * max(lengths))
    assert any(a > b for a, b in itertools.pairwise(rows)), "best fit moves sequences across rows"
    # one row for all, rows of a few sequences, and rows shorter than the longest sequence
    for pack_tokens in (sum(lengths), 2 * max(lengths), max(lengths) // 2):
        for side in ("right", "left"):
            torch.testing.assert_close(embed_all(backbone, xs, side, mode, pack_tokens), padded, atol=2e-5,
                                       rtol=1e-4)


def test_packing_only_when_it_saves_rows(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 256)
    seqs = [pre.embedding_sequence(x) for x in embedding_items(image_dir)]
    longest = max(len(s) for s in seqs)
    one, every = collate(seqs[:1], tiny_backbone.ids.pad), collate(seqs, tiny_backbone.ids.pad)
    assert Packing(10 * longest).rows(one) is None  # one sequence: nothing to save
    assert Packing(sum(len(s) for s in seqs)).rows(every) == [0] * len(seqs)
    assert Packing(longest // 2).rows(every) is None  # every sequence a row of its own
    assert Packing().rows(every) is None
    with torch.no_grad():  # the padded path itself, not a packed result close to it
        assert torch.equal(Packing(512).embed(tiny_backbone.model, one, PROTOCOLS["cocoa"]),
                           embed_padded(tiny_backbone.model, one))


@pytest.mark.parametrize("value", [0, 1, -3, True, 2.5])
def test_a_row_of_fewer_than_two_tokens_is_refused_everywhere(value: object, tmp_path: Path) -> None:
    from cocoa.core.errors import ConfigError
    from cocoa.pipeline.driver import EvalSection
    from cocoa.train.config import TrainConfig

    with pytest.raises(ConfigError, match="pack_tokens"):
        Packing(value)  # type: ignore[arg-type]
    for section in (lambda v: TrainConfig(output_dir=str(tmp_path), epochs=1, pack_tokens=v),
                    lambda v: EvalSection(pack_tokens=v)):
        with pytest.raises(ValueError, match=r"pack_tokens|integer"):
            section(value)
        assert section(None).pack_tokens is None and section(64).pack_tokens == 64


def _computed(lengths: list[int], rows: list[int]) -> int:
    fill = [sum(n for n, r in zip(lengths, rows, strict=True) if r == row) for row in set(rows)]
    return len(fill) * max(fill)


def test_pack_rows_best_fit() -> None:
    assert pack_rows([3, 3, 3, 5, 1], 6) == [0, 0, 1, 2, 2]
    assert pack_rows([7, 2, 9, 1], 4) == [0, 1, 2, 1]  # longer than a row: a row of its own
    assert pack_rows([2, 2, 2], 100) == [0, 0, 0]
    assert pack_rows([4, 4, 4, 4], 9) == [0, 0, 1, 1] and pack_rows([], 5) == []
    # short texts fill the rows that long image sequences leave, across the batch's order
    assert pack_rows([300, 300, 20, 20], 512) == [0, 1, 0, 1]
    # as few rows as the bin packing needs, the longest as short as it can be: 3 rows of 10, not 12 + 12 + 2
    lengths = [10, 1, 1, 1, 1, 1, 1, 10]
    assert _computed(lengths, pack_rows(lengths, 12)) == 30


def test_pack_rows_respects_capacity_and_beats_in_order_filling() -> None:
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.choice([rng.randint(5, 40), rng.randint(250, 330)]) for _ in range(rng.randint(1, 40))]
        capacity = rng.choice([64, 512, 1024])
        rows = pack_rows(lengths, capacity)
        assert sorted(set(rows)) == list(range(max(rows) + 1))
        for row in set(rows):
            members = [n for n, r in zip(lengths, rows, strict=True) if r == row]
            assert sum(members) <= capacity or len(members) == 1
        in_order, used = [], capacity
        for n in lengths:
            if used + n > capacity:
                in_order.append((in_order[-1] + 1) if in_order else 0)
                used = 0
            else:
                in_order.append(in_order[-1])
            used += n
        assert _computed(lengths, rows) <= _computed(lengths, in_order)


@pytest.mark.parametrize("pack_tokens", [None, 512])
def test_token_chunks_keep_each_chunk_within_the_budget(pack_tokens: int | None) -> None:
    rng = random.Random(1)
    lengths = [rng.choice([rng.randint(5, 40), rng.randint(250, 330)]) for _ in range(64)]
    chunks = token_chunks(lengths, 2048, pack_tokens)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(64))
    computed = 0
    for chunk in chunks:
        part = [lengths[i] for i in chunk]
        if pack_tokens is None:
            assert part == sorted(part, reverse=True) and len(part) * part[0] <= 2048
            computed += len(part) * part[0]
        else:
            rows = pack_rows(part, pack_tokens)
            assert _computed(part, rows) <= 2048
            computed += _computed(part, rows)
    # like lengths together: little padding even without packing, almost none packed
    assert sum(lengths) / computed > (0.9 if pack_tokens is None else 0.97)
    assert token_chunks([900, 10, 10], 500) == [[0], [1, 2]]  # over the budget: a chunk of its own
