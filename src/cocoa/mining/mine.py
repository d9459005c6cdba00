"""``cocoa mine``: rank a training set with a teacher, write a batch plan and mined hard negatives.

For each subset the teacher embeds every query and every positive target; FAISS ranks the
subset's targets for each query (exact inner product on L2-normalised vectors). From ranks
``[p, p + m)`` come the preference graph and its METIS communities
(:mod:`cocoa.mining.graph`), cut per subset, and one hard negative per query. The output folder:

* ``plan.json`` - the communities and the global batch size (stage 3 reads it as ``data.batches``);
* ``negatives/train/<subset>.jsonl`` - the subset's rows in MMEB-train columns with the mined
  ``neg_text`` / ``neg_image_path`` / ``neg_video_path`` (any trainer reads them; in cocoa,
  ``data.root`` there with ``contrastive.hard_negatives: true``);
* ``embeddings.npz`` - the teacher's vectors, kept so a rerun with other settings ranks again
  without encoding.

The manifest (teacher fingerprint, training-set digest, p, m, community size, batch size, seed)
is in ``plan.json``; a rerun with the same manifest does nothing, and stage 3 refuses a plan made
for other rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cocoa.core.errors import ConfigError
from cocoa.core.files import atomic_path, write_jsonl
from cocoa.data.items import Item, TrainPair
from cocoa.data.train_pairs import pairs_digest
from cocoa.inference.embedder import Embedder
from cocoa.mining.graph import communities, hard_negatives, preference_graph
from cocoa.train.community_batches import PLAN_FILE, CommunityPlan

EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class MineSettings:
    """B3's knobs: skip the top ``p`` ranks (false negatives), take ranks ``[p, p + m)`` as strong
    negatives, communities of about ``size`` rows, global batches of ``batch_size`` rows."""

    p: int = 10
    m: int = 20
    size: int = 8
    batch_size: int = 64
    seed: int = 0

    def check(self) -> None:
        if self.p < 0 or self.m < 1 or self.size < 1 or self.batch_size < 1:
            raise ConfigError(f"need p >= 0 and m, size, batch_size >= 1; got {self}")
        if self.size > self.batch_size:
            raise ConfigError(f"communities of {self.size} rows do not fit batches of {self.batch_size}")


def rank_targets(queries: np.ndarray, targets: np.ndarray, depth: int) -> np.ndarray:
    """``(queries, depth)`` target indices by decreasing inner product (``-1`` past the targets)."""
    import faiss

    index = faiss.IndexFlatIP(targets.shape[1])
    index.add(np.ascontiguousarray(targets, dtype=np.float32))
    _, ranked = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(depth, len(targets)))
    if ranked.shape[1] < depth:
        ranked = np.pad(ranked, ((0, 0), (0, depth - ranked.shape[1])), constant_values=-1)
    return ranked.astype(np.int64)


def _side(item: Item, text: str, image: str, video: str) -> dict:
    out: dict = {text: item.text, image: str(item.image) if isinstance(item.image, str) else ""}
    if item.video is not None:
        out[video] = item.video if isinstance(item.video, str) else list(item.video)
    return out


def negatives_rows(pairs: Sequence[TrainPair], negative: np.ndarray) -> list[dict]:
    """MMEB-train rows of ``pairs`` whose negative is the positive of row ``negative[i]`` (none at -1)."""
    rows = []
    for pair, j in zip(pairs, negative, strict=True):
        row = {**_side(pair.query, "qry", "qry_image_path", "qry_video_path"),
               **_side(pair.positive, "pos_text", "pos_image_path", "pos_video_path")}
        if j >= 0:
            row.update(_side(pairs[j].positive, "neg_text", "neg_image_path", "neg_video_path"))
        rows.append(row)
    return rows


def _embeddings(teacher: Embedder, pairs: Sequence[TrainPair], out: Path, batch_size: int,
                key: dict) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's query and target vectors, read back when ``embeddings.npz`` has them for ``key``."""
    path = out / EMBEDDINGS_FILE
    if path.is_file():
        with np.load(path) as saved:
            if json.loads(str(saved["key"])) == key:
                return saved["queries"], saved["targets"]
    queries = teacher.encoder.encode_items([p.query for p in pairs], batch_size=batch_size, show_progress=True)
    targets = teacher.encoder.encode_items([p.positive for p in pairs], batch_size=batch_size, show_progress=True)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, queries=queries, targets=targets, key=np.array(json.dumps(key)))
    return queries, targets


def mine(pairs: Sequence[TrainPair], teacher: Embedder, out: str | Path, settings: MineSettings = MineSettings(), *,
         batch_size: int = 32) -> CommunityPlan:
    """Mine ``pairs`` (as stage 3 reads them) with ``teacher`` into ``out`` and return the plan.

    Example:
        >>> pairs = read_train_pairs(Path("data"), None, Path("data/images"))  # doctest: +SKIP
        >>> mine(pairs, Embedder.from_pretrained("runs/mini/2-bridge/model"), "runs/plan")  # doctest: +SKIP
    """
    settings.check()
    out = Path(out)
    data = pairs_digest(pairs)
    manifest = {"teacher": teacher.fingerprint, "data": data, "rows": len(pairs), **asdict(settings)}
    if (out / PLAN_FILE).is_file():
        done = CommunityPlan.load(out)
        if done.manifest.get("done") and {k: v for k, v in done.manifest.items() if k not in ("done", "seconds")} == manifest:
            return done
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    queries, targets = _embeddings(teacher, pairs, out, batch_size, {"teacher": teacher.fingerprint, "data": data})
    by_subset: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_subset.setdefault(pair.subset, []).append(i)
    groups: list[tuple[int, ...]] = []
    for subset, rows in sorted(by_subset.items()):
        index = np.asarray(rows)
        ranked = rank_targets(queries[index], targets[index], settings.p + settings.m)  # subset-local rows
        for community in communities(preference_graph(ranked, settings.p, settings.m), settings.size, settings.seed):
            groups.append(tuple(int(index[i]) for i in community))
        picked = hard_negatives(ranked, settings.p, settings.m, 1, settings.seed)[:, 0]
        write_jsonl(out / "negatives" / "train" / f"{subset or 'train'}.jsonl",
                    negatives_rows([pairs[i] for i in rows], picked))
    plan = CommunityPlan(tuple(groups), settings.batch_size,
                         {**manifest, "done": True, "seconds": round(time.perf_counter() - start, 1)})
    plan.save(out)
    return plan
