"""Where the server's time goes under load: the load test (server in a thread) with every model call timed.

Runs ``load_test.py --server thread`` with its arguments and prints, for the last 40 model
calls (the concurrent phase), how busy the model thread was, the mean call time, items and
longest sequence per call, and the mean model call of the one-at-a-time phase. Not a test.

    python benchmarks/speed/server_busy.py --clients 16 --requests 300
"""

from __future__ import annotations

import sys

import load_test
import numpy as np

from cocoa.inference.batcher import Batcher, EncodeCall

CALLS: list[EncodeCall] = []


def main() -> None:
    Batcher.observers.append(CALLS.append)
    sys.argv = [sys.argv[0], "--server", "thread", *sys.argv[1:]]
    load_test.main()
    last = CALLS[-40:]
    span = last[-1].end - last[0].start
    work = sum(call.end - call.start for call in last)
    print(f"last {len(last)} model calls: model busy {work / span:.0%} of {span:.2f} s, mean call "
          f"{work / len(last) * 1000:.1f} ms, mean items {np.mean([c.items for c in last]):.1f}, "
          f"mean longest sequence {np.mean([c.longest for c in last]):.1f} tokens")
    single = [call.end - call.start for call in CALLS[:-40] if call.items == 1]
    print(f"one-at-a-time phase: mean model call {np.mean(single) * 1000:.1f} ms over {len(single)} calls")


if __name__ == "__main__":
    main()
