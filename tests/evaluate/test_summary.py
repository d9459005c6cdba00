"""`cocoa eval` on MMEB-V2 video tasks: every reader kind end to end, scores equal to a brute-force count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cocoa.core.errors import DataError
from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.items import Item
from cocoa.data.video_tasks import VIDEO_TASKS, read_video_task
from cocoa.evaluate import cli
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import write_video_snapshot


@pytest.fixture(scope="module")
def evaluated(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BatchEncoder]:
    data = write_video_snapshot(tmp_path_factory.mktemp("v2"))
    out = tmp_path_factory.mktemp("out")
    encoder = BatchEncoder.from_pretrained(model_dir, device="cpu")
    evaluate(encoder, data, out, batch_size=4, show_progress=False, benchmark="MMEB-V2")
    return data, out, encoder


def test_every_video_task_is_scored_and_grouped_by_its_meta_task(evaluated: tuple[Path, Path, BatchEncoder]) -> None:
    _, out, _ = evaluated
    summary = json.loads((out / "summary.json").read_text())
    tasks = {"K700", "SmthSmthV2", "MSR-VTT", "DiDeMo", "QVHighlight", "MomentSeeker", "Video-MME", "NExTQA",
             "EgoSchema", "MVBench", "ActivityNetQA"}
    assert set(summary["datasets"]) == tasks
    assert {"video_classification", "video_qa", "video_retrieval", "moment_retrieval"} <= set(summary["meta_tasks"])
    assert all(json.loads((out / f"{t}_score.json").read_text())["metric"] == "hit@1" for t in tasks)
    video = summary["modalities"]["video"]
    assert (video["done"], video["total"]) == (11, 18)
    assert video["score"] == pytest.approx(np.mean([summary["datasets"][t]["score"] for t in tasks]))
    assert summary["modalities"]["image"] == {"score": None, "done": 0, "total": 36}
    assert "| Video |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("task", ["K700", "MomentSeeker", "MVBench", "MSR-VTT"])
def test_hit_at_1_equals_a_brute_force_count(evaluated: tuple[Path, Path, BatchEncoder], task: str) -> None:
    """Global tasks against the whole label or video set, local ones against the row's candidates, a hit when the
    best candidate is any gold (MomentSeeker's several, none for an MVBench answer outside its options)."""
    data, out, encoder = evaluated
    dataset = read_video_task(data / task, VIDEO_TASKS[task], data)
    vectors = encoder.encode_items(list(dataset.items))
    hits = []
    if hasattr(dataset, "corpus"):
        for q, gold in zip(dataset.queries, dataset.rel_doc, strict=True):
            scores = vectors[dataset.corpus] @ vectors[q]
            hits.append(int(np.argmax(scores)) == gold)
    else:
        for q, ids, golds in zip(dataset.queries, dataset.candidates, dataset.golds, strict=True):
            scores = vectors[ids[ids >= 0]] @ vectors[q]
            hits.append(int(np.argmax(scores)) < golds)
    stored = json.loads((out / f"{task}_score.json").read_text())["score"]
    assert stored == pytest.approx(100.0 * np.mean(hits))


def test_frames_option_samples_more_frames_and_records_it(evaluated: tuple[Path, Path, BatchEncoder], model_dir: Path,
                                                          tmp_path: Path) -> None:
    data, out, _ = evaluated
    result = CliRunner().invoke(cli.app, ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"),
                                          "--datasets", "Video-MME", "--frames", "2", "--benchmark", "MMEB-V2"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "Video-MME_score.json").read_text())
    assert record["protocol"]["video"]["frames"] == 2
    assert record["fingerprint"] != json.loads((out / "Video-MME_score.json").read_text())["fingerprint"]


def test_mmeb_eval_rows_with_video_columns(model_dir: Path, video_dir: Path, tmp_path: Path) -> None:
    """Rows in MMEB-eval columns plus qry_video_path / tgt_video_path: read, checked, evaluated."""
    rows = {"qry_text": ["<|video_1|> What happens?", "a noise clip"],
            "qry_img_path": ["", ""], "qry_video_path": ["clip", ""],
            "tgt_text": [["noise moving", "a still"], ["", "<|video_1|> a video"]],
            "tgt_img_path": [["", ""], ["", ""]], "tgt_video_path": [["", ""], ["clip.mp4", "long"]]}
    data = tmp_path / "data"
    (data / "VideoSet").mkdir(parents=True)
    pq.write_table(pa.table(rows), data / "VideoSet" / "test-00000-of-00001.parquet")
    dataset = read_eval_dataset(data, "VideoSet", video_dir)
    first, second = dataset.rows
    assert first.query == Item("<|video_1|> What happens?", video=str(video_dir / "clip"))
    assert [c.video for c in second.candidates] == [str(video_dir / "clip.mp4"), str(video_dir / "long")]
    summary = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), data, tmp_path / "out",
                       image_root=video_dir, show_progress=False)
    assert set(summary.datasets) == {"VideoSet"}
    bad = {**rows, "tgt_video_path": [["", ""], ["gone", "long"]]}
    pq.write_table(pa.table(bad), data / "VideoSet" / "test-00000-of-00001.parquet")
    with pytest.raises(DataError, match="video frame folder not found") as caught:
        read_eval_dataset(data, "VideoSet", video_dir)
    assert caught.value.row == 1 and caught.value.field == "tgt_video_path[0]"
    assert len(read_eval_dataset(data, "VideoSet", video_dir, skip_bad=True).rows) == 1
