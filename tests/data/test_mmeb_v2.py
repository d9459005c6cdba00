"""cocoa.data.mmeb_v2: the 78 published tasks, each found under the folder names copies use."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.data.check import check_published, check_task
from cocoa.data.mmeb_v2 import PUBLISHED, locate
from cocoa.evaluate import evaluate
from cocoa.evaluate.registry import MMEB_V2
from tests.helpers import FakeEncoder, copy_of
from tests.mmeb_v2_published import EXPECTED, SOURCES


def test_the_listing_covers_every_task_and_names_its_sources(trees: dict) -> None:
    assert len(PUBLISHED) == 78 and list(PUBLISHED) == MMEB_V2.names()
    assert set(EXPECTED) == set(PUBLISHED)
    for repo in trees:
        assert any(fnmatch.fnmatch(repo, key) for key in SOURCES), f"{repo} has no source"


def test_vlm2vec_local_and_repo_folder_names_are_tasks_not_other_datasets(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    (data / "visdoc-tasks" / "ViDoRe_arxivqa").rename(data / "visdoc-tasks" / "arxivqa_test_subsampled_beir")
    (data / "visdoc-tasks" / "ViDoRe_esg_reports_v2_multilingual").rename(data / "visdoc-tasks" / "esg_reports_v2")
    (data / "visdoc-tasks").rename(data / "visdoc-tasks-data")
    (data / "visdoc-tasks-data").rename(data / "visdoc")
    (data / "visdoc").mkdir(exist_ok=True)
    (data / "visdoc-tasks").mkdir()
    (data / "visdoc").rename(data / "visdoc-tasks" / "data")  # VLM2Vec's visdoc-tasks/data/<repo name>/
    (data / "video-tasks" / "K700").rename(data / "video-tasks" / "Kinetics-700")
    (data / "video-tasks" / "SmthSmthV2").rename(data / "SmthSmthV2")  # at the top, as older copies
    (data / "image-tasks" / "MMEB_Test_Instruct").rename(data / "MMEB_Test_Instruct")  # a snapshot at the top
    checks = {c.name: c for c in check_published(data)}
    assert all(c.status == "found" for c in checks.values()), [c for c in checks.values() if c.status != "found"]
    assert checks["ViDoRe_arxivqa"].folder.endswith("visdoc-tasks/data/arxivqa_test_subsampled_beir")
    assert checks["K700"].folder.endswith("Kinetics-700") and checks["ImageNet-1K"].folder.endswith("MMEB_Test_Instruct")
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert summary.benchmark == "MMEB-V2" and summary.complete and not summary.extra and not summary.failed


def test_the_instruction_split_files_win_over_another_copy_of_an_image_task(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    v1 = data / "image-tasks" / "ImageNet-1K" / "test-00000-of-00001.parquet"  # MMEB-V1's row form, no instructions
    v1.parent.mkdir()
    pq.write_table(pa.table({"qry_text": ["<|image_1|> x"], "qry_img_path": ["images/ImageNet-1K/q0.jpg"],
                             "tgt_text": [["a"]], "tgt_img_path": [[""]]}), v1)
    located = locate(data, PUBLISHED["ImageNet-1K"])
    assert located.folder.name == "MMEB_Test_Instruct" and v1 not in located.files
    (data / "image-tasks" / "MMEB_Test_Instruct").rename(tmp_path / "elsewhere")
    assert locate(data, PUBLISHED["ImageNet-1K"]).files == [v1]  # without it, the other copy


def test_the_hubs_parquet_conversion_and_a_bare_config_folder_are_read(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    hmdb = data / "video-tasks" / "HMDB51"
    rows = [json.loads(line) for line in (hmdb / "data" / "test.jsonl").read_text().splitlines()]
    shutil.rmtree(hmdb)
    (hmdb / "default" / "test").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), hmdb / "default" / "test" / "0000.parquet")  # refs/convert/parquet
    (hmdb / "default" / "train").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1]), hmdb / "default" / "train" / "0000.parquet")
    assert not (data / "video-tasks" / "EgoSchema" / "README.md").exists()  # Subset/ and MC/, no card
    assert [f.relative_to(hmdb).as_posix() for f in locate(data, PUBLISHED["HMDB51"]).files] == ["default/test/0000.parquet"]
    ego = locate(data, PUBLISHED["EgoSchema"]).files
    assert [f.relative_to(data / "video-tasks" / "EgoSchema").as_posix() for f in ego] == [
        "Subset/test-00000-of-00001.parquet"]
    youcook = locate(data, PUBLISHED["YouCook2"]).files
    assert [f.name for f in youcook] == ["val-00000-of-00001.parquet"], "val, never the test decoy beside it"
    assert check_task(data, "HMDB51").rows == EXPECTED["HMDB51"][0]
