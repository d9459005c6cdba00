"""The MMEB-V2 visual-document layout (corpus / queries / qrels) and NDCG@5 against a brute-force ranking."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from cocoa.core.errors import DataError
from cocoa.data.items import Item
from cocoa.data.visdoc import QUERY_INSTRUCTION, TARGET_INSTRUCTION, read_visdoc_dataset
from cocoa.evaluate import cli, evaluate
from tests.evaluate.test_instruct import CASES, write_split
from tests.helpers import FakeEncoder, write_eval, write_images

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 255 - shade, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_part(folder: Path, part: str, columns: dict[str, list], schema: pa.Schema | None = None) -> None:
    (folder / part).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), folder / part / "test-00000-of-00001.parquet")


def build_visdoc(folder: Path, seed: int, pages: int = 9, queries: int = 12) -> dict[str, dict[str, float]]:
    """A BEIR-style dataset: int corpus-ids with image bytes, an extra column, graded qrels with zero scores
    and a repeated pair; returns the positive relevance per query id, as the reference keeps it."""
    rng = np.random.default_rng(seed)
    write_part(folder, "corpus", {"corpus-id": list(range(pages)),
                                  "image": [{"bytes": png(20 * i), "path": None} for i in range(pages)],
                                  "doc-id": [f"doc{i // 3}" for i in range(pages)]},
               pa.schema([("corpus-id", pa.int64()), ("image", IMAGE), ("doc-id", pa.string())]))
    texts = [f"question {q} [{rng.integers(1, 4)},{rng.integers(0, 3)},{rng.integers(0, 2)}]" for q in range(queries)]
    write_part(folder, "queries", {"query-id": list(range(queries)), "query": texts,
                                   "language": ["english"] * queries})
    qrels: list[tuple[int, int, int]] = []
    for q in range(queries):
        for page in rng.choice(pages, size=int(rng.integers(1, 4)), replace=False).tolist():
            qrels.append((q, page, int(rng.integers(0, 3))))
        qrels.append((q, int(q % pages), 1))
    qrels.append((0, qrels[0][1], 2))
    write_part(folder, "qrels", {"query-id": [r[0] for r in qrels], "corpus-id": [r[1] for r in qrels],
                                 "score": [r[2] for r in qrels]})
    relevance: dict[str, dict[str, float]] = {}
    for q, page, score in qrels:
        if score > 0:
            gains = relevance.setdefault(str(q), {})
            gains[str(page)] = max(gains.get(str(page), 0.0), float(score))
    return {"texts": dict(enumerate(texts)), "relevance": relevance}  # type: ignore[dict-item]


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


def test_image_paths_and_bad_qrels(tmp_path) -> None:
    folder = tmp_path / "Docs"
    (tmp_path / "pages").mkdir()
    for i in range(3):
        (tmp_path / "pages" / f"p{i}.png").write_bytes(png(60 * i))
    write_part(folder, "corpus", {"corpus-id": ["a", "b", "c"], "image_path": [f"pages/p{i}.png" for i in range(3)]})
    write_part(folder, "queries", {"query-id": ["q1", "q2"], "query": ["first [1,0]", "second [0,1]"]})
    write_part(folder, "qrels", {"query-id": ["q1", "q2", "q2"], "corpus-id": ["b", "c", "zz"], "score": [1, 2, 1]})
    with pytest.raises(DataError, match="corpus-id 'zz' is not in the corpus") as caught:
        read_visdoc_dataset(folder, tmp_path)
    assert caught.value.row == 2 and caught.value.field == "corpus-id" and "qrels" in caught.value.file
    dataset = read_visdoc_dataset(folder, tmp_path, skip_bad=True)
    assert dataset.skipped == 1 and dataset.doc_ids == ("a", "b", "c")
    assert [dataset.items[i].image for i in dataset.corpus] == [str(tmp_path / f"pages/p{i}.png") for i in range(3)]
    assert dataset.items[dataset.queries[0]].text == "Find a document image that matches the given query: first [1,0]"
    assert dataset.rel_doc.tolist() == [1, 2] and dataset.rel_gain.tolist() == [1.0, 2.0]


def test_a_query_without_relevant_pages_and_a_video_task_of_another_schema_are_refused(tmp_path) -> None:
    folder = tmp_path / "Docs"
    write_part(folder, "corpus", {"corpus-id": ["a"], "image": [{"bytes": png(1), "path": None}]},
               pa.schema([("corpus-id", pa.string()), ("image", IMAGE)]))
    write_part(folder, "queries", {"query-id": ["q1", "q2"], "query": ["x", "y"]})
    write_part(folder, "qrels", {"query-id": ["q1", "q2"], "corpus-id": ["a", "a"], "score": [1, 0]})
    with pytest.raises(DataError, match="query-id 'q2' has no relevant page") as caught:
        read_visdoc_dataset(folder, tmp_path / "img")
    assert caught.value.row == 1
    write_eval(tmp_path / "v" / "MSR-VTT" / "test-00000-of-00001.parquet", [("q", "", ["a"], [""])])
    summary = evaluate(FakeEncoder(), tmp_path / "v", tmp_path / "out", show_progress=False, benchmark="mmeb-v2")
    assert list(summary.failed) == ["MSR-VTT"]
    assert "missing field of MSR-VTT" in summary.failed["MSR-VTT"] and "field 'video_id'" in summary.failed["MSR-VTT"]


def test_a_missing_part_field_is_named(tmp_path) -> None:
    folder = tmp_path / "Docs"
    write_part(folder, "corpus", {"corpus-id": ["a"], "image": [{"bytes": png(1), "path": None}]},
               pa.schema([("corpus-id", pa.string()), ("image", IMAGE)]))
    write_part(folder, "queries", {"query-id": ["q1"], "query": ["x"]})
    write_part(folder, "qrels", {"query-id": ["q1"], "corpus-id": ["a"]})
    with pytest.raises(DataError, match="missing field of the qrels part") as caught:
        read_visdoc_dataset(folder, tmp_path / "img")
    assert caught.value.field == "score"


def test_cocoa_eval_runs_the_tiny_model_on_visdoc_and_instruction_split_folders(tmp_path, model_dir) -> None:
    data = tmp_path / "data"
    build_visdoc(data / "VisRAG_ChartQA", seed=4, pages=5, queries=4)
    write_images(data / "images", "0.png", "1.png", "2.png")
    for name in ("OK-VQA", "WebQA"):
        write_split(data / name / "test-00000-of-00001.parquet", [CASES[name][0]] * 2)
    result = CliRunner().invoke(cli.app, ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"),
                                          "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved["benchmark"] == "MMEB-V2"
    assert set(saved["datasets"]) == {"OK-VQA", "WebQA", "VisRAG_ChartQA"}
    assert saved["datasets"]["VisRAG_ChartQA"]["metric"] == "ndcg@5"
    assert all(0 <= d["score"] <= 100 for d in saved["datasets"].values())


def test_pages_are_keyed_by_content_never_by_folder_or_id(tmp_path) -> None:
    def corpus(folder: Path, shade: int) -> None:
        write_part(folder, "corpus", {"corpus-id": ["p1"], "image": [{"bytes": png(shade), "path": None}]},
                   pa.schema([("corpus-id", pa.string()), ("image", IMAGE)]))
        write_part(folder, "queries", {"query-id": ["q1"], "query": ["x"]})
        write_part(folder, "qrels", {"query-id": ["q1"], "corpus-id": ["p1"], "score": [1]})

    corpus(tmp_path / "A", 10)
    corpus(tmp_path / "B", 200)
    first = read_visdoc_dataset(tmp_path / "A", tmp_path / "img", name="Docs")
    other = read_visdoc_dataset(tmp_path / "B", tmp_path / "img", name="Docs")  # same name and id, other page
    page_a, page_b = (d.items[d.corpus[0]].image for d in (first, other))
    assert page_a != page_b and Path(page_a).read_bytes() == png(10) and Path(page_b).read_bytes() == png(200)
    corpus(tmp_path / "A", 90)  # the corpus behind a folder changes
    changed = read_visdoc_dataset(tmp_path / "A", tmp_path / "img", name="Docs")
    assert Path(changed.items[changed.corpus[0]].image).read_bytes() == png(90)
