"""cocoa.data.minimmeb.tasks: gold-first candidates and the candidate sets of each task."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cocoa.data.minimmeb import wordings
from cocoa.data.minimmeb.pools import COLOURS, FASHION_LABELS


def test_gold_first_in_classification_and_retrieval(mini):
    out, _ = mini
    rows = pq.read_table(out / "eval" / "SceneI2T.parquet").to_pylist()
    # SceneI2T: the gold caption is the caption of the query scene, and captions are distinct
    captions = [row["tgt_text"][0] for row in rows]
    assert len(set(captions)) == len(captions)
    t2i = pq.read_table(out / "eval" / "SceneT2I.parquet").to_pylist()
    for i2t_row, t2i_row in zip(rows, t2i, strict=True):
        assert i2t_row["qry_img_path"] == t2i_row["tgt_img_path"][0]
        assert i2t_row["tgt_text"][0] in t2i_row["qry_text"]
    grounding = pq.read_table(out / "eval" / "SceneGrounding.parquet").to_pylist()
    for row in grounding:
        scene = Path(row["qry_img_path"]).stem
        assert Path(row["tgt_img_path"][0]).stem.startswith(f"{scene}_")
        assert row["qry_text"].startswith(wordings.GROUND.for_eval("").split('""')[0])


def test_item_retrieval_candidates_are_every_colour_and_label(mini):
    out, _ = mini
    expected = {f"{'an' if c[0] in 'aeiou' else 'a'} {c} {label}" for c in COLOURS for label in FASHION_LABELS}
    for row in pq.read_table(out / "eval" / "ItemI2T.parquet").to_pylist():
        assert len(row["tgt_text"]) == len(expected) and set(row["tgt_text"]) == expected
    train = pq.read_table(out / "train" / "ItemI2T.parquet").to_pylist()
    for row in train:
        positive, negative = row["pos_text"].split(" ", 1)[1], row["neg_text"].split(" ", 1)[1]
        (pc, pl), (nc, nl) = positive.split(" ", 1), negative.split(" ", 1)
        assert (pc == nc) != (pl == nl)
