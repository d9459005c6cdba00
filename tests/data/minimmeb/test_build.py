"""MiniMMEB: schemas, gold-first candidates, manifest, determinism, leak check."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.data.captions import read_caption_corpus
from cocoa.data.eval_sets import list_eval_datasets, read_eval_dataset
from cocoa.data.items import IMAGE_PLACEHOLDER
from cocoa.data.minimmeb import wordings
from cocoa.data.minimmeb.build import META_TASKS, VERSION, Manifest, build_mini, write_readme_table
from cocoa.data.minimmeb.leaks import check_leaks
from cocoa.data.minimmeb.pools import COLOURS, FASHION_LABELS, tint
from cocoa.data.minimmeb.scenes import position_names
from cocoa.data.minimmeb.store import (
    CAPTION_SCHEMA,
    EVAL_SCHEMA,
    TRAIN_SCHEMA,
    VIDEO_EVAL_SCHEMA,
    VIDEO_TRAIN_SCHEMA,
)
from cocoa.data.minimmeb.wordings import HELD_OUT_SETS
from cocoa.data.train_pairs import read_train_pairs
from cocoa.evaluate.registry import VIDEO_META_TASKS
from cocoa.pipeline.train_stage import tokenizer_texts

SMALL = {"queries": 40, "pool": 100, "train_size": 60, "grounding_candidates": 30, "video_queries": 16,
         "video_train_size": 32}


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("mini")
    return out, build_mini(out, seed=0, **SMALL)


def _schema_matches(path: Path, schema: pa.Schema) -> None:
    assert pq.read_schema(path).remove_metadata().equals(schema), path


def test_eval_files_follow_mmeb_eval_schema(mini):
    out, manifest = mini
    for info in manifest.datasets:
        path = out / "eval" / f"{info.name}.parquet"
        if info.meta_task in VIDEO_META_TASKS:  # tests/data/minimmeb/test_videos.py
            _schema_matches(path, VIDEO_EVAL_SCHEMA)
            continue
        _schema_matches(path, EVAL_SCHEMA)
        rows = pq.read_table(path).to_pylist()
        assert len(rows) == info.queries > 0
        for row in rows:
            assert len(row["tgt_text"]) == len(row["tgt_img_path"])
            assert info.min_candidates <= len(row["tgt_text"]) <= info.max_candidates
            if row["qry_img_path"]:
                assert (out / "images" / row["qry_img_path"]).is_file()
                assert IMAGE_PLACEHOLDER in row["qry_text"]
            for text, image in zip(row["tgt_text"], row["tgt_img_path"], strict=True):
                assert text or image
                assert (IMAGE_PLACEHOLDER in text) == bool(image)


def test_datasets_cover_meta_tasks_with_ind_and_ood(mini):
    _, manifest = mini
    assert len(manifest.datasets) >= 12
    for task in META_TASKS:
        want = {"IND"} if task in ("video_qa", "moment_retrieval") else {"IND", "OOD"}
        assert {d.split for d in manifest.datasets if d.meta_task == task} == want


def test_candidate_counts_as_promised(mini):
    out, manifest = mini
    info = {d.name: d for d in manifest.datasets}
    assert info["FashionMNIST"].min_candidates == info["FashionMNIST"].max_candidates == 10
    assert info["FashionTinted"].max_candidates == 10
    assert info["EmojiGroup"].chance == round(100 / info["EmojiGroup"].max_candidates, 2)
    assert info["SceneT2I"].min_candidates == SMALL["pool"]
    assert info["SceneGrounding"].max_candidates == SMALL["grounding_candidates"]
    rows = pq.read_table(out / "eval" / "FashionMNIST.parquet").to_pylist()
    assert all(sorted(row["tgt_text"]) == sorted(rows[0]["tgt_text"]) for row in rows)


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


def test_train_and_pretrain_schemas(mini):
    out, manifest = mini
    for name, count in manifest.train_rows.items():
        path = out / "train" / f"{name}.parquet"
        _schema_matches(path, VIDEO_TRAIN_SCHEMA if name.startswith("Video") else TRAIN_SCHEMA)
        assert pq.read_metadata(path).num_rows == count > 0
    _schema_matches(out / "pretrain" / "stage1.parquet", CAPTION_SCHEMA)
    _schema_matches(out / "pretrain" / "stage2.parquet", VIDEO_TRAIN_SCHEMA)
    ood = {d.name for d in manifest.datasets if d.split == "OOD"}
    assert not ood & set(manifest.train_rows)
    assert set(manifest.train_rows) <= {d.name for d in manifest.datasets if d.split == "IND"}


def test_readers_load_the_build(mini):
    out, manifest = mini
    assert list_eval_datasets(out) == sorted(d.name for d in manifest.datasets)
    dataset = read_eval_dataset(out, "SceneT2I", out / "images")
    assert dataset.skipped == 0 and len(dataset.rows) == SMALL["queries"]
    assert Path(dataset.rows[0].candidates[0].image).is_absolute()
    pairs = read_train_pairs(out, None, out / "images", cap=25)
    assert len(pairs) == sum(min(25, rows) for rows in manifest.train_rows.values())
    stage2 = read_train_pairs(out / "pretrain" / "stage2.parquet", None, out / "images", cap=None)
    assert len(stage2) == manifest.pretrain_rows["stage2"]
    assert all(pair.positive.image is None for pair in stage2)
    captions = read_caption_corpus(out / "pretrain" / "stage1.parquet", out / "images")
    assert len(captions) == manifest.pretrain_rows["stage1"] and all(c.caption for c in captions)


def test_manifest_checksums_and_readme_table(mini):
    out, manifest = mini
    assert Manifest.from_json((out / "manifest.json").read_text()) == manifest
    videos = sum(d.meta_task in VIDEO_META_TASKS for d in manifest.datasets)  # no held-out wordings
    assert len(manifest.checksums) == ((1 + len(HELD_OUT_SETS)) * (len(manifest.datasets) - videos) + videos
                                       + len(manifest.train_rows) + 2)
    assert "dataset-fashion-mnist" in manifest.sources
    table = write_readme_table(manifest)
    assert table.count("\n") == len(manifest.datasets) + 2
    assert "| SceneT2I | retrieval | IND | 40 | 100 | 1.00 |" in table


def test_same_seed_same_checksums_and_reuse(mini, tmp_path):
    out, manifest = mini
    again = build_mini(tmp_path / "again", seed=0, **SMALL)
    assert again.checksums == manifest.checksums
    stamp = (out / "eval" / "FashionTinted.parquet").stat().st_mtime_ns
    assert build_mini(out, seed=0, **SMALL) == manifest
    assert (out / "eval" / "FashionTinted.parquet").stat().st_mtime_ns == stamp


def test_a_folder_built_without_a_held_out_copy_is_rebuilt(mini, tmp_path):
    out, manifest = mini
    copy = tmp_path / "old-layout"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "recombined")
    old = Manifest.from_json((copy / "manifest.json").read_text())
    old.checksums = {k: v for k, v in old.checksums.items() if not k.startswith("recombined/")}
    (copy / "manifest.json").write_text(old.to_json())
    assert build_mini(copy, seed=0, **SMALL).checksums == manifest.checksums
    assert (copy / "recombined" / "FashionMNIST.parquet").is_file()


def test_no_leaks_in_build_and_planted_leaks_found(mini, tmp_path):
    out, _ = mini
    assert check_leaks(out) == []
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    eval_rows = pq.read_table(copy / "eval" / "FashionMNIST.parquet").to_pylist()
    shutil.copy(copy / "images" / eval_rows[0]["qry_img_path"], copy / "images" / "planted.png")
    t2i_query = pq.read_table(copy / "eval" / "SceneT2I.parquet").to_pylist()[3]["qry_text"]
    train_path = copy / "train" / "FashionMNIST.parquet"
    rows = pq.read_table(train_path).to_pylist()
    rows.append({**rows[0], "qry_image_path": "planted.png"})
    rows.append({**rows[1], "pos_text": t2i_query})
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAIN_SCHEMA), train_path)
    leaks = check_leaks(copy)
    assert any("FashionMNIST.parquet row 0" in leak and "planted.png" in leak for leak in leaks)
    assert any("eval/SceneT2I.parquet row 3: query text" in leak for leak in leaks)


def test_cli_passes_pool_and_grounding_sizes(tmp_path):
    out = tmp_path / "cli-mini"
    result = CliRunner().invoke(app, ["data", "mini", "--out", str(out), "--queries", "5", "--pool", "7",
                                      "--grounding-candidates", "6", "--train-size", "8", "--video-queries", "8",
                                      "--video-train-size", "8"])
    assert result.exit_code == 0, result.output
    manifest = Manifest.from_json((out / "manifest.json").read_text())
    assert manifest.params == {"queries": 5, "pool": 7, "train_size": 8, "grounding_candidates": 6,
                               "video_queries": 8, "video_train_size": 8}
    info = {d.name: d for d in manifest.datasets}
    assert info["SceneT2I"].min_candidates == info["SceneT2I"].max_candidates == 7
    assert info["SceneGrounding"].max_candidates == 6
    refused = CliRunner().invoke(app, ["data", "mini", "--out", str(tmp_path / "bad"), "--pool", "1"])
    assert refused.exit_code != 0 and "--pool" in refused.output
    assert not (tmp_path / "bad").exists()


_QUERY_WORDINGS = {
    "FashionMNIST": wordings.CLASSIFY, "EmojiGroup": wordings.EMOJI_GROUP, "EmojiSubgroup": wordings.EMOJI_SUBGROUP,
    "SceneVQA": wordings.VQA, "ItemI2T": wordings.SCENE_I2T,
    "SceneT2I": wordings.SCENE_T2I, "SceneI2T": wordings.SCENE_I2T, "SceneGrounding": wordings.GROUND}


def _wording_of(text: str, choices: Sequence[str]) -> str | None:
    """The wording (format string) that produced ``text``, if any."""
    for wording in choices:
        head, _, tail = wording.format(img=IMAGE_PLACEHOLDER, x="\0").partition("\0")
        if text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail):
            return wording
    return None


@pytest.mark.parametrize(("folder", "attribute"), sorted(HELD_OUT_SETS.items()))
def test_eval_uses_a_training_wording_and_each_held_out_copy_one_no_training_row_uses(mini, folder, attribute):
    out, manifest = mini
    for name, wording in _QUERY_WORDINGS.items():
        train = pq.read_table(out / "train" / f"{name}.parquet").column("qry").to_pylist()
        used = [_wording_of(text, wording.train) for text in train]
        assert None not in used, name
        assert len(set(used)) > 1, f"{name}: one training wording only"
        assert not any(_wording_of(text, [getattr(wording, attribute)]) for text in train), name
        evals = pq.read_table(out / "eval" / f"{name}.parquet").column("qry_text").to_pylist()
        assert all(_wording_of(text, [wording.train[0]]) for text in evals), name
    held_out = [getattr(w, attribute) for w in _QUERY_WORDINGS.values()]
    for info in (d for d in manifest.datasets if d.meta_task not in VIDEO_META_TASKS):
        original = pq.read_table(out / "eval" / f"{info.name}.parquet")
        reworded = pq.read_table(out / folder / f"{info.name}.parquet")
        assert reworded.drop(["qry_text"]).equals(original.drop(["qry_text"])), info.name
        texts = reworded.column("qry_text").to_pylist()
        assert all(_wording_of(text, held_out) for text in texts), info.name
        assert all(a != b for a, b in zip(texts, original.column("qry_text").to_pylist(), strict=True))
        card = json.loads((out / folder / f"{info.name}.card.json").read_text())
        assert card == {"meta_task": info.meta_task, "split": info.split}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.replace("{img}", " ").replace("{x}", " ").lower()))


def test_recombined_wordings_use_only_training_words_and_reworded_ones_bring_new_words(mini):
    out, _ = mini
    seen: set[str] = set()
    for text in tokenizer_texts(out):
        seen |= _words(text)
    for name, wording in _QUERY_WORDINGS.items():
        assert _words(wording.recombined) <= seen, (name, _words(wording.recombined) - seen)
        assert _words(wording.held_out) - seen, name
        assert wording.recombined not in (*wording.train, wording.held_out), name


def test_reword_keeps_the_row_text():
    query = wordings.SCENE_T2I.for_eval("A 2x2 grid with a red bag.")
    assert wordings.SCENE_T2I.reword(query) == wordings.SCENE_T2I.format(wordings.SCENE_T2I.held_out,
                                                                          "A 2x2 grid with a red bag.")
    assert wordings.CLASSIFY.reword(wordings.CLASSIFY.for_eval()) == wordings.CLASSIFY.format(
        wordings.CLASSIFY.held_out)
    assert wordings.GROUND.reword(wordings.GROUND.for_eval("bag"), wordings.GROUND.recombined) == (
        wordings.GROUND.format(wordings.GROUND.recombined, "bag"))
    with pytest.raises(ValueError, match="not worded as"):
        wordings.VQA.reword("What is this?")


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


def test_tint():
    item = Image.fromarray(np.array([[255, 0], [128, 255]], dtype=np.uint8), mode="L").convert("RGB")
    pixels = np.asarray(tint(item, (200, 30, 30)))
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[0, 1].tolist() == [200, 30, 30]
    assert pixels[1, 0].tolist() == [round(255 - 127 / 255 * 55), round(255 - 127 / 255 * 225),
                                      round(255 - 127 / 255 * 225)]


def test_version_one_manifest_still_loads(mini):
    _, manifest = mini
    assert manifest.version == VERSION == 3
    data = json.loads(manifest.to_json())
    del data["version"]
    for info in data["datasets"]:
        del info["chance"]
    old = Manifest.from_json(json.dumps(data))
    assert old.version == 1 and old.datasets[0].name == manifest.datasets[0].name
