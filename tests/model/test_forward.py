"""Embeddings: EOS pooling, independence from batch neighbours, padding side and batch size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoa.core.errors import DataError
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed_padded, hidden_states
from tests.helpers import embed_all, embedding_items, make_backbone


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


def test_image_tokens_are_wrapped_and_placed_at_the_placeholder(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 256)
    ids = tiny_backbone.ids
    seq = pre.item(Item("look: <|image_1|> done", str(image_dir / "c.png")))
    start = seq.ids.index(ids.vision_start)
    assert seq.ids[:start] == pre.text_ids("look: ")
    assert seq.ids[start + 1:start + 17] == [ids.image] * 16  # 112x112 -> 16 merged tokens
    assert seq.ids[start + 17] == ids.vision_end
    assert seq.ids[start + 18:] == pre.text_ids(" done")
    assert sum(seq.mm) == 16
    no_placeholder = pre.item(Item("caption", str(image_dir / "a.png")))
    assert no_placeholder.ids[0] == ids.vision_start


def test_max_len_truncates_text_but_never_image_tokens(tiny_backbone: Backbone, image_dir: Path) -> None:
    long_text = "<|image_1|> " + "a red dress on a white background " * 10
    seq = Preprocessor(tiny_backbone, 12).embedding_sequence(Item(long_text, str(image_dir / "a.png")))
    assert len(seq) == 12 and sum(seq.mm) == 4 and seq.ids[-1] == tiny_backbone.ids.eos
    with pytest.raises(DataError, match="image tokens are never truncated"):
        Preprocessor(tiny_backbone, 8).embedding_sequence(Item(long_text, str(image_dir / "c.png")))


def test_bad_items_are_clear_errors(tiny_backbone: Backbone, tmp_path: Path) -> None:
    pre = Preprocessor(tiny_backbone, 64)
    with pytest.raises(DataError, match="neither text nor image"):
        pre.embedding_sequence(Item("  "))
    with pytest.raises(DataError, match="placeholder"):
        pre.embedding_sequence(Item("<|image_1|> caption"))
    with pytest.raises(DataError, match="not found"):
        pre.embedding_sequence(Item("x", str(tmp_path / "missing.png")))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        pre.embedding_sequence(Item("x", str(broken)))
