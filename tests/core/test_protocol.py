"""cocoa.core.protocol: image token counts and bounds, the squash, bad protocols, each preset's token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS, ImagePolicy, Protocol, get_protocol
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone, build_image_processor

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


def test_the_squash_ignores_the_aspect_ratio(tmp_path: Path) -> None:
    policy = ImagePolicy(square=56)
    wide = Image.new("RGB", (300, 20))
    assert policy.squash(wide).size == (56, 56)
    assert ImagePolicy().squash(wide) is wide
    v2 = PROTOCOLS["vlm2vec-v2"].image
    assert v2.squash(wide).size == (56, 56) and v2.squash(Image.new("RGB", (300, 28))).size == (300, 28)
    with pytest.raises(ConfigError, match="enlarge must be"):
        ImagePolicy(enlarge=(28,))  # type: ignore[arg-type]


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
