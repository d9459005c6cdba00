"""Stage 3's batches drawn from a mined plan: whole communities of mutual hard negatives per batch.

A plan folder (written by ``cocoa mine``) holds ``plan.json``: the communities of training rows
(:func:`cocoa.mining.graph.communities`), the global batch size and a manifest naming the teacher,
the identity of the training set and the mining settings. Each epoch shuffles the communities
(seeded by the training seed and the epoch), lays them end to end and cuts global batches of
``batch_size`` rows, so a batch holds about ``batch_size / size`` whole communities and every row
is used once an epoch, except the fewer than ``batch_size`` rows the last cut leaves (other rows
each epoch). A global batch is split over ranks in order, so any world size trains on the same
global batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cocoa.core.errors import ConfigError, DataError
from cocoa.core.files import write_json
from cocoa.train.batches import total_steps

PLAN_FILE = "plan.json"
#: The plan folder's MMEB-train copy of the rows with their mined ``neg_*`` columns (a ``data.root``).
NEGATIVES_DIR = "negatives"


def mined_by(data_root: str | Path) -> Path | None:
    """The plan folder whose mined negatives ``data_root`` is (a plan's ``negatives/``), else ``None``."""
    root = Path(data_root)
    return root.parent if root.name == NEGATIVES_DIR and (root.parent / PLAN_FILE).is_file() else None


PLAN_FORMAT = 1


@dataclass(frozen=True, eq=False)
class CommunityPlan:
    """Communities of row indices, the global batch size they are cut into, and how they were mined."""

    communities: tuple[tuple[int, ...], ...]
    batch_size: int
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return sum(len(c) for c in self.communities)

    def epoch(self, epoch: int, seed: int) -> tuple[list[list[int]], list[int]]:
        """The epoch's global batches, and the rows its last cut leaves out."""
        order = np.random.default_rng([seed, epoch, 3]).permutation(len(self.communities))
        flat = [row for i in order for row in self.communities[i]]
        full = len(flat) // self.batch_size * self.batch_size
        return [flat[i:i + self.batch_size] for i in range(0, full, self.batch_size)], flat[full:]

    def save(self, folder: Path) -> None:
        """Write ``plan.json`` atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / PLAN_FILE, {"format": PLAN_FORMAT, "batch_size": self.batch_size,
                                        "manifest": self.manifest, "communities": [list(c) for c in self.communities]})

    @classmethod
    def load(cls, folder: str | Path) -> CommunityPlan:
        """Read a plan folder; a missing or malformed ``plan.json`` is a :class:`DataError` naming it."""
        path = Path(folder) / PLAN_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != PLAN_FORMAT:
                raise DataError(f"plan format {raw.get('format')!r}, this cocoa reads {PLAN_FORMAT}", file=str(path))
            return cls(tuple(tuple(int(r) for r in c) for c in raw["communities"]), int(raw["batch_size"]),
                       dict(raw["manifest"]))
        except FileNotFoundError as exc:
            raise DataError("no batch plan here (cocoa mine writes one)", file=str(path)) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"not a batch plan: {exc}", file=str(path)) from exc


@dataclass(frozen=True)
class CommunityBatches:
    """:class:`~cocoa.train.batches.BatchPlan`'s interface over a :class:`CommunityPlan`."""

    plan: CommunityPlan
    batch_size: int
    world_size: int = 1
    seed: int = 0

    @classmethod
    def checked(cls, plan: CommunityPlan, data: str, batch_size: int, world_size: int, seed: int) -> CommunityBatches:
        """The plan for a training set with digest ``data`` at ``batch_size`` per rank, or a
        :class:`ConfigError` saying why it does not fit (another training set, another global batch)."""
        made_for = plan.manifest.get("data")
        if made_for != data:
            raise ConfigError(f"the batch plan was mined for another training set (data {str(made_for)[:12]}, "
                              f"these rows {data[:12]}): mine again for these data and subsets")
        if plan.batch_size != batch_size * world_size:
            raise ConfigError(f"the batch plan cuts global batches of {plan.batch_size}; train.batch_size "
                              f"{batch_size} x {world_size} processes is {batch_size * world_size}")
        return cls(plan, batch_size, world_size, seed)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def n_examples(self) -> int:
        return self.plan.rows

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.rows // self.global_batch

    def total_steps(self, max_steps: int | None, epochs: float | None) -> int:
        return total_steps(self.steps_per_epoch, max_steps, epochs)

    def indices(self, step: int, rank: int) -> list[int]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        batch = _epoch_batches(self.plan, epoch, self.seed)[offset]
        return batch[rank * self.batch_size:(rank + 1) * self.batch_size]


@lru_cache(maxsize=2)
def _epoch_batches(plan: CommunityPlan, epoch: int, seed: int) -> list[list[int]]:
    return plan.epoch(epoch, seed)[0]
