"""``cocoa mine``: rank a training set with a teacher, write a batch plan and mined hard negatives.

For each subset the teacher embeds every query and every positive target; FAISS ranks the
subset's distinct targets for each query (exact inner product on L2-normalised vectors; rows whose
positives have the same content, such as the rows of one class label, share one target, so a
query's own answer never counts as its negative, under any row). From ranks
``[p, p + m)`` (``p`` and ``m`` per subset if given; as in B3, the query's own target holds its rank,
usually 0) come the preference graph and its METIS communities (:mod:`cocoa.mining.graph`), cut per
subset, and ``negatives`` hard negatives per query. A subset with no more than ``p`` distinct targets
(a classification set with few labels) gets neither: it is named in a warning, counted in the
manifest's ``without_negatives``, and its rows keep their own negatives. The output folder:

* ``plan.json`` - the communities and the global batch size (stage 3 reads it as ``data.batches``);
* ``negatives/train/<subset>.jsonl`` - the subset's rows in MMEB-train columns with the first mined
  negative in ``neg_text`` / ``neg_image_path`` / ``neg_video_path`` (any trainer reads it) and the
  others in ``extra_negatives`` (in cocoa, ``data.root`` there with ``contrastive.hard_negatives:
  true`` and ``negatives_per_query: N``);
* ``embeddings.npz`` - the teacher's vectors, kept so a rerun with other settings ranks again
  without encoding; until they are all there, ``encoded/`` holds the shards encoded so far
  (each rank encodes its share under ``torchrun``; a killed run resumes at the first unfinished one).

The manifest (teacher fingerprint, training-set digest, p, m, community size, batch size, seed)
is in ``plan.json``; a rerun with the same manifest does nothing, a rerun with another removes the old
plan before it writes new negatives, and stage 3 refuses a plan made for other rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cocoa.core.defaults import SHARD_SIZE
from cocoa.core.distributed import barrier, from_main, rank_and_world
from cocoa.core.errors import ConfigError
from cocoa.core.files import atomic_path, write_json, write_jsonl
from cocoa.data.items import Item, TrainPair
from cocoa.data.train_pairs import EXTRA_NEGATIVES, NEGATIVE_FIELDS, pairs_digest
from cocoa.inference.corpus import Corpus
from cocoa.inference.corpus_encoder import encode_corpus
from cocoa.inference.embedder import Embedder
from cocoa.inference.shards import ShardReader
from cocoa.mining.graph import communities, hard_negatives, preference_graph
from cocoa.train.community_batches import NEGATIVES_DIR, PLAN_FILE, CommunityPlan

EMBEDDINGS_FILE = "embeddings.npz"
#: Shard folders of a run still encoding (``cocoa encode``'s format), removed once ``embeddings.npz`` is written.
ENCODED_DIR = "encoded"
SIDES = ("queries", "targets")
#: How targets are ranked, recorded in the manifest: one entry per distinct positive content.
RANKING = "distinct-targets"
#: What a row with no mined negative carries (the manifest records it: plans that dropped them are mined again).
UNMINED = "own-negatives"
#: Seconds between the other ranks' looks for rank 0's finished plan.
PLAN_POLL_S = 2.0
#: Manifest entries that describe a finished plan rather than ask for one (not compared on a rerun).
OUTCOME_KEYS = ("done", "seconds", "without_negatives")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MineSettings:
    """B3's knobs: skip the top ``p`` ranks (false negatives), take ranks ``[p, p + m)`` as strong
    negatives, communities of about ``size`` rows, global batches of ``batch_size`` rows, and
    ``negatives`` hard negatives per query drawn from the same ranks.

    ``subsets`` gives a subset its own ``(p, m)``, as B3 sets them per task family (a subset of few
    distinct targets, such as a classification label set, wants a small ``p``).
    """

    p: int = 10
    m: int = 20
    size: int = 8
    batch_size: int = 64
    seed: int = 0
    subsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    negatives: int = 1

    def check(self) -> None:
        for subset, (p, m) in {"": (self.p, self.m), **self.subsets}.items():
            if p < 0 or m < 1:
                raise ConfigError(f"need p >= 0 and m >= 1{' for subset ' + subset if subset else ''}; got {p}, {m}")
        if self.size < 1 or self.batch_size < 1 or self.negatives < 1:
            raise ConfigError(f"need size, batch_size and negatives >= 1; got {self.size}, {self.batch_size}, "
                              f"{self.negatives}")
        for subset, (_, m) in {"": (self.p, self.m), **self.subsets}.items():
            if self.negatives > m:
                raise ConfigError(f"{self.negatives} negatives per query do not fit the window of m={m} ranks"
                                  f"{' of subset ' + subset if subset else ''}")
        if self.size > self.batch_size:
            raise ConfigError(f"communities of {self.size} rows do not fit batches of {self.batch_size}")

    def ranks(self, subset: str) -> tuple[int, int]:
        """``(p, m)`` for ``subset``."""
        return self.subsets.get(subset, (self.p, self.m))

    def record(self) -> dict:
        """The settings as the manifest stores them (JSON types)."""
        return json.loads(json.dumps(asdict(self)))


def rank_targets(queries: np.ndarray, targets: np.ndarray, depth: int) -> np.ndarray:
    """``(queries, depth)`` target indices by decreasing inner product (``-1`` past the targets)."""
    import faiss

    index = faiss.IndexFlatIP(targets.shape[1])
    index.add(np.ascontiguousarray(targets, dtype=np.float32))
    _, ranked = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(depth, len(targets)))
    if ranked.shape[1] < depth:
        ranked = np.pad(ranked, ((0, 0), (0, depth - ranked.shape[1])), constant_values=-1)
    return ranked.astype(np.int64)


def rank_distinct(queries: np.ndarray, targets: np.ndarray, keys: Sequence[object], depth: int,
                  seed: int = 0) -> np.ndarray:
    """``(rows, depth)`` rows by decreasing similarity of their targets to each query, one row per distinct
    target (rows with equal ``keys`` share one; a random one of them stands for it, seeded) and never a
    row sharing the query's own target (``-1`` pads). With distinct keys: :func:`rank_targets` without
    the query's own row."""
    group: dict[object, int] = {}
    group_of = np.array([group.setdefault(key, len(group)) for key in keys], dtype=np.int64)
    members: list[list[int]] = [[] for _ in group]
    for row, g in enumerate(group_of):
        members[g].append(row)
    first = np.array([rows[0] for rows in members], dtype=np.int64)
    ranked = rank_targets(queries, targets[first], depth)  # group ids
    rng = np.random.default_rng(seed)
    out = np.full(ranked.shape, -1, dtype=np.int64)
    for i, line in enumerate(ranked.tolist()):
        for k, g in enumerate(line):
            if g >= 0 and g != group_of[i]:
                rows = members[g]
                out[i, k] = rows[0] if len(rows) == 1 else rows[int(rng.integers(len(rows)))]
    return out


