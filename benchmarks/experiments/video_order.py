"""Does a model use the order of frames? Counts, on MiniMMEB's video retrieval sets, how often the top-1
candidate is the gold and how often its reverse (not a test).

In ``VideoT2V``, ``VideoV2T`` and ``Grid3x3VideoT2V`` every row's first candidate is the gold and
its second the reverse (same frames, other order). A model that ignores the order splits its
gold-or-reverse choices about evenly; one that uses it picks the gold.

    python benchmarks/experiments/video_order.py runs/mini/eval
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

SETS = ("VideoT2V", "VideoV2T", "Grid3x3VideoT2V")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, help="an evaluation output folder (with <set>_pred.jsonl)")
    args = parser.parse_args()
    print("| set | rows | top-1 gold | top-1 reverse | other |\n|---|---|---|---|---|")
    for name in SETS:
        path = args.eval_dir / f"{name}_pred.jsonl"
        if not path.is_file():
            continue
        preds = Counter(json.loads(line)["pred"] for line in path.read_text().splitlines() if line)
        rows = sum(preds.values())
        print(f"| {name} | {rows} | {preds[0]} | {preds[1]} | {rows - preds[0] - preds[1]} |")


if __name__ == "__main__":
    main()
