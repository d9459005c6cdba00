"""Embedding protocols: image sizes and token counts, layout, embedding token, pooling, positions, records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS, ImagePolicy, Protocol, get_protocol
from cocoa.core.spec import EmbeddingSpec
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.backbone import Backbone, build_image_processor
from cocoa.model.forward import hidden_states, pool, position_ids
from cocoa.model.packing import Packing
from tests.helpers import make_backbone

#: The processor bounds of a Qwen2-VL checkpoint (preprocessor_config.json of Qwen2-VL-2B-Instruct), which the
#: squashing presets meet as they are.
QWEN2_VL = build_image_processor(min_pixels=3136, max_pixels=12845056)

# (width, height) -> merged image tokens, computed by hand: squash, then smart_resize on multiples of 28.
# cocoa-release: 672x672 = 24 x 24 merge windows of 28 -> 576. vlm2vec-v1 low/mid/high: 128 -> rounded to
# 140 = 5 x 5 = 25, 672 -> 576, 1344 -> 48 x 48 = 2304. vlm2vec-v2 (max 1280 tokens): 1700x2200 is over the cap, so it is
# scaled by sqrt(1700 * 2200 / 1003520) = 1.9305 and floored: 2200 -> 1120 (40), 1700 -> 868 (31), 1240
# tokens; 224x224 -> 8 x 8 = 64; 100x60 -> round to 112x56 -> 4 x 2 = 8; 2000x20 has a side under 28, so
# it is squashed to 56x56 first -> 2 x 2 = 4; 2000x28 -> 1988x28, under the cap -> 71 x 1 = 71.
EXPECTED_TOKENS = {
    "cocoa-release": {(1700, 2200): 576, (224, 224): 576, (100, 60): 576, (2000, 20): 576},
    "vlm2vec-v1-low": {(1700, 2200): 25, (224, 224): 25, (100, 60): 25, (2000, 20): 25},
    "vlm2vec-v1-mid": {(1700, 2200): 576, (224, 224): 576, (100, 60): 576, (2000, 20): 576},
    "vlm2vec-v1-high": {(1700, 2200): 2304, (224, 224): 2304, (100, 60): 2304, (2000, 20): 2304},
    "vlm2vec-v1": {(1700, 2200): 2304, (224, 224): 2304, (100, 60): 2304, (2000, 20): 2304},
    "vlm2vec-v2": {(1700, 2200): 1240, (224, 224): 64, (100, 60): 8, (2000, 20): 4, (2000, 28): 71},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TOKENS))
def test_image_token_counts_match_hand_computed_values(name: str) -> None:
    policy = get_protocol(name).image
    for (width, height), tokens in EXPECTED_TOKENS[name].items():
        assert policy.tokens(width, height, QWEN2_VL) == tokens, (name, width, height)


def test_cocoa_release_and_vlm2vec_v1_use_the_checkpoints_own_bounds() -> None:
    tiny = build_image_processor()  # 1 to 36 tokens
    policy = PROTOCOLS["cocoa"].image
    assert policy.bounds(tiny) == (28 * 28, 168 * 168)
    # 1700x2200 over 168x168 of area: scaled by sqrt(1700 * 2200 / 28224) = 11.51 -> 168 x 140 -> 6 x 5
    assert policy.tokens(1700, 2200, tiny) == 30
    assert policy.tokens(1700, 2200, QWEN2_VL) == 61 * 79  # under the 12.8M cap: 1708 x 2212
    # the release and VLM2Vec v1 read the checkpoint's processor too: a 672 square meets the tiny cap, 168 x 168
    for name in ("cocoa-release", "vlm2vec-v1-mid"):
        assert PROTOCOLS[name].image.tokens(1700, 2200, tiny) == 36
    assert PROTOCOLS["vlm2vec-v2"].image.tokens(1700, 2200, tiny) == 1240  # v2 passes its own bounds


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return make_backbone()


@pytest.mark.parametrize("name", ["cocoa", "cocoa-release", "vlm2vec-v1-low", "vlm2vec-v2"])
def test_preprocessor_follows_the_policy_layout_and_embedding_token(backbone: Backbone, name: str,
                                                                   tmp_path: Path) -> None:
    protocol = get_protocol(name)
    path = tmp_path / "page.png"
    Image.new("RGB", (170, 220), (30, 90, 150)).save(path)
    item = Item("Represent the given document.", str(path))  # image first: no placeholder in the length
    seq = Preprocessor(backbone, 8192, protocol).embedding_sequence(item)
    tokens = protocol.image.tokens(170, 220, backbone.image_processor)
    assert sum(seq.mm) == tokens
    grid = seq.grids[0][0].tolist()
    assert grid[1] * grid[2] // 4 == tokens
    ids, image = backbone.ids, backbone.ids.image
    first = seq.ids.index(image)
    if protocol.image_tokens == "vision_block":
        assert seq.ids[first - 1] == ids.vision_start and seq.ids[first + tokens] == ids.vision_end
    else:
        assert ids.vision_start not in seq.ids and ids.vision_end not in seq.ids
    if protocol.embedding_token is None:
        assert Role.EMBEDDING not in seq.roles and seq.ids[-1] != ids.eos
    else:
        assert seq.ids[-1] == backbone.tokenizer.convert_tokens_to_ids(protocol.embedding_token)
        assert seq.roles[-1] == Role.EMBEDDING
    encoder = BatchEncoder(backbone, EmbeddingSpec(protocol, 8192))
    assert encoder.item_length(item) == len(seq)


def test_the_squash_ignores_the_aspect_ratio(tmp_path: Path) -> None:
    policy = ImagePolicy(square=56)
    wide = Image.new("RGB", (300, 20))
    assert policy.squash(wide).size == (56, 56)
    assert ImagePolicy().squash(wide) is wide
    v2 = PROTOCOLS["vlm2vec-v2"].image
    assert v2.squash(wide).size == (56, 56) and v2.squash(Image.new("RGB", (300, 28))).size == (300, 28)
    with pytest.raises(ConfigError, match="enlarge must be"):
        ImagePolicy(enlarge=(28,))  # type: ignore[arg-type]


def test_pooled_position_is_the_embedding_token_or_the_last_real_one(backbone: Backbone) -> None:
    items = [Item("a photo of a red dress"), Item("an ankle boot")]
    for protocol, offset in ((PROTOCOLS["cocoa"], 0), (PROTOCOLS["vlm2vec-v2"], 0)):
        pre = Preprocessor(backbone, 64, protocol)
        seqs = [pre.embedding_sequence(item) for item in items]
        batch = collate(seqs, backbone.ids.pad)
        assert batch.pool_index.tolist() == [len(s) - 1 - offset for s in seqs]
    plain = [Preprocessor(backbone, 64, PROTOCOLS["vlm2vec-v2"]).embedding_sequence(i) for i in items]
    with_eos = [Preprocessor(backbone, 64, PROTOCOLS["cocoa"]).embedding_sequence(i) for i in items]
    assert [len(a) + 1 for a in plain] == [len(b) for b in with_eos]


def test_mean_pooling_averages_the_real_tokens(backbone: Backbone) -> None:
    pre = Preprocessor(backbone, 64, PROTOCOLS["cocoa"].replace(pooling="mean"))
    batch = collate([pre.embedding_sequence(Item("a photo of a red dress")),
                     pre.embedding_sequence(Item("boot"))], backbone.ids.pad)
    with torch.no_grad():
        hidden = hidden_states(backbone.model, batch, "bidirectional")
        got = Packing(8).embed(backbone.model, batch, PROTOCOLS["cocoa"].replace(pooling="mean"))
    lengths = (batch.roles != Role.PAD).sum(1).tolist()
    for row, n in enumerate(lengths):
        want = torch.nn.functional.normalize(hidden[row, :n].mean(0), dim=-1)
        torch.testing.assert_close(got[row], want)
    torch.testing.assert_close(pool(hidden, batch, "mean"), got)


def test_sequential_positions_run_over_image_tokens(backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(backbone, 256, PROTOCOLS["vlm2vec-v1-low"].replace(image=ImagePolicy()))
    batch = collate([pre.embedding_sequence(Item("<|image_1|> classify", str(image_dir / "c.png"))),
                     pre.embedding_sequence(Item("short"))], backbone.ids.pad)
    seq = position_ids(backbone.model, batch, "sequential")
    lengths = (batch.roles != Role.PAD).sum(1).tolist()
    for row, n in enumerate(lengths):
        assert seq[:, row, :n].tolist() == [list(range(n))] * 3
    grid = position_ids(backbone.model, batch, "grid")
    assert not torch.equal(grid[:, 0, :lengths[0]], seq[:, 0, :lengths[0]])  # 2-D on the image grid


def test_sequential_positions_change_the_embedding_of_image_items_only(backbone: Backbone, image_dir: Path) -> None:
    items = [Item("<|image_1|> classify", str(image_dir / "c.png")), Item("a text only")]
    base = PROTOCOLS["cocoa"].replace(image_tokens="bare")
    grid = BatchEncoder(backbone, EmbeddingSpec(base)).encode_items(items)
    sequential = BatchEncoder(backbone, EmbeddingSpec(base.replace(positions="sequential"))).encode_items(items)
    assert abs(grid[0] - sequential[0]).max() > 1e-3
    assert abs(grid[1] - sequential[1]).max() < 1e-5


def test_spec_records_the_protocol_and_reads_older_files(tmp_path: Path) -> None:
    protocol = PROTOCOLS["cocoa-release"].replace(embedding_token="<|im_end|>", attention="causal")
    EmbeddingSpec(protocol, 512).save(tmp_path)
    saved = json.loads((tmp_path / "cocoa.json").read_text())
    assert saved["protocol"]["name"] == "cocoa-release" and saved["protocol"]["embedding_token"] == "<|im_end|>"
    assert saved["protocol"]["image"] == {"square": 672, "min_pixels": None, "max_pixels": None, "enlarge": None}
    assert EmbeddingSpec.load(tmp_path) == EmbeddingSpec(protocol, 512)
    EmbeddingSpec(PROTOCOLS["vlm2vec-v2"]).save(tmp_path)  # enlarge goes to JSON as a list
    assert EmbeddingSpec.load(tmp_path).protocol == PROTOCOLS["vlm2vec-v2"]
    (tmp_path / "cocoa.json").write_text(json.dumps({"attention": "causal", "max_len": 128}))
    old = EmbeddingSpec.load(tmp_path)
    assert old.protocol == PROTOCOLS["cocoa"].replace(attention="causal") and old.max_len == 128
    (tmp_path / "cocoa.json").write_text(json.dumps({"protocol": {**protocol.to_dict(), "pool": "x"}}))
    with pytest.raises(ConfigError, match=r"cocoa.json: protocol: unknown protocol keys \['pool'\]"):
        EmbeddingSpec.load(tmp_path)


def test_bad_protocols_are_refused(backbone: Backbone) -> None:
    with pytest.raises(ConfigError, match="unknown protocol 'vlm3vec'; choose one of cocoa, cocoa-release"):
        get_protocol("vlm3vec")
    with pytest.raises(ConfigError, match="pooling must be one of"):
        Protocol("x", pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_pixels 10 is over max_pixels 5"):
        ImagePolicy(min_pixels=10, max_pixels=5)
    with pytest.raises(ConfigError, match=re.escape("appends '<|nope|>', which the tokenizer does not have")):
        Preprocessor(backbone, 64, PROTOCOLS["cocoa"].replace(embedding_token="<|nope|>"))


def test_every_preset_appends_a_token_the_qwen_tokenizers_have(backbone: Backbone) -> None:
    tokenizer = backbone.tokenizer
    for protocol in PROTOCOLS.values():
        if protocol.embedding_token is None:
            continue
        token = tokenizer.convert_tokens_to_ids(protocol.embedding_token)
        assert token is not None and token != tokenizer.unk_token_id, protocol.name
        assert Preprocessor(backbone, 64, protocol).embedding_sequence(Item("x")).ids[-1] == token, protocol.name