def _side(item: Item, text: str, image: str, video: str) -> dict:
    out: dict = {text: item.text, image: str(item.image) if isinstance(item.image, str) else ""}
    if item.video is not None:
        out[video] = item.video if isinstance(item.video, str) else list(item.video)
    return out


def negatives_rows(pairs: Sequence[TrainPair], negatives: np.ndarray) -> list[dict]:
    """MMEB-train rows of ``pairs`` whose negatives are the positives of rows ``negatives[i]`` (``(rows, n)``;
    ``-1`` is none): the first in the ``neg_*`` columns, the others in ``extra_negatives``. A row with
    none mined keeps its own negatives (if any)."""
    rows = []
    for pair, picked in zip(pairs, negatives, strict=True):
        row = {**_side(pair.query, "qry", "qry_image_path", "qry_video_path"),
               **_side(pair.positive, "pos_text", "pos_image_path", "pos_video_path")}
        chosen = [pairs[j].positive for j in picked if j >= 0] or list(pair.negatives)
        sides = [_side(item, *NEGATIVE_FIELDS) for item in chosen]
        if sides:
            row.update(sides[0])
        if len(sides) > 1:
            row[EXTRA_NEGATIVES] = sides[1:]
        rows.append(row)
    return rows


def _corpus_row(item: Item) -> dict:
    """``item`` as a row of ``cocoa encode``'s JSONL input (absolute media paths)."""
    video = item.video if item.video is None or isinstance(item.video, str) else list(item.video)
    return {"text": item.text, "image": item.image if isinstance(item.image, str) else None, "video": video}


