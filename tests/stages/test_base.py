"""Stage 3 trains on MMEB-train rows that carry videos (a video query, a video target), on every family."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.data.train_pairs import read_train_pairs
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import train_stage
from tests.helpers import make_backbone, read_metrics, tiny_recipe

ROWS = {
    "qry": ["<|video_1|> What happens in the video?", "Find a video that contains: noise", "a red dress",
            "<|video_1|> Describe it."],
    "qry_image_path": ["", "", "", ""],
    "pos_text": ["noise moving", "<|video_1|> Understand the content of the provided video.", "", "a still frame"],
    "pos_image_path": ["", "", "", ""],
    "qry_video_path": ["clip", "", "", "still"],
    "pos_video_path": ["", "long", "clip.mp4", ""],
}


def write_pairs(root: Path, rows: dict[str, list[str]]) -> Path:
    (root / "train").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), root / "train" / "VideoPairs.parquet")
    return root


def test_video_columns_become_video_items(video_dir: Path, tmp_path: Path) -> None:
    pairs = read_train_pairs(write_pairs(tmp_path, ROWS), None, video_dir)
    assert pairs[0].query.video == str(video_dir / "clip") and pairs[0].positive.video is None
    assert pairs[1].positive.video == str(video_dir / "long") and pairs[2].positive.video == str(video_dir / "clip.mp4")
    bad = {**ROWS, "qry_video_path": ["gone", "", "", "still"]}
    with pytest.raises(DataError, match="video frame folder not found") as caught:
        read_train_pairs(write_pairs(tmp_path / "bad", bad), None, video_dir)
    assert caught.value.field == "qry_video_path" and caught.value.row == 0


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_contrastive_stage_trains_on_video_pairs(family: str, video_dir: Path, tmp_path: Path) -> None:
    start = make_backbone(family).save(tmp_path / "start")
    root = write_pairs(tmp_path / "data", ROWS)
    out = tmp_path / "run"
    recipe = tiny_recipe("contrastive", root, out, f"model.path={start}", f"data.images={video_dir}",
                         "data.max_len=512", "protocol.video.frames=4", steps=3)
    result = train_stage(recipe)
    assert result.steps == 3 and all(m["loss"] > 0 for m in read_metrics(out) if "loss" in m)
    trained = BatchEncoder.from_pretrained(out / "model", device="cpu")
    before = BatchEncoder.from_pretrained(start, device="cpu").backbone.model.model.visual.patch_embed.proj.weight
    after = trained.backbone.model.model.visual.patch_embed.proj.weight
    assert (after - before).abs().max() > 0, "no row has an image: only the videos can move the vision tower"
    assert trained.protocol.video.frames == 4  # the checkpoint records how it sampled videos
    query = read_train_pairs(root, None, video_dir)[0].query
    assert trained.encode_items([query]).shape == (1, trained.backbone.hidden_size)


def test_bridge_stage_reconstructs_targets_after_video_queries(video_dir: Path, tmp_path: Path) -> None:
    start = make_backbone().save(tmp_path / "start")
    root = write_pairs(tmp_path / "data", ROWS)
    out = tmp_path / "run"
    recipe = tiny_recipe("bridge", root, out, f"model.path={start}", f"data.images={video_dir}",
                         f"data.corpus={root}", "data.max_len=512", "protocol.video.frames=4", steps=2, batch=2)
    assert train_stage(recipe).steps == 2
    assert all(m["loss"] > 0 for m in read_metrics(out) if "loss" in m)


@pytest.mark.parametrize("stage", ["pretrain", "warmup"])
def test_caption_stages_reconstruct_captions_of_videos_and_images(stage: str, video_dir: Path, image_dir: Path,
                                                                    tmp_path: Path) -> None:
    """Stage 1 (and 0) read ``video_path`` rows beside image rows; MAE masks the image rows' patches only."""
    model = ["model.tokenizer_corpus=false"] if stage == "pretrain" else [f"model.path={make_backbone().save(tmp_path / 'start')}"]
    (video_dir / "a.png").write_bytes((image_dir / "a.png").read_bytes())
    corpus = tmp_path / "captions.parquet"
    pq.write_table(pa.table({"image_path": ["", "", "a.png", ""], "video_path": ["clip", "long", None, "clip.mp4"],
                             "caption": ["noise that moves", "a longer noise clip", "a noise image",
                                         "noise in a file"]}), corpus)
    out = tmp_path / "run"
    recipe = tiny_recipe(stage, tmp_path, out, *model, f"data.images={video_dir}", f"data.corpus={corpus}",
                         "data.max_len=512", "protocol.video.frames=4", steps=2, batch=4)
    assert train_stage(recipe).steps == 2
    assert all(m["loss"] > 0 for m in read_metrics(out) if "loss" in m)
    pq.write_table(pa.table({"image_path": ["a.png"], "video_path": ["clip"], "caption": ["both"]}), corpus)
    with pytest.raises(DataError, match="an image path or a video path, not both"):
        train_stage(tiny_recipe(stage, tmp_path, tmp_path / "bad", *model, f"data.images={video_dir}",
                                f"data.corpus={corpus}", steps=1))
