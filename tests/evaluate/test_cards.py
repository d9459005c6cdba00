"""cocoa.evaluate.cards: dataset cards give custom datasets their groups; a bad card names its file."""

from __future__ import annotations

import json

import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.evaluate import evaluate
from tests.helpers import FakeEncoder, brute_force_p1, build_custom, write_eval


def test_custom_folder_scores_match_brute_force_with_card_groups(tmp_path) -> None:
    rows = build_custom(tmp_path / "mine")
    encoder = FakeEncoder(dim=5)
    summary = evaluate(encoder, tmp_path / "mine", tmp_path / "out", show_progress=False)
    expected = {name: brute_force_p1(encoder, r, tmp_path / "mine" / "images") for name, r in rows.items()}
    assert summary.benchmark == "mine"
    assert {name: d.score for name, d in summary.datasets.items()} == pytest.approx(expected)
    assert summary.complete and not summary.extra
    groups = {name: (d.meta_task, d.split) for name, d in summary.datasets.items()}
    assert groups == {"Pets": ("classification", "OOD"), "Docs": ("vqa", None), "Misc": ("other", None)}
    assert summary.meta_tasks["other"].score == pytest.approx(expected["Misc"])
    assert summary.splits["OOD"].score == pytest.approx(expected["Pets"])
    assert summary.overall.score == pytest.approx(sum(expected.values()) / 3)
    record = json.loads((tmp_path / "out" / "Misc_score.json").read_text())
    assert (record["meta_task"], record["metric"], record["score"]) == ("other", "hit@1", pytest.approx(expected["Misc"]))


@pytest.mark.parametrize(("card", "field"), [
    ("meta_task: ranking\n", None), ("meta_task: vqa\nsplitt: IND\n", "splitt"), ("split: IND\n", "meta_task"),
    ("meta_task: vqa\nmetric: ndcg@5\n", None),
])
def test_bad_cards_name_the_file(tmp_path, card: str, field: str | None) -> None:
    root = tmp_path / "data"
    write_eval(root / "Mine" / "test-00000-of-00001.parquet", [("q", "", ["a", "b"], ["", ""])])
    (root / "Mine" / "card.yaml").write_text(card)
    with pytest.raises((DataError, ConfigError)) as caught:
        evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False)
    if isinstance(caught.value, DataError):
        assert caught.value.file == str(root / "Mine" / "card.yaml")
        assert caught.value.field == field
    else:
        assert "needs the visual-document layout" in str(caught.value)
