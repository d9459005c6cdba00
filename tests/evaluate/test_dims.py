"""Evaluation at several Matryoshka dims encodes each item once and writes one folder per width."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.core.errors import ConfigError
from cocoa.data.items import Item
from cocoa.evaluate.dims import DIMS_FILE, evaluate_dims, width_dir
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import EVAL_DATASET
from tests.helpers import TINY_HIDDEN as HIDDEN


class CountingEncoder:
    """An encoder that records how many items it was asked to encode."""

    def __init__(self, encoder: BatchEncoder) -> None:
        self.encoder, self.encoded = encoder, 0

    def encode_items(self, items: Sequence[Item], *, batch_size: int = ENCODE_BATCH_SIZE,
                     show_progress: bool = False) -> np.ndarray:
        self.encoded += len(items)
        return self.encoder.encode_items(items, batch_size=batch_size)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def item_length(self, item: Item) -> int:
        return self.encoder.item_length(item)


def test_evaluation_per_width_encodes_each_item_once(matryoshka_dir: Path, mini_dir: Path, tmp_path: Path) -> None:
    encoder = BatchEncoder.from_pretrained(matryoshka_dir, device="cpu")
    counting = CountingEncoder(encoder)
    summaries = evaluate_dims(counting, [32, HIDDEN], mini_dir, tmp_path / "w", [EVAL_DATASET], batch_size=16,
                                show_progress=False)
    plain = evaluate(encoder, mini_dir, tmp_path / "plain", [EVAL_DATASET], batch_size=16, show_progress=False)
    items = summaries[HIDDEN].encoded
    assert counting.encoded == items == plain.encoded > 0
    assert summaries[HIDDEN].datasets[EVAL_DATASET].score == plain.datasets[EVAL_DATASET].score
    assert (width_dir(tmp_path / "w", 32) / f"{EVAL_DATASET}_score.json").is_file()
    written = json.loads((tmp_path / "w" / DIMS_FILE).read_text())
    assert written["32"]["overall"] == summaries[32].overall.score
    with pytest.raises(ConfigError, match="dims: width 97 is larger"):
        evaluate_dims(counting, [HIDDEN + 1], mini_dir, tmp_path / "too-wide", [EVAL_DATASET],
                        show_progress=False)
