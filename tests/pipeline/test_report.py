"""cocoa.pipeline.report: each scored dataset's margin over chance."""

from __future__ import annotations

from cocoa.pipeline.report import chance_lines


def test_chance_lines_give_the_margin_of_each_scored_dataset():
    summary = {"datasets": {"D0": {"score": 40.0}, "D1": {"score": 5.5}, "X": {"score": 1.0}}}
    lines = chance_lines(summary, {"D0": 25.0, "D1": 10.0})
    assert lines[-2:] == ["| D0 | 40.00 | 25.00 | +15.00 |", "| D1 | 5.50 | 10.00 | -4.50 |"]
