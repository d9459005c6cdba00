"""cocoa.data.minimmeb.videos: clips and their reverses, both always among a motion query's candidates."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cocoa.data.minimmeb.videos import Clip
from tests.helpers import frames_of

MOTION_SETS = ("VideoEvent", "VideoT2V", "VideoV2T", "VideoQA", "Grid3x3VideoEvent", "Grid3x3VideoT2V")


def test_a_clip_and_its_reverse() -> None:
    clip = Clip("move", 2, "eval", 0, "dress", (0, 1), ("red", "red"))
    assert clip.caption() == "a red dress moves from the top-left to the top-right."
    assert clip.reverse().caption() == "a red dress moves from the top-right to the top-left."
    assert (clip.event(), clip.reverse().event()) == ("an item moves right", "an item moves left")
    assert clip.reverse().reverse() == clip
    appear = Clip("appear", 3, "eval", 0, "bag", (4, 4), ("blue", "blue"))
    assert appear.caption() == "a blue bag appears in the middle-center."
    assert appear.reverse().caption() == "a blue bag disappears from the middle-center."
    recolour = Clip("recolour", 2, "eval", 0, "coat", (3, 3), ("red", "green"))
    assert recolour.reverse().caption() == "a coat in the bottom-right turns from green to red."


def test_every_motion_query_keeps_its_reverse_among_the_candidates(mini_dir: Path) -> None:
    """No frame, nor the set of frames, tells the gold from the reverse: both are always candidates."""
    images = mini_dir / "images"
    checked = 0
    for name in MOTION_SETS:
        rows = pq.read_table(mini_dir / "eval" / f"{name}.parquet").to_pylist()
        assert rows, name
        for row in rows:
            if row["qry_video_path"]:
                clip = frames_of(images, row["qry_video_path"])
                assert len(set(clip)) == 2 and len(clip) == 8  # a before and an after state
            if name.endswith("T2V"):
                gold, reverse = row["tgt_video_path"][:2]
                a, b = frames_of(images, gold), frames_of(images, reverse)
                assert a != b and sorted(a) == sorted(b), (name, gold)
                checked += 1
            elif name.endswith("V2T"):
                assert row["tgt_text"][1] != row["tgt_text"][0] and len(row["tgt_text"]) == len(set(row["tgt_text"]))
    assert checked >= 2 * 12
