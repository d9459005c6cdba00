"""cocoa.stages.pretrain: stage 0's batch labels, and its loss falling over a few dozen steps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.stages.pretrain import PretrainBuilder
from tests.helpers import LONG_CAPTION as CAPTION
from tests.helpers import PRETRAIN_STEPS, read_metrics, text_positions


def test_pretrain_builder_labels_caption_and_eos(pre: Preprocessor, image_dir: Path) -> None:
    ex = CaptionPair(media=Item(image=str(image_dir / "a.png")), caption=CAPTION)
    batch = PretrainBuilder(pre)([ex], np.random.default_rng(0))
    ids, text = text_positions(pre, ex)
    labels = batch.labels[0]
    assert batch.input_ids[0, : len(ids)].tolist() == ids
    assert batch.input_ids[0, len(ids)] == pre.ids.eos
    labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labelled == [*text, len(ids)]
    assert labels[len(ids)] == pre.ids.eos


def test_pretrain_loss_decreases(pretrained: Path) -> None:
    losses = [m["loss"] for m in read_metrics(pretrained)]
    assert [m["step"] for m in read_metrics(pretrained)] == list(range(1, PRETRAIN_STEPS + 1))
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first - 1.0, losses
