"""cocoa.evaluate.runner: scoring, caching, resuming and failures, under protocols and on two ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cocoa.core.errors import DataError
from cocoa.core.protocol import PROTOCOLS
from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.items import Item
from cocoa.evaluate import evaluate
from cocoa.evaluate.summary import Summary
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import FakeEncoder, build_benchmark, two_ranks, write_eval, write_images


def test_scores_groups_and_outputs(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert {k: d.score for k, d in summary.datasets.items()} == {"Alpha": 100.0, "Beta": 0.0, "Gamma": 100.0}
    assert summary.complete
    assert summary.meta_tasks["classification"].score == 50.0
    assert summary.overall.score == pytest.approx(200 / 3)
    out = tmp_path / "out"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["complete"] is True
    assert saved["overall"]["score"] == pytest.approx(200 / 3)
    assert json.loads((out / "Beta_score.json").read_text())["precision_at_1"] == 0.0
    preds = [json.loads(line) for line in (out / "Gamma_pred.jsonl").read_text().splitlines()]
    assert preds == [{"query": 0, "pred": 0, "correct": True, "gold_rank": 1, "top_indices": [0, 1, 2],
                      "top_scores": pytest.approx([1.0, 1.0, 0.7071068], abs=1e-6)}]
    assert "| Overall | IND | OOD |" in (out / "summary.md").read_text()
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.rglob("*.tmp"))


def test_matches_brute_force_and_encodes_each_item_once(tmp_path) -> None:
    rng = np.random.default_rng(1)
    write_images(tmp_path / "images", *(f"{i}.png" for i in range(5)))
    pool = [(f"text {i}", f"{i % 5}.png" if i % 2 else "") for i in range(12)]
    rows = []
    for r in range(25):
        picks = rng.choice(len(pool), size=int(rng.integers(2, 8)), replace=False)
        rows.append((f"query {r % 10}", f"{r % 5}.png", [pool[p][0] for p in picks], [pool[p][1] for p in picks]))
    write_eval(tmp_path / "Rand.parquet", rows)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"datasets": [{"name": "Rand", "meta_task": "vqa", "split": "IND"}]}))
    encoder = FakeEncoder(dim=6)
    summary = evaluate(encoder, tmp_path, tmp_path / "out", image_root=tmp_path / "images", show_progress=False)

    def item(text: str, image: str) -> Item:
        return Item(text, str(tmp_path / "images" / image) if image else None)

    correct = 0
    for qt, qi, tt, ti in rows:
        q = encoder.vector(item(qt, qi)).astype(np.float64)
        sims = [float(q @ encoder.vector(item(t, i)).astype(np.float64)) for t, i in zip(tt, ti, strict=True)]
        correct += max(range(len(sims)), key=lambda k: (sims[k], -k)) == 0
    assert summary.datasets["Rand"].score == pytest.approx(100 * correct / len(rows))
    assert len(encoder.encoded) == len(set(encoder.encoded)) == summary.encoded
    assert summary.encoded < sum(1 + len(r[2]) for r in rows)


def test_second_run_encodes_nothing(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    first = FakeEncoder()
    summary = evaluate(first, data, tmp_path / "out1", cache_dir=tmp_path / "cache", show_progress=False)
    assert summary.encoded == len(first.encoded) == 9
    assert summary.cache_hits == 3
    second = FakeEncoder()
    again = evaluate(second, data, tmp_path / "out2", cache_dir=tmp_path / "cache", show_progress=False)
    assert second.encoded == []
    assert (again.encoded, again.cache_hits) == (0, 12)
    assert again.overall.score == summary.overall.score
    third = FakeEncoder()
    rerun = evaluate(third, data, tmp_path / "out1", show_progress=False)
    assert third.encoded == []
    assert rerun.resumed == ["Alpha", "Beta", "Gamma"]


def test_resume_after_a_crash_on_the_second_dataset(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    with pytest.raises(RuntimeError, match="simulated"):
        evaluate(FakeEncoder(fail_on="which"), data, tmp_path / "out", show_progress=False)
    assert (tmp_path / "out" / "Alpha_score.json").is_file()
    assert not (tmp_path / "out" / "Beta_score.json").exists()
    encoder = FakeEncoder()
    summary = evaluate(encoder, data, tmp_path / "out", show_progress=False)
    assert summary.resumed == ["Alpha"]
    assert summary.evaluated == ["Beta", "Gamma"]
    assert not any("classify" in text for text, _ in encoder.encoded)
    assert summary.complete


def test_a_subset_is_reported_as_partial(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", datasets=["Alpha"], show_progress=False)
    assert not summary.complete
    assert summary.missing == ["Beta", "Gamma"]
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["complete"] is False and saved["overall"]["partial"] is True
    assert "PARTIAL RUN: 1 of 3" in (tmp_path / "out" / "summary.md").read_text()


def test_mmeb_layout_without_manifest_is_partial_mmeb_v1(tmp_path) -> None:
    write_images(tmp_path / "images", "a.png")
    write_eval(tmp_path / "ImageNet-1K" / "test-00000-of-00001.parquet",
               [("<|image_1|> classify [1,0]", "a.png", ["[1,0] cat", "[0,1] dog"], ["", ""])])
    write_eval(tmp_path / "CIFAR-100" / "test-00000-of-00001.parquet",
               [("q", "", ["a", "b"], ["", ""])])
    summary = evaluate(FakeEncoder(), tmp_path, tmp_path / "out", show_progress=False)
    assert summary.benchmark == "MMEB-V1"
    assert list(summary.datasets) == ["ImageNet-1K"]
    assert (summary.overall.done, summary.overall.total, summary.complete) == (1, 36, False)


@pytest.mark.parametrize(("tgt_text", "tgt_img"), [
    (["[1,0] cat", "[0,1] dog"], ["a.png"]),
    (["[1,0] cat", "[0,1] dog"], ["missing.png", ""]),
])
def test_a_bad_row_fails_its_dataset_by_name_and_row_and_the_run_goes_on(tmp_path, tgt_text: list[str],
                                                                         tgt_img: list[str]) -> None:
    data = build_benchmark(tmp_path / "data")
    write_eval(data / "eval" / "Alpha.parquet", [
        ("ok [1,0]", "", ["[1,0] cat", "[0,1] dog"], ["", ""]),
        ("bad [1,0]", "", tgt_text, tgt_img),
    ])
    with pytest.raises(DataError) as caught:
        read_eval_dataset(data, "Alpha", data / "images")
    assert caught.value.row == 1
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert list(summary.failed) == ["Alpha"] and "row 2" in summary.failed["Alpha"], "shown 1-based"
    assert summary.evaluated == ["Beta", "Gamma"] and summary.missing == ["Alpha"] and not summary.complete
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["failed"] == summary.failed and saved["complete"] is False
    report = (tmp_path / "out" / "summary.md").read_text()
    assert "Not scored" in report and "| Alpha | " in report and "row 2" in report
    fixed = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False, skip_bad=True)
    assert fixed.failed == {} and fixed.complete


def test_a_dataset_that_fails_now_does_not_count_through_its_old_score(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    assert evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False).complete
    write_eval(data / "eval" / "Alpha.parquet", [("bad [1,0]", "", ["[1,0] cat"], ["missing.png"])])
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert list(summary.failed) == ["Alpha"] and "Alpha" in summary.missing and "Alpha" not in summary.datasets
    assert summary.overall.done == 2 and not summary.complete


def test_a_changed_dataset_not_run_again_is_stale_not_scored(tmp_path) -> None:
    data = build_benchmark(tmp_path / "data")
    full = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert full.complete and full.stale == {}
    write_eval(data / "eval" / "Alpha.parquet", [("only [1,0]", "", ["[1,0] cat", "[0,1] dog"], ["", ""])])
    other = evaluate(FakeEncoder(), data, tmp_path / "out", datasets=["Beta"], show_progress=False)
    assert list(other.stale) == ["Alpha"] and "Alpha.parquet changed" in other.stale["Alpha"]
    assert "Alpha" not in other.datasets and "Alpha" in other.missing and not other.complete
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["complete"] is False and "Alpha" in saved["stale"]
    assert "Stale" in (tmp_path / "out" / "summary.md").read_text()
    again = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert again.complete and again.stale == {} and "Alpha" in again.evaluated


@pytest.mark.slow
def test_two_ranks_score_every_query_as_one_process(runs: tuple[Path, Path, str]) -> None:
    one, two, stdout = runs
    a, b = (Summary.from_dict(json.loads((run / "summary.json").read_text())) for run in (one, two))
    assert (a.world_size, b.world_size) == (1, 2) and "on 2 ranks" in stdout
    assert b.complete and b.fingerprint == a.fingerprint and len(b.datasets) == len(a.datasets) > 20
    assert b.encoded == a.encoded > 0
    for name in a.datasets:
        assert b.datasets[name].score == a.datasets[name].score, name
        pred_a, pred_b = ((run / f"{name}_pred.jsonl").read_text() for run in (one, two))
        assert pred_a == pred_b, name


@pytest.mark.slow
def test_a_second_run_on_two_ranks_resumes_everything(runs: tuple[Path, Path, str], model_dir: Path,
                                                      mini_dir: Path) -> None:
    _, two, _ = runs
    two_ranks(model_dir, mini_dir, two)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["evaluated"] == [] and summary["encoded"] == 0 and len(summary["resumed"]) > 20


def test_another_protocol_re_encodes_and_the_same_one_resumes(model_dir: Path, tmp_path: Path) -> None:
    data = build_benchmark(tmp_path / "data")
    out, cache = tmp_path / "out", tmp_path / "cache"
    cocoa = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), data, out, cache_dir=cache,
                     show_progress=False)
    assert cocoa.protocol == PROTOCOLS["cocoa"].to_dict() and cocoa.encoded > 0
    score_file = json.loads((out / "Alpha_score.json").read_text())
    assert score_file["protocol"]["name"] == "cocoa"

    v1 = BatchEncoder.from_pretrained(model_dir, device="cpu", protocol=PROTOCOLS["vlm2vec-v1-low"])
    assert v1.fingerprint() != BatchEncoder.from_pretrained(model_dir, device="cpu").fingerprint()
    other = evaluate(v1, data, out, cache_dir=cache, show_progress=False)
    assert other.resumed == [] and other.encoded == cocoa.encoded, "nothing may come from the cocoa run"
    assert json.loads((out / "summary.json").read_text())["protocol"]["name"] == "vlm2vec-v1-low"
    assert json.loads((out / "Alpha_score.json").read_text())["protocol"]["image"]["square"] == 128
    assert "Protocol: `vlm2vec-v1-low`" in (out / "summary.md").read_text()

    again = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu", protocol=PROTOCOLS["vlm2vec-v1-low"]),
                     data, out, cache_dir=cache, show_progress=False)
    assert again.encoded == 0 and sorted(again.resumed) == sorted(other.evaluated)
