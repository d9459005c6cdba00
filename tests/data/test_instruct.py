"""cocoa.data.instruct: instruction-split texts rebuilt as the reference does, and scored."""

from __future__ import annotations

import numpy as np
import pytest

from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.instruct import REFERENCE_FORMATS
from cocoa.data.items import Item
from cocoa.evaluate import evaluate
from tests.helpers import INSTRUCT_CASES as CASES
from tests.helpers import FakeEncoder, write_images
from tests.helpers import InstructRow as Row
from tests.helpers import write_instruct_split as write_split


@pytest.mark.parametrize("name", list(CASES))
def test_texts_are_rebuilt_exactly_as_the_reference(tmp_path, name: str) -> None:
    row, query, candidates, candidate_images = CASES[name]
    write_images(tmp_path / "images", "0.png", "1.png", "2.png")
    write_split(tmp_path / name / "test-00000-of-00001.parquet", [row])
    dataset = read_eval_dataset(tmp_path, name, tmp_path / "images", instruction_format=REFERENCE_FORMATS[name])
    (only,) = dataset.rows
    query_image = None if name in ("VisDial", "WebQA") else str(tmp_path / "images" / row[2])
    assert only.query == Item(query, query_image)
    images = [str(tmp_path / "images" / p) if candidate_images else None for p in row[5]]
    assert list(only.candidates) == [Item(t, i) for t, i in zip(candidates, images, strict=True)]


def test_instruction_split_folder_scores_match_brute_force(tmp_path) -> None:
    rng = np.random.default_rng(5)
    write_images(tmp_path / "images", *(f"{i}.png" for i in range(4)))
    labels = [f"label {i} [{i % 3 + 1},{i % 2}]" for i in range(6)]
    rows: list[Row] = []
    for r in range(30):
        picks = rng.choice(6, size=4, replace=False).tolist()
        rows.append(("<|image_1|> Represent the given image for classification.", f"hint [{r % 2},1]" if r % 3 else "",
                     f"{r % 4}.png", "", [labels[p] for p in picks], ["", "", "", ""]))
    write_split(tmp_path / "N24News" / "test-00000-of-00001.parquet", rows)
    write_split(tmp_path / "Mine" / "test-00000-of-00001.parquet", rows[:10])
    (tmp_path / "Mine" / "card.yaml").write_text("meta_task: classification\ninstruction_format: image_cls\n")
    encoder = FakeEncoder(dim=4)
    summary = evaluate(encoder, tmp_path, tmp_path / "out", show_progress=False)

    def brute(subset: list[Row]) -> float:
        correct = 0
        for inst, text, image, _, targets, _ in subset:
            prompt = "<|image_1|> " + inst.replace("<|image_1|>", "") + (" " + text if text else "")
            query = encoder.vector(Item(prompt.replace(" \n", "\n") + "\n", str(tmp_path / "images" / image)))
            sims = [float(query.astype(np.float64) @ encoder.vector(Item(t)).astype(np.float64)) for t in targets]
            correct += max(range(len(sims)), key=lambda k: (sims[k], -k)) == 0
        return 100.0 * correct / len(subset)

    assert summary.datasets["N24News"].score == pytest.approx(brute(rows))
    assert summary.extra["Mine"].score == pytest.approx(brute(rows[:10]))
    assert 0 < summary.datasets["N24News"].score < 100


def test_an_unknown_instruction_split_dataset_needs_a_format(tmp_path) -> None:
    write_split(tmp_path / "Mine" / "test-00000-of-00001.parquet", [("inst", "q", "", "", ["a", "b"], ["", ""])])
    summary = evaluate(FakeEncoder(), tmp_path, tmp_path / "out", show_progress=False)
    assert list(summary.failed) == ["Mine"] and not summary.datasets
    assert "needs an instruction format" in summary.failed["Mine"] and "field 'qry_inst'" in summary.failed["Mine"]
