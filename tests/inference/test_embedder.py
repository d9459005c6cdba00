"""The encode API and `cocoa encode` agree with the evaluator's BatchEncoder.encode_items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError, DataError, ItemError
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.inference.cli import encode
from cocoa.inference.embedder import Embedder, with_instruction


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Embedder.from_pretrained(model_dir, device="cpu")


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


def test_item_length_tokenises_each_distinct_text_once(embedder: Embedder, image_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, text = embedder.encoder, "a text only this test measures"
    tokenise = encoder.preprocessor.text_ids
    calls: list[str] = []
    monkeypatch.setattr(encoder.preprocessor, "text_ids", lambda t: calls.append(t) or tokenise(t))
    plain = encoder.item_length(Item(text))
    assert plain == len(tokenise(text)) + 1
    assert encoder.item_length(Item(text, str(image_dir / "a.png"))) > plain == encoder.item_length(Item(text))
    assert calls == [text]


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


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("encode")(encode)
    app.command("noop")(lambda: None)
    return app


def test_cli_encode_npy_and_parquet(embedder: Embedder, model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": "t", "text": "a sneaker next to a bag"}, {"id": 7, "image": "a.png"},
            {"text": "what is this?", "image": str(image_dir / "d.png")}]
    data = image_dir / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    want = embedder.encode([{"text": "a sneaker next to a bag"}, image_dir / "a.png",
                            {"text": "what is this?", "image": image_dir / "d.png"}], instruction="Go.")
    runner = CliRunner()
    for out in (tmp_path / "e.npy", tmp_path / "e.parquet"):
        result = runner.invoke(_cli(), ["encode", "--model", str(model_dir), "--input", str(data),
                                        "--out", str(out), "--batch-size", "2", "--instruction", "Go."])
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), want, atol=1e-6)
    table = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert table["id"] == ["t", "7", "3"]
    np.testing.assert_allclose(np.array(table["embedding"]), want, atol=1e-6)


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "invalid JSON"),
    ('["a"]', "must be a JSON object"),
    ('{"text": 5}', "field 'text'"),
    ('{"image": "missing.png"}', "image file not found"),
    ('{"id": 1}', "neither text nor image"),
    ('{"txt": "hello"}', "its keys ['txt'] are kept as payload"),
    ('{"text": "a\\ud800"}', "lone surrogate"),
    ('{"image": "thin.png"}', "aspect ratio over 200:1"),
    ('{"text": "b", "image": "cut.png"}', "image file is truncated"),  # the header reads, the pixels do not
])
@pytest.mark.parametrize("out", ["o.npy", "shards"])
def test_cli_encode_bad_rows_name_line(model_dir: Path, image_dir: Path, tmp_path: Path, line: str, message: str,
                                       out: str) -> None:
    data = tmp_path / "in.jsonl"
    Image.new("RGB", (2, 500)).save(tmp_path / "thin.png")
    (tmp_path / "cut.png").write_bytes((image_dir / "c.png").read_bytes()[:200])
    data.write_text('{"text": "fine"}\n' + line + "\n")
    result = CliRunner().invoke(_cli(), ["encode", "--model", str(model_dir), "--input", str(data),
                                         "--out", str(tmp_path / out)])
    assert result.exit_code == 1
    assert message in result.output and "line 2" in result.output and str(data) in result.output
    if "cut.png" in line:
        assert "field 'image'" in result.output and str(tmp_path / "cut.png") in result.output
    assert not (tmp_path / out).exists() or not list((tmp_path / out).glob("shard-*"))


def test_preprocessing_workers_give_the_same_embeddings_and_errors(model_dir: Path, image_dir: Path,
                                                                   tmp_path: Path) -> None:
    from cocoa.inference.batch_encoder import BatchEncoder

    items = [Item(f"caption number {i} " * (1 + i % 4)) for i in range(9)]
    items += [Item("<|image_1|> what is it?", str(image_dir / f"{name}.png")) for name in "abcd"]
    plain = BatchEncoder.from_pretrained(model_dir, device="cpu")
    workers = BatchEncoder.from_pretrained(model_dir, device="cpu", num_workers=2)
    np.testing.assert_allclose(workers.encode_items(items, batch_size=3), plain.encode_items(items, batch_size=3),
                               atol=1e-6)
    truncated = tmp_path / "truncated.png"  # the header (size) reads, the pixels do not: fails in a worker
    truncated.write_bytes((image_dir / "c.png").read_bytes()[:200])
    for encoder in (plain, workers):
        with pytest.raises(ItemError) as caught:
            encoder.encode_items([*items, Item("a photo", str(truncated))], batch_size=3)
        assert caught.value.file == str(truncated) and (caught.value.item, caught.value.field) == (13, "image")
    with pytest.raises(DataError, match=r"truncated.*row 2, field 'image'"):
        Embedder(workers).encode(["a caption", {"text": "a photo", "image": truncated}])
    with pytest.raises(ConfigError, match="num_workers"):
        BatchEncoder.from_pretrained(model_dir, device="cpu", num_workers=-1)
