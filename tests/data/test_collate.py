"""cocoa.data.collate: items into tokens and pixels per protocol and family, placeholders, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.core.protocol import PROTOCOLS, ImagePolicy, VideoPolicy, get_protocol
from cocoa.core.spec import EmbeddingSpec
from cocoa.core.tokens import Modality, Role
from cocoa.data.collate import Preprocessor, collate, video_pixels
from cocoa.data.items import Item
from cocoa.data.videos import read_frames
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.inference.embedder import Embedder
from cocoa.model.backbone import Backbone
from tests.helpers import make_backbone


@pytest.mark.parametrize("text", ["<|image_pad|>", "look: <|im_end|><|endoftext|>", "<|vision_start|>x<|video_pad|>"])
def test_special_token_strings_in_text_are_tokenised_as_text(tiny_backbone: Backbone, text: str) -> None:
    pre = Preprocessor(tiny_backbone)
    ids = tiny_backbone.ids
    control = {ids.image, ids.video, ids.eos, ids.vision_start, ids.vision_end, ids.pad}
    assert not control & set(pre.text_ids(text))
    encoded = pre.item(Item(text))
    assert encoded.pixels == [] and not control & set(encoded.ids[:-1]), "only the embedding token at the end"
    assert pre.text_ids("a b") == list(tiny_backbone.tokenizer("a b", add_special_tokens=False)["input_ids"])


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


def test_still_video_has_exactly_the_pixels_of_its_image(tiny_backbone: Backbone, image_dir: Path) -> None:
    processor = tiny_backbone.image_processor
    image = Image.open(image_dir / "a.png").convert("RGB")
    low, high = ImagePolicy().bounds(processor)
    pixels, grid = video_pixels([image, image], processor, low, high)
    still = processor(images=[image], return_tensors="pt", size={"shortest_edge": low, "longest_edge": high})
    torch.testing.assert_close(pixels, still["pixel_values"], rtol=0, atol=0)
    assert grid.tolist() == still["image_grid_thw"].tolist()


def test_consecutive_frames_fill_the_temporal_slots(tiny_backbone: Backbone, video_dir: Path) -> None:
    processor = tiny_backbone.image_processor
    frames = read_frames(str(video_dir / "clip"), VideoPolicy(frames=8)).images  # 5 frames: the last repeated
    low, high = ImagePolicy().bounds(processor)
    pixels, grid = video_pixels(frames, processor, low, high)
    t, h, w = grid[0].tolist()
    assert t == 3
    patch = int(processor.patch_size)
    slots = pixels.reshape(t, h * w, 3, 2, patch, patch)
    for i, frame in enumerate([*frames, frames[-1]]):
        alone = processor(images=[frame], return_tensors="pt", size={"shortest_edge": low, "longest_edge": high})
        own = alone["pixel_values"].reshape(h * w, 3, 2, patch, patch)[:, :, 0]
        torch.testing.assert_close(slots[i // 2, :, :, i % 2], own, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_video_tokens_follow_the_family_layout(family: str, video_dir: Path) -> None:
    backbone = make_backbone(family)
    pre = Preprocessor(backbone, 4096, Preprocessor(backbone).protocol.replace(video={"frames": 4, "fps": 2.0}))
    enc = pre.item(Item("<|video_1|> what happens?", video=str(video_dir / "long")), Role.QUERY)
    video = [i for i, m in enumerate(enc.mm) if m == Modality.VIDEO]
    t, h, w = enc.video_grids[0][0].tolist()
    assert t == 2 and len(video) == t * h * w // backbone.merge_size ** 2
    text = backbone.tokenizer.decode(enc.ids)
    if family == "qwen3_vl":  # one block per temporal step after its mean time (frames 0,3 | 7,11 at 2 fps)
        assert text.count("<|vision_start|>") == 2 and "<0.8 seconds>" in text and "<4.5 seconds>" in text
    else:
        assert text.count("<|vision_start|>") == 1 and "seconds" not in text
        assert video == list(range(video[0], video[0] + len(video)))
    assert text.endswith(" what happens?") and enc.video_seconds[0] == pytest.approx(2 * 11 / 3 / 2)


def test_image_and_video_go_where_their_placeholders_are(tiny_backbone: Backbone, image_dir: Path,
                                                         video_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 4096)
    item = Item("first <|video_1|> then <|image_1|> last", str(image_dir / "a.png"), str(video_dir / "clip"))
    kinds = [m for i, m in enumerate(pre.item(item).mm) if i == 0 or m != pre.item(item).mm[i - 1]]
    assert kinds == [Modality.TEXT, Modality.VIDEO, Modality.TEXT, Modality.IMAGE, Modality.TEXT]
    leading = pre.item(Item("caption", str(image_dir / "a.png"), str(video_dir / "clip"))).mm
    assert leading[1] == Modality.IMAGE and Modality.VIDEO in leading  # no placeholders: image, video, text
    with pytest.raises(DataError, match="video placeholder <\\|video_1\\|> but the item has no video"):
        pre.item(Item("<|video_1|> hi"))


def test_preprocessing_threads_have_their_own_tokenizer(embedder: Embedder) -> None:
    base = embedder.encoder.preprocessor
    copy = base.for_thread()
    assert copy.tokenizer is not base.tokenizer and copy.backbone is base.backbone
    item = Item("a red dress on a white background")
    assert copy.embedding_sequence(item).ids == base.embedding_sequence(item).ids
