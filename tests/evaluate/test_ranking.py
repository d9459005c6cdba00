"""cocoa.evaluate.ranking: hit@1 and NDCG@5 over a whole corpus against brute-force counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cocoa.data.items import Item
from cocoa.data.video_tasks import VIDEO_TASKS, read_video_task
from cocoa.data.visdoc import QUERY_INSTRUCTION, TARGET_INSTRUCTION, read_visdoc_dataset
from cocoa.evaluate import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import FakeEncoder, build_visdoc, write_eval


def brute_force(encoder: FakeEncoder, spec: dict, pages: list[str]) -> tuple[float, float]:
    """NDCG@5 (linear gain) and hit@1 in percent, ranking every page for every query in plain Python."""
    page_text = f"<|image_1|> {TARGET_INSTRUCTION}"
    page_vectors = [encoder.vector(Item(page_text, path)).astype(np.float64) for path in pages]
    ndcgs, hits = [], []
    for q, text in spec["texts"].items():
        gains = spec["relevance"][str(q)]
        query = encoder.vector(Item(f"{QUERY_INSTRUCTION} {text}")).astype(np.float64)
        scores = [float(query @ v) for v in page_vectors]
        order = sorted(range(len(pages)), key=lambda j: (-scores[j], j))[:5]
        dcg = sum(gains.get(str(j), 0.0) / math.log2(i + 2) for i, j in enumerate(order))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(gains.values(), reverse=True)[:5]))
        ndcgs.append(dcg / ideal)
        hits.append(str(order[0]) in gains)
    return 100 * float(np.mean(ndcgs)), 100 * float(np.mean(hits))


def test_visdoc_folder_matches_brute_force_ndcg(tmp_path) -> None:
    data = tmp_path / "data"
    specs = {name: build_visdoc(data / name, seed) for seed, name in enumerate(["ViDoRe_arxivqa", "MyDocs"])}
    write_eval(data / "ImageNet-1K" / "test-00000-of-00001.parquet",
               [("classify [1,0]", "", ["[1,0] cat", "[0,1] dog"], ["", ""])])
    encoder = FakeEncoder(dim=3)
    summary = evaluate(encoder, data, tmp_path / "out", show_progress=False)
    assert summary.benchmark == "MMEB-V2"
    for name in specs:
        read = read_visdoc_dataset(data / name, data)
        pages = [str(read.items[i].image) for i in read.corpus]  # extracted under the image root (DATA)
        assert all(Path(p).is_file() and Path(p).parent == data / "pages" for p in pages)
        assert read.doc_ids == tuple(str(i) for i in range(9))
        ndcg, hit = brute_force(encoder, specs[name], pages)
        record = json.loads((tmp_path / "out" / f"{name}_score.json").read_text())
        assert record["ndcg_linear@5"] == pytest.approx(ndcg) and record["hit@1"] == pytest.approx(hit)
        assert record["metric"] == "ndcg@5" and record["score"] == pytest.approx(ndcg)
        assert 0 < ndcg < 100
    vidore = summary.datasets["ViDoRe_arxivqa"]
    assert (vidore.meta_task, vidore.split, vidore.metric) == ("visdoc", None, "ndcg@5")
    assert (summary.meta_tasks["visdoc"].done, summary.meta_tasks["visdoc"].total) == (1, 24)
    assert (summary.overall.done, summary.overall.total) == (2, 78)
    assert summary.overall.score == pytest.approx((vidore.score + 100.0) / 2)
    assert summary.extra["MyDocs"].metric == "ndcg@5" and summary.extra["MyDocs"].meta_task == "other"
    assert "| ViDoRe_arxivqa | Visual documents | - | NDCG@5 |" in (tmp_path / "out" / "summary.md").read_text()
    preds = [json.loads(line) for line in (tmp_path / "out" / "MyDocs_pred.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and len(preds[0]["top_ids"]) == 5


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
