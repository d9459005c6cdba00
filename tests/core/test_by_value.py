"""DataLoader workers send batches by value, so a long temporary path cannot make the parent wait forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from cocoa.core.batch import Batch
from cocoa.core.by_value import to_arrays, to_tensors


def batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(input_ids=torch.randint(0, 9, (2, 5), generator=g), roles=torch.zeros(2, 5, dtype=torch.long),
                 mm_token_type_ids=torch.zeros(2, 5, dtype=torch.long), labels=torch.full((2, 5), -100),
                 pool_index=torch.tensor([4, 3]), pixel_values=torch.rand(6, 8, generator=g).to(torch.bfloat16))


def test_round_trip_keeps_every_tensor_and_the_structure() -> None:
    nested = {"query": batch(0), "targets": [batch(1), None], "pair": (torch.arange(3), "text"), "n": 3}
    sent = to_arrays(nested)
    assert not any(isinstance(v, torch.Tensor) for v in (sent["query"].input_ids, sent["pair"][0]))
    back = to_tensors(sent)
    for got, want in ((back["query"], nested["query"]), (back["targets"][0], nested["targets"][0])):
        for name in ("input_ids", "pool_index", "pixel_values"):
            assert getattr(got, name).dtype == getattr(want, name).dtype
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert got.image_grid_thw is None
    assert back["targets"][1] is None and back["pair"][1] == "text" and back["n"] == 3
    assert torch.equal(back["pair"][0], torch.arange(3))


def test_workers_finish_under_a_temporary_path_too_long_for_a_socket(tmp_path: Path) -> None:
    long = tmp_path / ("t" * 60) / ("u" * 60)  # over the ~107 bytes a Unix socket address allows
    long.mkdir(parents=True)
    code = ("import torch\n"
            "from torch.utils.data import DataLoader\n"
            "from cocoa.core.by_value import to_arrays, to_tensors\n"
            "from tests.core.test_by_value import batch\n"
            "class Data(torch.utils.data.Dataset):\n"
            "    def __len__(self): return 6\n"
            "    def __getitem__(self, i): return batch(i)\n"
            "loader = DataLoader(Data(), batch_size=None, num_workers=2, collate_fn=to_arrays, timeout=60)\n"
            "got = [to_tensors(b) for b in loader]\n"
            "assert all(torch.equal(g.input_ids, batch(i).input_ids) for i, g in enumerate(got))\n"
            "print('ok', len(got))\n")
    env = {**os.environ, "TMPDIR": str(long), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok 6" in done.stdout, done.stderr[-2000:]


def test_dataclasses_with_derived_fields_and_named_tuples_come_back_whole() -> None:
    from dataclasses import dataclass, field
    from typing import NamedTuple

    @dataclass
    class Derived:
        x: torch.Tensor
        n: int = field(init=False)

        def __post_init__(self) -> None:
            self.n = int(self.x.numel())

    class Pair(NamedTuple):
        a: torch.Tensor
        b: str

    sent = to_arrays([Derived(torch.arange(4)), Pair(torch.ones(2), "b")])
    derived, pair = to_tensors(sent)
    assert torch.equal(derived.x, torch.arange(4)) and derived.n == 4
    assert isinstance(pair, Pair) and torch.equal(pair.a, torch.ones(2)) and pair.b == "b"
