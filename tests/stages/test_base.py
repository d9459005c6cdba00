"""cocoa.stages.base: the protocol a stage records, and the caption stages on videos and images."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import load_recipe
from cocoa.stages import get_stage
from tests.helpers import make_backbone, read_metrics, recipe_path, tiny_recipe


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


def test_a_stage_records_the_protocol_its_recipe_builds_with(tmp_path: Path) -> None:
    base = [f"data.root={tmp_path}", f"train.output_dir={tmp_path / 'out'}"]
    recipe = load_recipe(recipe_path("contrastive"), [*base, "protocol.preset=cocoa-release",
                                                      "protocol.image={min_pixels: 3136, max_pixels: 50176}",
                                                      "contrastive.attention=causal"])
    spec = get_stage("contrastive").embedding_spec(recipe)
    want = PROTOCOLS["cocoa-release"].replace(image={"min_pixels": 3136, "max_pixels": 50176}, attention="causal")
    assert spec.protocol == want
    spec.save(tmp_path)
    assert EmbeddingSpec.load(tmp_path).protocol == want
    plain = load_recipe(recipe_path("contrastive"), [*base, "protocol.embedding_token=null"])
    assert get_stage("contrastive").embedding_spec(plain).protocol == PROTOCOLS["cocoa"].replace(embedding_token=None)
    assert get_stage("bridge").embedding_spec(load_recipe(recipe_path("bridge"), base)).protocol == PROTOCOLS["cocoa"]
