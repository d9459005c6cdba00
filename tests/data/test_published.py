"""cocoa.data.published: every MMEB-V2 task read where it is published, and scored."""

from __future__ import annotations

import json
from pathlib import Path

from cocoa.evaluate import evaluate
from tests.helpers import FakeEncoder
from tests.mmeb_v2_published import EXPECTED


def test_eval_scores_all_78_tasks_from_the_fetched_folder(fetched: Path, tmp_path: Path) -> None:
    summary = evaluate(FakeEncoder(), fetched, tmp_path / "out", benchmark="MMEB-V2", show_progress=False)
    assert summary.complete and summary.failed == {} and summary.overall.done == 78
    for name, (queries, _) in EXPECTED.items():
        record = json.loads((tmp_path / "out" / f"{name}_score.json").read_text())
        assert record["n_queries"] == queries, name
    assert set(summary.modalities) == {"image", "video", "visdoc"} and not summary.extra
