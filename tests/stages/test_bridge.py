"""cocoa.stages.bridge: the EOS-bridged batch, raw targets, and training after video queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import IGNORE_INDEX, Role
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item, TrainPair
from cocoa.model.backbone import Backbone
from cocoa.pipeline.train_stage import train_stage
from cocoa.stages.bridge import BridgeBuilder, bridge_pair
from tests.helpers import LONG_CAPTION as CAPTION
from tests.helpers import VIDEO_PAIR_ROWS as ROWS
from tests.helpers import make_backbone, read_metrics, tiny_recipe
from tests.helpers import write_video_pairs as write_pairs


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


def test_bridge_stage_reconstructs_targets_after_video_queries(video_dir: Path, tmp_path: Path) -> None:
    start = make_backbone().save(tmp_path / "start")
    root = write_pairs(tmp_path / "data", ROWS)
    out = tmp_path / "run"
    recipe = tiny_recipe("bridge", root, out, f"model.path={start}", f"data.images={video_dir}",
                         f"data.corpus={root}", "data.max_len=512", "protocol.video.frames=4", steps=2, batch=2)
    assert train_stage(recipe).steps == 2
    assert all(m["loss"] > 0 for m in read_metrics(out) if "loss" in m)
