"""cocoa.model.forward: embeddings free of neighbours and padding, pooling, positions, image features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoa.core.batch import Batch
from cocoa.core.protocol import PROTOCOLS, ImagePolicy
from cocoa.core.spec import EmbeddingSpec
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.losses.mae import MAEHead
from cocoa.model.backbone import Backbone
from cocoa.model.forward import (
    ImageFeatures,
    ImageTransform,
    embed_padded,
    hidden_states,
    pool,
    position_ids,
    vl_model,
)
from cocoa.model.packing import Packing
from tests.helpers import FAMILIES, embed_all, embedding_items, make_backbone


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_embedding_independent_of_neighbours_padding_and_batch_size(family: str, mode: str, image_dir: Path,
                                                                    video_dir: Path) -> None:
    backbone = make_backbone(family)
    xs = embedding_items(image_dir, video_dir)
    alone = torch.cat([embed_all(backbone, [x], "right", mode) for x in xs])
    for side in ("right", "left"):
        torch.testing.assert_close(embed_all(backbone, xs, side, mode), alone, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(embed_all(backbone, xs[::-1], side, mode), alone.flip(0), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(embed_all(backbone, xs[1:4], side, mode), alone[1:4], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_still_video_embeds_as_its_image(family: str, image_dir: Path, video_dir: Path) -> None:
    """Two equal frames are one temporal patch of that frame: the upstream video path gives the image's
    features and positions, so only the placeholder differs (Qwen3-VL adds the timestamp text)."""
    backbone = make_backbone(family)
    still = embed_all(backbone, [Item("<|video_1|> what is this?", video=str(video_dir / "still"))], "right")
    image = embed_all(backbone, [Item("<|image_1|> what is this?", str(image_dir / "a.png"))], "right")
    torch.testing.assert_close(still, image, atol=1e-5, rtol=1e-4)
    moving = embed_all(backbone, [Item("<|video_1|> what is this?", video=str(video_dir / "clip"))], "right")
    assert (moving - image).abs().max() > 1e-3


def test_embedding_is_normalised_post_norm_state_at_the_eos(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 256)
    seq = pre.embedding_sequence(embedding_items(image_dir)[0])
    assert seq.ids[-1] == tiny_backbone.ids.eos and seq.roles[-1] == Role.EMBEDDING
    batch = collate([seq], tiny_backbone.ids.pad)
    with torch.no_grad():
        hidden = hidden_states(tiny_backbone.model, batch, "bidirectional")
        vec = embed_padded(tiny_backbone.model, batch)
        norm = tiny_backbone.model.model.language_model.norm
        eos = len(seq) - 1
        expected = hidden[0, eos] / hidden[0, eos].norm()
    assert int(batch.pool_index[0]) == eos
    torch.testing.assert_close(vec[0], expected)
    assert torch.isclose(vec.norm(), torch.tensor(1.0))
    assert norm.weight.shape[0] == tiny_backbone.hidden_size


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


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_image_tokens_pass_none_of_their_pixels_to_the_lm(family: str, image_dir: Path) -> None:
    """Stage 1's masking: an image whose merged tokens are all hidden cannot move any state.

    For Qwen3-VL this needs the DeepStack features of hidden tokens zeroed too: masking only
    the merged tokens still lets the pixels in through the early decoder layers.
    """
    backbone = make_backbone(family)
    pre = Preprocessor(backbone, 128)
    seq = pre.embedding_sequence(Item("<|image_1|> a photo", str(image_dir / "a.png")))
    batch = collate([seq], pre.ids.pad)
    noisy = Batch(**{**batch.__dict__, "pixel_values": batch.pixel_values + 1.0})
    flags = torch.ones(int((batch.mm_token_type_ids == 1).sum()), dtype=torch.bool)
    mask = MAEHead(backbone.hidden_size, 8).mask

    def moved(transform: ImageTransform | None) -> float:
        with torch.no_grad():
            a, b = (hidden_states(backbone.model, x, "bidirectional", image_transform=transform)
                    for x in (batch, noisy))
        return float((a - b).abs().max())

    assert moved(None) > 1e-3
    assert moved(lambda f: f.hide(flags, mask)) == 0.0
    tokens_only = moved(lambda f: ImageFeatures(mask(f.tokens, flags), f.deepstack))
    assert (tokens_only > 1e-3) == (family == "qwen3_vl")


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_mode_is_the_upstream_models_own_forward(family: str, image_dir: Path) -> None:
    """Image features, 4-D mask, explicit M-RoPE positions and DeepStack: the upstream causal forward."""
    backbone = make_backbone(family)
    pre = Preprocessor(backbone, 128)
    xs = [Item("<|image_1|> what is in the corner?", str(image_dir / "d.png")), Item("a red dress")]
    batch = collate([pre.embedding_sequence(x) for x in xs], pre.ids.pad)
    with torch.no_grad():
        ours = hidden_states(backbone.model, batch, "causal")
        upstream = vl_model(backbone.model)(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw, mm_token_type_ids=batch.mm_token_type_ids, use_cache=False)
    real = batch.roles != Role.PAD
    torch.testing.assert_close(ours[real], upstream.last_hidden_state[real], atol=1e-5, rtol=1e-4)
