"""`cocoa data get` for MMEB-train and MMEB-V1: everything after the download call, on folders laid out like
the real snapshots (MMEB-V2: tests/data/test_mmeb_v2_published.py)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError
from cocoa.data.cli import app
from cocoa.data.get import get


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_train_snapshot(repo_id: str, repo_type: str, revision: str | None, local_dir: str) -> str:
    """MMEB-train's layout: a parquet folder per subset, images in images_zip/<Subset>.zip."""
    assert (repo_id, repo_type) == ("TIGER-Lab/MMEB-train", "dataset")
    root = Path(local_dir)
    for subset in ("CIRR", "DocVQA"):
        (root / subset).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"qry": ["<|image_1|> find it"], "qry_image_path": [f"{subset}/a.png"],
                                 "pos_text": ["x"], "pos_image_path": [f"{subset}/b.png"], "neg_text": [""],
                                 "neg_image_path": [""]}), root / subset / "original-00000-of-00001.parquet")
        (root / "images_zip").mkdir(exist_ok=True)
        with zipfile.ZipFile(root / "images_zip" / f"{subset}.zip", "w") as z:
            z.writestr(f"{subset}/a.png", png())
            z.writestr(f"{subset}/b.png", png())
    meta = root / ".cache" / "huggingface" / "download" / "CIRR"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "original-00000-of-00001.parquet.metadata").write_text("abc123\netag\n0\n")
    return local_dir


def test_train_set_is_unpacked_and_checked_and_a_rerun_unpacks_nothing(tmp_path: Path) -> None:
    report = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert (tmp_path / "images" / "CIRR" / "a.png").is_file()
    assert (report.archives_unpacked, report.parquet_files, report.media_checked, report.media_missing) == (2, 2, 4, 0)
    assert report.revision == "abc123" and report.bytes > 0
    again = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert (again.archives_unpacked, again.archives_skipped) == (0, 2)
    (tmp_path / "images" / "DocVQA" / "b.png").unlink()
    missing = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert missing.media_missing == 1 and missing.first_missing == "DocVQA/original-00000-of-00001.parquet: DocVQA/b.png"


def test_the_command_reports_missing_media_and_unknown_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: str) -> str:
        fake_train_snapshot(**kwargs)
        (Path(kwargs["local_dir"]) / "images_zip" / "DocVQA.zip").unlink()
        return kwargs["local_dir"]

    monkeypatch.setattr("huggingface_hub.snapshot_download", broken)
    result = CliRunner().invoke(app, ["get", "mmeb-train", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "2 of 4 media files" in result.output and "parquet files" in result.output
    with pytest.raises(ConfigError, match="unknown dataset"):
        get("mmeb-v3", tmp_path, download=fake_train_snapshot)
