"""cocoa.data.visdoc: the corpus / queries / qrels layout, its errors, pages keyed by content."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cocoa.core.errors import DataError
from cocoa.data.visdoc import read_visdoc_dataset
from cocoa.evaluate import evaluate
from tests.helpers import IMAGE_STRUCT as IMAGE
from tests.helpers import FakeEncoder, write_eval, write_part
from tests.helpers import page_png as png


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
