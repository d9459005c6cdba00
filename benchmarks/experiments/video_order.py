"""Does a model use the order of frames? Counts, on MiniMMEB's video retrieval sets, how often the top-1
candidate is the gold and how often its reverse (not a test).

In ``VideoT2V``, ``VideoV2T`` and ``Grid3x3VideoT2V`` every row's first candidate is the gold and
its second the reverse (same frames, other order). A model that ignores the order splits its
gold-or-reverse choices about evenly; one that uses it picks the gold.

    python benchmarks/experiments/video_order.py runs/mini/eval
    python benchmarks/experiments/video_order.py --smoke

``--smoke`` first evaluates a randomly initialised tiny model on those sets of ``--data`` (default: a
tiny MiniMMEB it builds) into ``eval_dir`` (default: a temporary folder), then counts its predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import smoke_data, smoke_folder, smoke_model

SETS = ("VideoT2V", "VideoV2T", "Grid3x3VideoT2V")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, nargs="?", help="an evaluation output folder (with <set>_pred.jsonl)")
    parser.add_argument("--data", type=Path, help="with --smoke: the MiniMMEB to evaluate on")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.eval_dir = smoke_folder(args.eval_dir, "video-order")
        data = args.data or smoke_data(args.eval_dir / "data")
        encoder = BatchEncoder.from_pretrained(smoke_model(args.eval_dir / "model"))
        evaluate(encoder, data, args.eval_dir, SETS, show_progress=False)
    elif args.eval_dir is None:
        parser.error("eval_dir is required without --smoke")
    print("| set | rows | top-1 gold | top-1 reverse | other |\n|---|---|---|---|---|")
    for name, (rows, gold, reverse) in order_counts(args.eval_dir).items():
        print(f"| {name} | {rows} | {gold} | {reverse} | {rows - gold - reverse} |")


def order_counts(eval_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Rows, top-1 gold and top-1 reverse of each of ``SETS`` evaluated in ``eval_dir``."""
    counts = {}
    for name in SETS:
        path = eval_dir / f"{name}_pred.jsonl"
        if path.is_file():
            preds = Counter(json.loads(line)["pred"] for line in path.read_text().splitlines() if line)
            counts[name] = (sum(preds.values()), preds[0], preds[1])
    return counts


if __name__ == "__main__":
    main()
