"""cocoa.inference.embedder: the encode API agrees with BatchEncoder.encode_items on every input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cocoa.core.errors import DataError
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.inference.embedder import Embedder, with_instruction
from tests.helpers import inference_app as _cli


def test_encode_equals_encode_items_in_order(embedder: Embedder, image_dir: Path) -> None:
    pil = Image.open(image_dir / "c.png").convert("RGB")
    inputs = ["a photo of a red dress on a white background " * 6, "boot", image_dir / "a.png", pil,
              {"text": "what is in the image?", "image": str(image_dir / "d.png")}, {"text": "a sneaker"}]
    items = [Item(inputs[0]), Item("boot"), Item("", str(image_dir / "a.png")), Item("", pil),
             Item("what is in the image?", str(image_dir / "d.png")), Item("a sneaker")]
    got = embedder.encode(inputs, batch_size=2)
    want = embedder.encoder.encode_items(items, batch_size=2)
    assert got.dtype == np.float32 and got.shape == (6, embedder.dim)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([embedder.encode(x) for x in inputs])
    np.testing.assert_allclose(singles, got, atol=1e-5)
    seqs = [embedder.encoder.preprocessor.embedding_sequence(item) for item in items]
    np.testing.assert_allclose(embedder.encoder.encode_sequences(seqs, batch_size=4), want, atol=1e-5)


def test_videos_encode_as_items_from_the_api_and_the_command_line(embedder: Embedder, model_dir: Path,
                                                                 video_dir: Path, tmp_path: Path) -> None:
    frames = [str(p) for p in sorted((video_dir / "clip").iterdir(), key=lambda p: int(p.stem.split("_")[1]))]
    inputs = [{"video": video_dir / "clip"}, {"text": "what happens?", "video": frames},
              {"video": str(video_dir / "clip.mp4")}]
    items = [Item("", video=str(video_dir / "clip")), Item("what happens?", video=tuple(frames)),
             Item("", video=str(video_dir / "clip.mp4"))]
    got = embedder.encode(inputs)
    np.testing.assert_allclose(got, embedder.encoder.encode_items(items), atol=1e-6)
    np.testing.assert_allclose(embedder.encode({"video": frames}), got[:1], atol=1e-6)  # a folder = its frames
    assert embedder.encode({"video": frames}, instruction="Go.").shape == (1, embedder.dim)
    with pytest.raises(DataError, match="video frame folder not found") as info:
        embedder.encode([{"text": "ok"}, {"video": tmp_path / "none"}])
    assert "row 2" in str(info.value) and "field 'video'" in str(info.value)
    data = tmp_path / "videos.jsonl"
    data.write_text(json.dumps({"id": "v", "video": str(video_dir / "clip")}) + "\n"
                    + json.dumps({"video": [], "text": "x"}) + "\n")
    encode = ["encode", "--model", str(model_dir), "--input", str(data), "--out", str(tmp_path / "v.npy")]
    result = CliRunner().invoke(_cli(), [*encode, "--allow-outside-paths"])
    assert result.exit_code == 1 and "line 2" in result.output and "field 'video'" in result.output
    data.write_text(json.dumps({"id": "v", "video": str(video_dir / "clip")}) + "\n")
    refused = CliRunner().invoke(_cli(), encode)  # an absolute path outside the input's folder
    assert refused.exit_code == 1 and "leads outside" in refused.output and "line 1" in refused.output
    result = CliRunner().invoke(_cli(), [*encode, "--allow-outside-paths"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), got[:1], atol=1e-6)


def test_strings_are_text_never_paths(embedder: Embedder, image_dir: Path) -> None:
    path = str(image_dir / "a.png")
    np.testing.assert_allclose(embedder.encode(path), embedder.encoder.encode_items([Item(path)]), atol=1e-6)


def test_instruction_format(embedder: Embedder, image_dir: Path) -> None:
    assert with_instruction("a cat", "Find the image.", placeholder=None) == "Find the image.\na cat"
    assert with_instruction("", "Classify.", placeholder=IMAGE_PLACEHOLDER) == f"{IMAGE_PLACEHOLDER} Classify."
    assert with_instruction("q", "Answer.", placeholder=IMAGE_PLACEHOLDER) == f"{IMAGE_PLACEHOLDER} Answer.\nq"
    assert with_instruction(f"x {IMAGE_PLACEHOLDER} y", "I.", placeholder=IMAGE_PLACEHOLDER) == f"I.\nx {IMAGE_PLACEHOLDER} y"
    image = str(image_dir / "b.png")
    got = embedder.encode(["a cat", image_dir / "b.png"], instruction="Find it.")
    want = embedder.encoder.encode_items([Item("Find it.\na cat"), Item(f"{IMAGE_PLACEHOLDER} Find it.", image)])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_properties_and_empty(embedder: Embedder) -> None:
    assert embedder.dim == embedder.encoder.backbone.hidden_size
    assert embedder.fingerprint == embedder.encoder.fingerprint()
    assert embedder.encode([]).shape == (0, embedder.dim)


@pytest.mark.parametrize(("value", "message"), [
    ({"text": "x", "img": "a.png"}, "unknown keys"),
    ({"text": 3}, "text must be a string"),
    ("   ", "neither text nor image"),
    ({"image": 5}, "image must be a PIL image or a path"),
    (Path("/nonexistent/image.png"), "cannot read image"),
    (3.5, "unsupported input type"),
])
def test_bad_inputs(embedder: Embedder, value: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        embedder.encode(["fine", value])  # type: ignore[list-item]
