"""Each reconstruction stage's batch builder on a hand-checkable case: pretrain, warmup, bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import IGNORE_INDEX, Role
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item, TrainPair
from cocoa.model.backbone import Backbone
from cocoa.stages.bridge import BridgeBuilder, bridge_pair
from cocoa.stages.pretrain import PretrainBuilder
from cocoa.stages.warmup import WarmupBuilder

CAPTION = "a photo of a red dress on a white background next to a sneaker and a bag"


# --- stage batch builders --------------------------------------------------------------


@pytest.fixture(scope="module")
def pre(tiny_backbone: Backbone) -> Preprocessor:
    return Preprocessor(tiny_backbone, max_len=256)


def text_positions(pre: Preprocessor, ex: CaptionPair) -> tuple[list[int], list[int]]:
    enc = pre.fit(pre.item(Item(ex.caption, ex.media.image, ex.media.video)))
    return enc.ids, [i for i, p in enumerate(enc.protected) if not p]


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


def test_bridge_targets_raw_keep_the_placeholder_text_and_the_bridge_is_the_protocol_token(
        tiny_backbone: Backbone, image_dir: Path) -> None:
    text = "\n<|image_1|> a sneaker next to a bag"
    pair = TrainPair(Item("Represent the given image.", str(image_dir / "a.png")), Item(text, str(image_dir / "b.png")))
    assert bridge_pair(pair, raw=True).positive == Item(text)
    assert bridge_pair(pair).positive == Item("a sneaker next to a bag")
    release = Preprocessor(tiny_backbone, 2048, PROTOCOLS["cocoa-release"])
    seq = BridgeBuilder(release, 0.5, raw_targets=True).sequence(bridge_pair(pair, raw=True), np.random.default_rng(0))
    eos = seq.roles.index(Role.EMBEDDING)
    assert seq.ids[eos] == tiny_backbone.tokenizer.convert_tokens_to_ids("<|im_end|>")
    target = [i if label == IGNORE_INDEX else label for i, label in zip(seq.ids[eos + 1:], seq.labels[eos + 1:],
                                                                         strict=True)]
    assert target == release.text_ids(text)  # placeholder characters and the newline tokenised as text


def test_bridge_builder_eos_between_query_and_target(pre: Preprocessor, image_dir: Path) -> None:
    ids = pre.ids
    pairs = [TrainPair(query=Item("Represent the given image for classification.", str(image_dir / "a.png")),
                       positive=Item(CAPTION)),
             TrainPair(query=Item("Find me an everyday image that matches the given caption: an ankle boot"),
                       positive=Item("a sneaker next to a bag <|image_1|> on a white background",
                                     str(image_dir / "b.png")))]
    batch = BridgeBuilder(pre, 0.7)(pairs, np.random.default_rng(0))
    for row, pair in enumerate(pairs):
        roles = batch.roles[row]
        real = int((roles != Role.PAD).sum())
        eos_at = (roles == Role.EMBEDDING).nonzero().flatten().tolist()
        assert len(eos_at) == 1
        e = eos_at[0]
        assert batch.input_ids[row, e] == ids.eos
        assert torch.all(roles[:e] == Role.QUERY) and torch.all(roles[e + 1:real] == Role.TARGET)
        query = pre.item(pair.query)
        target = pre.item(pair.positive, Role.TARGET)
        assert e == len(query) and real == len(query) + 1 + len(target)
        assert batch.input_ids[row, :e].tolist() == query.ids  # the query is never masked
        labels = batch.labels[row]
        labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled and min(labelled) > e
        target_text = [e + 1 + i for i, p in enumerate(target.protected) if not p]
        assert set(labelled) <= set(target_text)
        assert len(labelled) == max(1, round(0.7 * len(target_text)))
        got = batch.input_ids[row]
        assert torch.equal((got[:real] == ids.mask), labels[:real] != IGNORE_INDEX)
        for p in labelled:
            assert int(labels[p]) == target.ids[p - e - 1]
        # image tokens and vision markers of either block stay in place
        mm = batch.mm_token_type_ids[row] == 1
        assert torch.all(got[mm] == ids.image)
        assert int((got == ids.vision_start).sum()) == 1