def _encode(teacher: Embedder, pairs: Sequence[TrainPair], folder: Path, batch_size: int, shard_size: int,
            key: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Queries and positives encoded into shard folders under ``folder`` (:func:`encode_corpus`: each
    rank its share, a finished shard skipped on a rerun); the vectors on rank 0, ``None`` elsewhere.
    A folder left by another teacher or other rows is replaced."""
    rank, _ = rank_and_world()
    if rank == 0:
        key_file = folder / "key.json"
        if folder.exists() and (not key_file.is_file() or json.loads(key_file.read_text()) != key):
            shutil.rmtree(folder)
        if not key_file.is_file():
            write_jsonl(folder / "queries.jsonl", [_corpus_row(p.query) for p in pairs])
            write_jsonl(folder / "targets.jsonl", [_corpus_row(p.positive) for p in pairs])
            write_json(key_file, key)
    barrier()
    for side in SIDES:
        encode_corpus(teacher, Corpus(folder / f"{side}.jsonl", allow_outside=True), folder / side,
                      shard_size=shard_size, batch_size=batch_size)
    if rank != 0:
        return None
    queries, targets = (np.concatenate([shard.vectors for shard in ShardReader(folder / side)]) for side in SIDES)
    return queries, targets


def _embeddings(teacher: Embedder, pairs: Sequence[TrainPair], out: Path, batch_size: int, shard_size: int,
                key: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The teacher's query and target vectors on rank 0 (``None`` on the others): read back from
    ``embeddings.npz`` when it holds them for ``key``, else encoded (resumably) and saved there."""
    path = out / EMBEDDINGS_FILE
    saved = None
    if rank_and_world()[0] == 0 and path.is_file():
        with np.load(path) as npz:
            if json.loads(str(npz["key"])) == key:
                saved = npz["queries"], npz["targets"]
    if from_main(saved is not None):
        return saved
    vectors = _encode(teacher, pairs, out / ENCODED_DIR, batch_size, shard_size, key)
    if vectors is not None:
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(handle, queries=vectors[0], targets=vectors[1], key=np.array(json.dumps(key)))
        shutil.rmtree(out / ENCODED_DIR)  # the vectors are in embeddings.npz now
    return vectors


def mine(pairs: Sequence[TrainPair], teacher: Embedder, out: str | Path, settings: MineSettings = MineSettings(), *,
         batch_size: int = 32, shard_size: int = SHARD_SIZE) -> CommunityPlan:
    """Mine ``pairs`` (as stage 3 reads them) with ``teacher`` into ``out`` and return the plan.

    Under ``torchrun`` every rank calls it: each encodes its share of the shards of ``shard_size``
    items, rank 0 ranks and writes the plan, and the others return it once written. A run killed
    while encoding resumes at the first unfinished shard.

    Example:
        >>> pairs = read_train_pairs(Path("data"), None, Path("data/images"))  # doctest: +SKIP
        >>> mine(pairs, Embedder.from_pretrained("runs/mini/2-bridge/model"), "runs/plan")  # doctest: +SKIP
    """
    settings.check()
    out = Path(out)
    data = pairs_digest(pairs)
    manifest = {"teacher": teacher.fingerprint, "data": data, "rows": len(pairs), "ranking": RANKING,
                "unmined": UNMINED, **settings.record()}
    unknown = sorted(set(settings.subsets) - {pair.subset for pair in pairs})
    if unknown:
        raise ConfigError(f"subsets with their own ranks are not in the training set: {', '.join(unknown)}")
    rank, _ = rank_and_world()
    if from_main(rank == 0 and _finished(out, manifest)):
        return CommunityPlan.load(out)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    vectors = _embeddings(teacher, pairs, out, batch_size, shard_size, {"teacher": teacher.fingerprint, "data": data})
    if vectors is None:  # not rank 0: wait for its plan (polled: ranking can outlast a collective's timeout)
        while not _finished(out, manifest):
            time.sleep(PLAN_POLL_S)
        return CommunityPlan.load(out)
    queries, targets = vectors
    by_subset: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_subset.setdefault(pair.subset, []).append(i)
    (out / PLAN_FILE).unlink(missing_ok=True)  # an older plan never stands beside these negatives
    shutil.rmtree(out / NEGATIVES_DIR, ignore_errors=True)
    groups: list[tuple[int, ...]] = []
    without: dict[str, int] = {}
    for subset, rows in sorted(by_subset.items()):
        index = np.asarray(rows)
        p, m = settings.ranks(subset)
        keys = [pairs[i].positive.key() for i in rows]
        if (distinct := len(set(keys))) <= p:
            log.warning("subset %s has %d distinct targets, not more than p=%d: its rows get no graph edges and no "
                        "mined negatives, so they keep their own (give it its own ranks: --subset-ranks %s=P,M)",
                        subset, distinct, p, subset)
        ranked = rank_distinct(queries[index], targets[index], keys, p + m, settings.seed)  # subset-local rows
        for community in communities(preference_graph(ranked, p, m), settings.size, settings.seed):
            groups.append(tuple(int(index[i]) for i in community))
        picked = hard_negatives(ranked, p, m, settings.negatives, settings.seed)
        if empty := int((picked < 0).all(axis=1).sum()):
            without[subset] = empty
        write_jsonl(out / NEGATIVES_DIR / "train" / f"{subset or 'train'}.jsonl",
                    negatives_rows([pairs[i] for i in rows], picked))
    plan = CommunityPlan(tuple(groups), settings.batch_size,
                         {**manifest, "done": True, "seconds": round(time.perf_counter() - start, 1),
                          "without_negatives": without})
    plan.save(out)
    return plan


def _finished(out: Path, manifest: dict) -> bool:
    """Whether ``out`` holds a finished plan of exactly ``manifest``."""
    if not (out / PLAN_FILE).is_file():
        return False
    done = CommunityPlan.load(out).manifest
    return bool(done.get("done")) and {k: v for k, v in done.items() if k not in OUTCOME_KEYS} == manifest
