"""cocoa.data.minimmeb.scenes: instance-level scene captions and grounding crops."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cocoa.data.minimmeb.pools import COLOURS
from cocoa.data.minimmeb.scenes import position_names


def _scene_labels(caption_text: str) -> dict[str, str]:
    """Position -> item label, parsed back from a scene caption."""
    body = caption_text.split(" grid with ", 1)[1].rstrip(".")
    parts = [part for chunk in body.split(", ") for part in chunk.split(" and ")]
    labels = {}
    for part in parts:
        label, position = part.rsplit(" in the ", 1)
        labels[position] = label.split(" ", 1)[1]
    return labels


def test_scene_captions_are_instance_level_and_grounding_gold_is_the_only_match(mini):
    out, _ = mini
    i2t = pq.read_table(out / "eval" / "SceneI2T.parquet").to_pylist()
    labels = {row["qry_img_path"]: _scene_labels(row["tgt_text"][0]) for row in i2t}
    colours = {label.split(" ", 1)[0] for scene in labels.values() for label in scene.values()}
    assert colours <= set(COLOURS) and len(colours) > 3
    positions = position_names(2)
    for row in pq.read_table(out / "eval" / "SceneGrounding.parquet").to_pylist():
        target = row["qry_text"].split('"')[1]
        shown = []
        for path in row["tgt_img_path"]:
            scene, index = Path(path).stem.rsplit("_", 1)
            shown.append(labels[f"scenes/eval2x2/{scene}.png"][positions[int(index)]])
        assert shown[0] == target and target not in shown[1:]
