"""The instruction-split MMEB-eval variant (qry_inst / tgt_inst): texts rebuilt as the reference does, scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.instruct import REFERENCE_FORMATS
from cocoa.data.items import Item
from cocoa.evaluate import evaluate
from tests.helpers import FakeEncoder, write_images

SCHEMA = pa.schema([("qry_inst", pa.string()), ("qry_text", pa.string()), ("qry_img_path", pa.string()),
                    ("tgt_inst", pa.string()), ("tgt_text", pa.list_(pa.string())),
                    ("tgt_img_path", pa.list_(pa.string()))])
Row = tuple[str, str, str, str, list[str], list[str]]


def write_split(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [list(column) for column in zip(*rows, strict=True)]
    pq.write_table(pa.table(dict(zip(SCHEMA.names, columns, strict=True)), schema=SCHEMA), path)


#: One row per reference parser, with the exact texts the reference code builds from it.
CASES: dict[str, tuple[Row, str, list[str], bool]] = {
    "ImageNet-1K": (("<|image_1|> Represent the given image for classification.", "", "0.png", "",
                     ["cat [1,0]", "dog [0,1]"], ["", ""]),
                    "<|image_1|>  Represent the given image for classification.\n", ["cat [1,0]", "dog [0,1]"], False),
    "OK-VQA": (("Represent the given image with the following question:", "What is it? [0,1]", "1.png", "",
                ["a cat", "a dog [0,1]"], ["", ""]),
               "<|image_1|>\nRepresent the given image with the following question: What is it? [0,1]\n",
               ["a cat", "a dog [0,1]"], False),
    "MSCOCO_i2t": (("Find an image caption describing the given everyday image. \n", "", "2.png", "",
                    ["two dogs", "a cat"], ["x.png", "y.png"]),
                   "<|image_1|> Find an image caption describing the given everyday image.\n\n",
                   ["two dogs", "a cat"], False),
    "VisDial": (("Represent the given dialogue about an image, which is used for image retrieval:", "Q: dog? A: yes",
                 "", "<|image_1|> Represent the given image.", ["", ""], ["1.png", "2.png"]),
                "Represent the given dialogue about an image, which is used for image retrieval: Q: dog? A: yes\n\n",
                ["<|image_1|>  Represent the given image.\n"] * 2, True),
    "WebQA": (("Find a Wikipedia image that answers this question:", "Where? [1,0]", "", "Represent the given "
               "Wikipedia image with related text information:", ["Paris [1,0]", "Rome"], ["1.png", "2.png"]),
              "Find a Wikipedia image that answers this question: Where? [1,0]\n",
              ["<|image_1|> Represent the given Wikipedia image with related text information: Paris [1,0]\n",
               "<|image_1|> Represent the given Wikipedia image with related text information: Rome\n"], True),
    "MSCOCO": (("<|image_1|> Select the portion of the image that isolates the object labeled as \"cat\"", "", "0.png",
                "<|image_1|> Represent the given cropped image of the object", [" ", ""], ["1.png", "2.png"]),
               "<|image_1|>\nSelect the portion of the image that isolates the object labeled as \"cat\"\n",
               ["<|image_1|>  Represent the given cropped image of the object"] * 2, True),
    "RefCOCO-Matching": (("Select the portion of the image that follows the language expressions.", "the dog",
                          "0.png", "Select the portion of the image that follows the language expressions.",
                          ["the cat", "the dog"], ["1.png", "2.png"]),
                         "<|image_1|>\nSelect the portion of the image that follows the language expressions. the dog\n",
                         ["<|image_1|> Select the portion of the image that follows the language expressions. the cat\n",
                          "<|image_1|> Select the portion of the image that follows the language expressions. the dog\n"],
                         True),
}


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
