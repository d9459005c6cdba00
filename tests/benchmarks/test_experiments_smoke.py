"""``--smoke`` of every script in ``benchmarks/experiments/``: each runs its real code path in seconds
on a tiny MiniMMEB and tiny models, and prints and writes what a full run does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cocoa.data.items import Item, TrainPair
from tests.benchmarks.smoke import RunMain, script_module

GROUPS = {"classification", "vqa", "retrieval", "grounding", "image", "video", "IND", "OOD", "overall"}


def test_ablation_then_reworded(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path))
    assert re.search(r"seed 0 \(a\): overall \d+\.\d\d", out) and re.search(r"seed 0 \(c\): overall \d+\.\d\d", out)
    result = json.loads((tmp_path / "ablation.json").read_text())
    assert result["seeds"] == [0] and set(result["runs"]) == {"a", "c"}
    assert all(set(run) >= GROUPS for runs in result["runs"].values() for run in runs)
    assert result["command"].startswith("python benchmarks/experiments/ablation.py --smoke")
    table = (tmp_path / "ablation.md").read_text()
    assert "| (c) stage 2 + 3 |" in table and re.search(r"\| \(c\) \| 0 \| \d+\.\d\d \|", table)
    assert (tmp_path / "ablation.png").stat().st_size > 0

    out = run_main("experiments/reworded.py", "--smoke", "--data", str(smoke_mini), "--ablation", str(tmp_path))
    assert "seed 0 (a)" not in out, "the ablation run in --ablation is read, not made again"
    assert "| variant, reworded |" in out and "| (a) causal contrastive only (VLM2Vec-style) |" in out
    reworded = json.loads((tmp_path / "reworded.json").read_text())
    assert reworded["seeds"] == [0] and set(reworded["reworded"]) == set(reworded["original"]) == {"a", "c"}
    assert set(reworded["reworded"]["c"][0]) >= GROUPS


def test_compactness(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/compactness.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path))
    assert re.search(r"seed0: effective rank [\d.]+ of 96, alignment [\d.]+, uniformity -?[\d.]+ \(10 pairs\)", out)
    result = json.loads((tmp_path / "compactness.json").read_text())
    assert set(result) == {"seed0", "seed1"}
    assert all(set(r) == {"effective_rank", "dim", "alignment", "uniformity"} for r in result.values())
    assert (tmp_path / "compactness.png").stat().st_size > 0


def test_cpu_determinism(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/cpu_determinism.py", "--smoke", "--data", str(smoke_mini),
                   "--out", str(tmp_path / "rows.json"))
    assert "stage pretrain, 1 steps" in out and re.search(r"\| default \| \w+ \| [\d.]+ \| [\d.]+ \| [0-9a-f]{16} \|", out)
    [row] = json.loads((tmp_path / "rows.json").read_text())
    assert row["setting"] == "default" and row["env"] == {} and row["loss"] > 0 and len(row["sha256"]) == 16


def test_matryoshka(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/matryoshka.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path))
    assert re.search(r"\| 48 \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \|", out) and re.search(r"\| 96 \| [\d.]+ \|", out)
    result = json.loads((tmp_path / "matryoshka.json").read_text())
    assert result["dims"] == [48, 96] and set(result["scores"]) == {"plain", "matryoshka"}
    assert all(set(widths) == {"48", "96"} for widths in result["scores"].values())


def test_video_order(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/video_order.py", "--smoke", str(tmp_path), "--data", str(smoke_mini))
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", out, re.MULTILINE)
    assert [name for name, *_ in rows] == ["VideoT2V", "VideoV2T", "Grid3x3VideoT2V"]
    assert all(int(n) > 0 and int(n) == int(gold) + int(reverse) + int(other) for _, n, gold, reverse, other in rows)


def test_wording_probe(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/wording_probe.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path))
    assert "FashionMNIST P@1 (%) per wording" in out
    assert re.search(r"^\| `\{img\} Find the category of this image\.` \| [\d.]+ \|$", out, re.MULTILINE)
    assert (tmp_path / "probe0" / "model0" / "FashionMNIST_score.json").is_file()


def test_batch_mining(run_main: RunMain, smoke_mini: Path, tmp_path: Path) -> None:
    out = run_main("experiments/batch_mining.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path))
    for variant in ("random", "b3", "b3neg"):
        assert re.search(rf"batch 4 seed 0 {variant}: overall \d+\.\d\d", out), variant
    result = json.loads((tmp_path / "mining.json").read_text())
    assert result["seeds"] == [0] and set(result["runs"]["4"]) == {"random", "b3", "b3neg"}
    assert "b4-seed0" in result["mining_seconds"] and (tmp_path / "plan-b4-seed0" / "plan.json").is_file()
    assert "| b3neg |" in (tmp_path / "mining.md").read_text()
    shared = result["shared_answers"]["b4-seed0"]
    assert set(shared) == {"random", "b3"} and all(0 <= share <= 1 for share in shared.values())
    assert 0 <= result["negatives_in_batch"]["b4-seed0"] <= 1


def test_shared_answers_counts_rows_whose_target_another_row_of_the_batch_shares(monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    module = script_module("experiments/batch_mining.py", monkeypatch)
    pairs = [TrainPair(Item(f"q{i}"), Item(label)) for i, label in enumerate(["cat", "cat", "dog", "owl", "owl", "owl"])]
    batches = module.BatchPlan(6, 3, 1, 0)
    firsts = [batches.indices(step, 0) for step in range(batches.steps_per_epoch)]
    labels = [[pairs[i].positive.text for i in batch] for batch in firsts]
    want = sum(batch.count(label) > 1 for batch in labels for label in batch) / 6
    assert module.shared_answers(pairs, batches) == pytest.approx(want)


def test_negatives_in_batch_counts_rows_whose_negative_is_another_rows_target(monkeypatch: pytest.MonkeyPatch) -> None:
    module = script_module("experiments/batch_mining.py", monkeypatch)
    labels, negatives = ["cat", "dog", "owl", "cat"], ["dog", "owl", "cat", "cat"]
    pairs = [TrainPair(Item(f"q{i}"), Item(label), (Item(negative),)) for i, (label, negative)
             in enumerate(zip(labels, negatives, strict=True))]
    pairs.append(TrainPair(Item("q4"), Item("eel")))
    whole = module.BatchPlan(5, 5, 1, 0)
    # q0-q2's negatives are other rows' targets; q3's is its own and another row's (q0); q4 has none.
    assert module.negatives_in_batch(pairs, whole) == pytest.approx(4 / 5)
    halves = module.BatchPlan(4, 2, 1, 0)
    firsts = [halves.indices(step, 0) for step in range(halves.steps_per_epoch)]
    want = sum(any(pairs[j].positive.text == pairs[i].negatives[0].text for j in batch if j != i)
               for batch in firsts for i in batch) / 4
    assert module.negatives_in_batch(pairs[:4], halves) == pytest.approx(want)


def test_batch_mining_reports_a_grid_without_the_random_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = script_module("experiments/batch_mining.py", monkeypatch)
    results = {"seeds": [0], "runs": {"32": {"b3neg": [{"image": 1.0, "video": 2.0, "overall": 3.0}]}},
               "mining_seconds": {}, "stage_seconds": {}, "shared_answers": {}, "negatives_in_batch": {}}
    text = module.markdown(results, "cmd")
    assert "- b3neg: 1.00 / 2.00 / 3.00" in text and "minus random" not in text


def test_ablation_resumes_a_partly_finished_grid_of_the_same_recipe(run_main: RunMain, smoke_mini: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sets = ("--datasets", "FashionMNIST", "VideoT2V")
    first = run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path),
                     "--variants", "a", *sets)
    module = script_module("experiments/ablation.py", monkeypatch)
    trained: list[str] = []
    real = module.train_stage
    monkeypatch.setattr(module, "train_stage", lambda recipe, **kw: trained.append(recipe.train.output_dir)
                        or real(recipe, **kw))
    again = run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path),
                     "--variants", "a", "c", *sets)
    assert [Path(folder).name for folder in trained] == ["bridge", "bridge+contrastive"]  # a and stage 0 reused
    score = re.search(r"seed 0 \(a\): overall (\d+\.\d\d)", first)
    assert score and f"seed 0 (a): overall {score.group(1)}" in again
    result = json.loads((tmp_path / "ablation.json").read_text())
    assert set(result["runs"]) == {"a", "c"}
    for detail in (result["details"][key][0] for key in "ac"):  # the video set and its frame-order counts
        assert set(detail["video_sets"]) == {"VideoT2V"} and set(detail["order"]) == {"VideoT2V"}
        rows, gold, reverse = detail["order"]["VideoT2V"]
        assert rows == 4 and gold + reverse <= rows
    assert "| (c) minus (a), 95% interval |" in (tmp_path / "ablation.md").read_text()
    with pytest.raises(SystemExit, match=r"another recipe \(contrastive\.temperature differ\)"):
        run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path),
                 "--variants", "a", *sets, "--set", "contrastive:contrastive.temperature=0.5")
    assert len(trained) == 2  # the finished run of the other recipe is neither reused nor retrained
    saved = tmp_path / "seed0" / "contrastive-attention=causal" / "recipe.yaml"
    recipe = yaml.safe_load(saved.read_text())
    del recipe["contrastive"]["negatives_per_query"]  # written before the key existed, at its default
    saved.write_text(yaml.safe_dump(recipe))
    run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path),
             "--variants", "a", *sets)
    assert len(trained) == 2
    recipe["contrastive"]["retired_key"] = 1
    saved.write_text(yaml.safe_dump(recipe))
    with pytest.raises(SystemExit, match="a recipe this version cannot read"):
        run_main("experiments/ablation.py", "--smoke", "--data", str(smoke_mini), "--out", str(tmp_path),
                 "--variants", "a", *sets)
