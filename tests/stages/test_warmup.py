"""cocoa.stages.warmup: the joint-reconstruction batch's masks, deterministic given the rng."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.stages.warmup import WarmupBuilder
from tests.helpers import LONG_CAPTION as CAPTION
from tests.helpers import text_positions


@pytest.mark.parametrize("image_ratio", [0.5, 0.3])
def test_warmup_builder_masks(pre: Preprocessor, image_dir: Path, image_ratio: float) -> None:
    ids = pre.ids
    examples = [CaptionPair(media=Item(image=str(image_dir / f"{n}.png")), caption=CAPTION[: 20 + 15 * i])
                for i, n in enumerate("abcd")]
    batch = WarmupBuilder(pre, 0.2, image_ratio)(examples, np.random.default_rng(3))
    for row, ex in enumerate(examples):
        orig, text = text_positions(pre, ex)
        got = batch.input_ids[row, : len(orig)]
        labels = batch.labels[row, : len(orig)]
        is_mask = got == ids.mask
        # masked tokens are exactly the labelled ones, and only text positions
        assert torch.equal(is_mask, labels != IGNORE_INDEX)
        masked_at = is_mask.nonzero().flatten().tolist()
        assert set(masked_at) <= set(text)
        assert len(masked_at) == max(1, round(0.2 * len(text)))
        # labels hold the originals; unmasked positions keep their ids
        assert all(int(labels[p]) == orig[p] for p in masked_at)
        assert all(int(got[p]) == orig[p] for p in range(len(orig)) if p not in masked_at)
        # image tokens and vision start/end are never masked
        mm = batch.mm_token_type_ids[row, : len(orig)] == 1
        assert mm.sum() > 0 and torch.all(got[mm] == ids.image)
        assert (got == ids.vision_start).sum() == 1 and (got == ids.vision_end).sum() == 1
    n_image = int(batch.mm_token_type_ids.sum())
    assert batch.image_token_mask is not None and batch.image_token_mask.dtype == torch.bool
    assert batch.image_token_mask.shape == (n_image,)
    assert int(batch.image_token_mask.sum()) == round(image_ratio * n_image)


def test_warmup_builder_deterministic_given_rng(pre: Preprocessor, image_dir: Path) -> None:
    examples = [CaptionPair(media=Item(image=str(image_dir / "c.png")), caption=CAPTION)]
    builder = WarmupBuilder(pre, 0.2, 0.5)
    a, b = builder(examples, np.random.default_rng(5)), builder(examples, np.random.default_rng(5))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.image_token_mask, b.image_token_mask)
