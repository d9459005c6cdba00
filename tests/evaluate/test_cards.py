"""Custom-named MMEB-eval folders: dataset cards, --dataset-info, "other", and extras kept out of a known overall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError, DataError
from cocoa.data.items import Item
from cocoa.evaluate import cli, evaluate
from cocoa.evaluate.cards import parse_dataset_info
from tests.helpers import FakeEncoder, write_eval, write_images

runner = CliRunner()
Row = tuple[str, str, list[str], list[str]]


def random_rows(rng: np.random.Generator, queries: int, tag: str) -> list[Row]:
    """Rows whose queries and candidates repeat across rows, some with images, some texts with vectors."""
    pool = [(f"{tag} cand {i}" + (f" [{i % 3 + 1},{i % 2}]" if i % 4 else ""), f"{i % 4}.png" if i % 3 == 0 else "")
            for i in range(14)]
    rows = []
    for r in range(queries):
        picks = rng.choice(len(pool), size=int(rng.integers(2, 7)), replace=False)
        query = f"{tag} query {r % 7}" + (f" [{r % 2},1]" if r % 3 else "")
        rows.append((query, f"{r % 4}.png" if r % 2 else "", [pool[p][0] for p in picks], [pool[p][1] for p in picks]))
    return rows


def brute_force_p1(encoder: FakeEncoder, rows: list[Row], images: Path) -> float:
    """Precision@1 (percent) by scoring every candidate of every row anew, ties to the first."""
    def item(text: str, image: str) -> Item:
        return Item(text, str(images / image) if image else None)

    correct = 0
    for qt, qi, tt, ti in rows:
        q = encoder.vector(item(qt, qi)).astype(np.float64)
        sims = [float(q @ encoder.vector(item(t, i)).astype(np.float64)) for t, i in zip(tt, ti, strict=True)]
        correct += max(range(len(sims)), key=lambda k: (sims[k], -k)) == 0
    return 100.0 * correct / len(rows)


def build_custom(root: Path) -> dict[str, list[Row]]:
    """An MMEB-eval (Hugging Face layout) folder of three custom datasets; Pets has a YAML card,
    Docs a JSON card beside a single parquet, Misc none."""
    rng = np.random.default_rng(3)
    write_images(root / "images", *(f"{i}.png" for i in range(4)))
    rows = {name: random_rows(rng, 20, name) for name in ("Pets", "Docs", "Misc")}
    write_eval(root / "Pets" / "test-00000-of-00001.parquet", rows["Pets"])
    (root / "Pets" / "card.yaml").write_text("meta_task: classification\nsplit: OOD\n")
    write_eval(root / "Docs.parquet", rows["Docs"])
    (root / "Docs.card.json").write_text(json.dumps({"meta_task": "VQA"}))
    write_eval(root / "Misc" / "test-00000-of-00001.parquet", rows["Misc"])
    return rows


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


def test_known_benchmark_overall_never_includes_custom_datasets(tmp_path) -> None:
    root = tmp_path / "data"
    write_images(root / "images", "a.png")
    write_eval(root / "ImageNet-1K" / "test-00000-of-00001.parquet",
               [("<|image_1|> classify [1,0]", "a.png", ["[1,0] cat", "[0,1] dog"], ["", ""])])
    write_eval(root / "Mine" / "test-00000-of-00001.parquet",
               [("which [1,0]", "", ["[0,1] dog", "[1,0] cat"], ["", ""])])
    summary = evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False,
                       dataset_info={"Mine": parse_dataset_info("Mine=retrieval:IND")[1]})
    assert summary.benchmark == "MMEB-V1"
    assert list(summary.datasets) == ["ImageNet-1K"]
    assert summary.overall.score == 100.0 and (summary.overall.done, summary.overall.total) == (1, 36)
    assert {name: (d.score, d.meta_task, d.split) for name, d in summary.extra.items()} == {
        "Mine": (0.0, "retrieval", "IND")}
    assert summary.meta_tasks["retrieval"].done == 0
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "## Not in MMEB-V1" in markdown and "| Mine | Retrieval | IND | 0.00 |" in markdown
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["extra"]["Mine"]["score"] == 0.0 and saved["overall"]["score"] == 100.0


def test_cli_scores_a_custom_folder_with_dataset_info(tmp_path, monkeypatch) -> None:
    rows = build_custom(tmp_path / "mine")
    monkeypatch.setattr(cli, "load_encoder", lambda model_dir, workers=0, protocol=None, frames=None, pack_tokens=None: FakeEncoder(dim=5))
    args = ["--model", "m", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "out"),
            "--dataset-info", "Misc=grounding:IND"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = brute_force_p1(FakeEncoder(dim=5), rows["Misc"], tmp_path / "mine" / "images")
    assert saved["datasets"]["Misc"] == {"score": pytest.approx(expected), "meta_task": "grounding", "split": "IND",
                                         "metric": "hit@1"}
    bad = runner.invoke(cli.app, [*args[:6], "--datasets", "Nope"])
    assert bad.exit_code == 1 and "dataset 'Nope' not found in the data folder" in bad.output
    wrong = runner.invoke(cli.app, [*args[:6], "--dataset-info", "Misc=ranking"])
    assert wrong.exit_code == 1 and "meta_task must be one of" in wrong.output


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


def test_a_card_contradicting_the_registry_is_refused(tmp_path) -> None:
    root = tmp_path / "data"
    write_eval(root / "ImageNet-1K" / "test-00000-of-00001.parquet", [("q", "", ["a", "b"], ["", ""])])
    (root / "ImageNet-1K" / "card.yaml").write_text("meta_task: vqa\n")
    with pytest.raises(DataError, match="ImageNet-1K is a dataset of MMEB-V1 with meta_task 'classification'"):
        evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False)
    with pytest.raises(ConfigError, match="fixed groups"):
        evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False,
                 dataset_info={"ImageNet-1K": parse_dataset_info("ImageNet-1K=vqa")[1]})


def test_an_empty_folder_keeps_its_error(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match="no dataset of MMEB-V1 found; found: nothing"):
        evaluate(FakeEncoder(), tmp_path / "data", tmp_path / "out", show_progress=False)
