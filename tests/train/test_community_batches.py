"""cocoa.train.community_batches: batches of whole communities, the same for any world size, stale plans refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.train.community_batches import CommunityBatches, CommunityPlan


def plan(batch_size: int = 8) -> CommunityPlan:
    groups = tuple(tuple(range(start, min(start + 4, 30))) for start in range(0, 30, 4))  # 7 of 4, 1 of 2
    return CommunityPlan(groups, batch_size, {"data": "abc", "teacher": "t"})


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_every_row_once_an_epoch(epoch: int) -> None:
    batches, left = plan().epoch(epoch, seed=3)
    rows = [r for b in batches for r in b] + left
    assert sorted(rows) == list(range(30)) and len(left) < 8
    assert all(len(b) == 8 for b in batches)


def test_batches_hold_whole_communities() -> None:
    batches, _ = plan().epoch(0, seed=0)
    whole = sum(1 for b in batches for c in plan().communities if set(c) <= set(b))
    assert whole >= 2 * len(batches) - 1  # two communities of 4 a batch, the odd one of 2 may straddle


def test_the_same_global_batches_for_one_and_two_ranks() -> None:
    one = CommunityBatches.checked(plan(), "abc", batch_size=8, world_size=1, seed=1)
    two = CommunityBatches.checked(plan(), "abc", batch_size=4, world_size=2, seed=1)
    assert one.steps_per_epoch == two.steps_per_epoch == 3
    for step in range(7):
        assert one.indices(step, 0) == two.indices(step, 0) + two.indices(step, 1)
    assert one.indices(0, 0) != one.indices(3, 0)  # the next epoch reshuffles communities


def test_a_stale_or_misfitting_plan_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="another training set"):
        CommunityBatches.checked(plan(), "other-digest", 8, 1, 0)
    with pytest.raises(ConfigError, match="global batches of 8"):
        CommunityBatches.checked(plan(), "abc", 8, 2, 0)


def test_plans_round_trip_and_bad_files_name_themselves(tmp_path: Path) -> None:
    plan().save(tmp_path)
    loaded = CommunityPlan.load(tmp_path)
    assert loaded.communities == plan().communities and loaded.manifest == plan().manifest
    with pytest.raises(DataError, match="no batch plan") as missing:
        CommunityPlan.load(tmp_path / "none")
    assert "plan.json" in str(missing.value)
    (tmp_path / "plan.json").write_text("{\"format\": 1}")
    with pytest.raises(DataError, match="not a batch plan"):
        CommunityPlan.load(tmp_path)
