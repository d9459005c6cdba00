"""cocoa.inference.batch_encoder: item lengths and preprocessing workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cocoa.core.errors import ConfigError, DataError, ItemError
from cocoa.data.items import Item
from cocoa.inference.embedder import Embedder


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
