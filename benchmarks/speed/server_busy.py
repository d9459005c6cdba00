"""Where the server's time goes under load: the load test (server in a thread) with every model call timed.

Runs ``load_test.py --server thread`` with its arguments and prints, for the last 40 model
calls (the concurrent phase), how busy the model thread was, the mean call time, items and
longest sequence per call, and the mean model call of the one-at-a-time phase. Not a test.

    python benchmarks/speed/server_busy.py --clients 16 --requests 300
    python benchmarks/speed/server_busy.py --smoke     # load_test.py's smoke
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import load_test
import numpy as np

from cocoa.inference.batcher import Batcher, EncodeCall


def main(argv: Sequence[str] | None = None) -> None:
    calls: list[EncodeCall] = []
    Batcher.observers.append(calls.append)
    try:
        load_test.main(["--server", "thread", *(sys.argv[1:] if argv is None else argv)])
    finally:
        Batcher.observers.remove(calls.append)
    last = calls[-40:]
    span = last[-1].end - last[0].start
    work = sum(call.end - call.start for call in last)
    print(f"last {len(last)} model calls: model busy {work / span:.0%} of {span:.2f} s, mean call "
          f"{work / len(last) * 1000:.1f} ms, mean items {np.mean([c.items for c in last]):.1f}, "
          f"mean longest sequence {np.mean([c.longest for c in last]):.1f} tokens")
    single = [call.end - call.start for call in calls[:-40] if call.items == 1]
    print(f"one-at-a-time phase: mean model call {np.mean(single) * 1000:.1f} ms over {len(single)} calls")


if __name__ == "__main__":
    main()
