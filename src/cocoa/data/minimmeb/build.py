"""Build MiniMMEB: a small MMEB-V1-shaped benchmark from offline real data.

Layout of ``out``: ``images/`` (PNGs; every path in every parquet is relative to it),
``eval/<Dataset>.parquet`` (MMEB-eval schema), ``reworded/<Dataset>.parquet`` and
``recombined/<Dataset>.parquet`` (the same queries in two wordings no training row uses, the
second made only of words the training texts contain, with a dataset card each; see
:mod:`~cocoa.data.minimmeb.wordings`), ``train/<Subset>.parquet`` (MMEB-train schema),
``pretrain/stage1.parquet`` (``image_path``, ``caption``), ``pretrain/stage2.parquet`` (MMEB-train
schema) and ``manifest.json``. Same seed and options give byte-identical parquet files.

This builds version 3 (:data:`VERSION`): scenes of colour-tinted items with instance-level
captions, retrieval of single tinted items by colour and label, several instruction wordings
in training and two copies of the image eval sets in wordings held out from training
(``cocoa eval --data DIR/reworded --images DIR/images``, and ``DIR/recombined``; reported apart
from MiniMMEB), and video sets (:mod:`~cocoa.data.minimmeb.videos`: clips under
``images/videos/``, rows with video columns). Folders of versions 1 and 2 stay readable by every
reader and evaluator; their manifests load with their ``version``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cocoa.core.errors import DataError
from cocoa.core.files import sha256_file, write_bytes
from cocoa.data.minimmeb.leaks import check_leaks
from cocoa.data.minimmeb.pools import load_pools
from cocoa.data.minimmeb.scenes import with_article
from cocoa.data.minimmeb.sources import source_versions
from cocoa.data.minimmeb.store import (
    CAPTION_SCHEMA,
    EVAL_SCHEMA,
    TRAIN_SCHEMA,
    VIDEO_EVAL_SCHEMA,
    VIDEO_TRAIN_SCHEMA,
    ImageStore,
    write_parquet,
)
from cocoa.data.minimmeb.tasks import EvalTable, TaskBuilder, TrainTable
from cocoa.data.minimmeb.videos import VideoEvalTable, VideoTaskBuilder, VideoTrainTable, video_tables
from cocoa.data.minimmeb.wordings import HELD_OUT_SETS

#: The MiniMMEB version this builder writes.
VERSION = 3
META_TASKS = ("classification", "vqa", "retrieval", "grounding", "video_classification", "video_qa",
              "video_retrieval", "moment_retrieval")
_OWNED = ("images", "eval", *HELD_OUT_SETS, "train", "pretrain", "manifest.json")
#: Train subsets whose positives are texts: they also make up the stage-2 corpus.
_STAGE2_SUBSETS = ("FashionMNIST", "EmojiGroup", "EmojiSubgroup", "ItemI2T", "SceneI2T", "SceneVQA", "VideoEvent",
                   "VideoV2T", "VideoQA")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    meta_task: str
    split: str
    queries: int
    min_candidates: int
    max_candidates: int
    #: Precision@1 (%) of a random ranking: the mean over queries of 100 / candidates.
    chance: float = 0.0


@dataclass
class Manifest:
    """What a MiniMMEB folder holds; ``checksums`` maps each parquet (relative path) to its sha256."""

    seed: int
    params: dict[str, int]
    datasets: list[DatasetInfo]
    train_rows: dict[str, int]
    pretrain_rows: dict[str, int]
    sources: dict[str, str]
    checksums: dict[str, str] = field(default_factory=dict)
    version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["datasets"] = [DatasetInfo(**info) for info in data["datasets"]]
        return cls(**data)


def build_mini(out: Path, seed: int = 0, queries: int = 1000, *, pool: int = 1000, train_size: int = 2000,
               grounding_candidates: int = 100, video_queries: int = 200, video_train_size: int = 1000,
               force: bool = False, fashion_dir: Path | None = None, emoji_font: Path | None = None,
               emoji_test: Path | None = None) -> Manifest:
    """Write MiniMMEB into ``out`` and return its manifest.

    ``queries`` caps the queries per image eval dataset, ``pool`` the candidates per retrieval query,
    ``train_size`` the rows per image train subset; ``video_queries`` and ``video_train_size`` are
    the clips of each video eval set and of the video training subsets. A complete folder built with
    the same options is reused unless ``force``. Raises :class:`DataError` if the leak check finds
    anything.
    """
    out = Path(out)
    params = {"queries": queries, "pool": pool, "train_size": train_size,
              "grounding_candidates": grounding_candidates, "video_queries": video_queries,
              "video_train_size": video_train_size}
    if not force:
        existing = _complete_manifest(out)
        if existing is not None and (existing.version, existing.seed, existing.params) == (VERSION, seed, params):
            return existing
    for name in _OWNED:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    pools = load_pools(seed, fashion_dir, emoji_font, emoji_test)
    builder = TaskBuilder(pools, ImageStore(out / "images"), seed)
    evals, eval_layouts = _eval_tables(builder, queries, pool, grounding_candidates)
    trains = _train_tables(builder, train_size, eval_layouts)
    video_evals, video_trains, video_captions = video_tables(
        VideoTaskBuilder(pools, builder.store, seed), video_queries, video_train_size)
    checksums: dict[str, str] = {}
    for video_table in video_evals:
        checksums[f"eval/{video_table.name}.parquet"] = write_parquet(
            out / "eval" / f"{video_table.name}.parquet", video_table.columns, VIDEO_EVAL_SCHEMA)
    for video_table in video_trains:
        checksums[f"train/{video_table.name}.parquet"] = write_parquet(
            out / "train" / f"{video_table.name}.parquet", video_table.columns, VIDEO_TRAIN_SCHEMA)
    for table in evals:
        checksums[f"eval/{table.name}.parquet"] = write_parquet(
            out / "eval" / f"{table.name}.parquet", table.columns, EVAL_SCHEMA)
        card = {"meta_task": table.meta_task, "split": table.split}
        for folder, attribute in HELD_OUT_SETS.items():
            reworded = table.reworded(getattr(table.wording, attribute))
            checksums[f"{folder}/{table.name}.parquet"] = write_parquet(
                out / folder / f"{table.name}.parquet", reworded.columns, EVAL_SCHEMA)
            write_bytes(out / folder / f"{table.name}.card.json", json.dumps(card).encode())
    for table in trains:
        checksums[f"train/{table.name}.parquet"] = write_parquet(
            out / "train" / f"{table.name}.parquet", table.columns, TRAIN_SCHEMA)
    stage1, stage2 = _pretrain_corpora([*trains, *video_trains], video_captions)
    checksums["pretrain/stage1.parquet"] = write_parquet(out / "pretrain" / "stage1.parquet", stage1, CAPTION_SCHEMA)
    checksums["pretrain/stage2.parquet"] = write_parquet(out / "pretrain" / "stage2.parquet", stage2,
                                                         VIDEO_TRAIN_SCHEMA)
    leaks = check_leaks(out)
    if leaks:
        raise DataError(f"{len(leaks)} eval items leak into training corpora, first: {leaks[0]}", file=str(out))
    manifest = Manifest(
        seed=seed, params=params,
        datasets=[_info(table) for table in [*evals, *video_evals]],
        train_rows={table.name: len(table.columns["qry"]) for table in [*trains, *video_trains]},
        pretrain_rows={"stage1": len(stage1["caption"]), "stage2": len(stage2["qry"])},
        sources=source_versions(), checksums=checksums, version=VERSION)
    write_bytes(out / "manifest.json", manifest.to_json().encode())
    return manifest


def _eval_tables(builder: TaskBuilder, queries: int, pool: int,
                 grounding: int) -> tuple[list[EvalTable], set[tuple[str, ...]]]:
    """The eval datasets, and the 2x2 layouts that training scenes must not repeat."""
    emoji = builder.pools.emoji
    scenes = builder.scenes("eval", 2, max(queries, pool), set())
    grids = builder.scenes("eval", 3, max(queries, pool), set())
    tables = [
        builder.fashion_classification(queries, train=False),
        builder.emoji_classification("EmojiGroup", emoji.eval, "group", "IND", queries, train=False),
        builder.emoji_classification("EmojiSubgroup", emoji.eval, "subgroup", "IND", queries, train=False),
        builder.tinted_fashion_classification(queries),
        builder.emoji_classification("EmojiNovelGroup", emoji.novel, "group", "OOD", queries, train=False,
                                     labels=sorted({e.group for e in emoji.eval})),
        builder.scene_vqa("SceneVQA", scenes, "IND", queries, train=False),
        builder.scene_vqa("Grid3x3VQA", grids, "OOD", queries, train=False),
        builder.item_retrieval("ItemI2T", queries, train=False),
        builder.scene_retrieval("SceneT2I", scenes, "IND", "t2i", queries, pool, train=False),
        builder.scene_retrieval("SceneI2T", scenes, "IND", "i2t", queries, pool, train=False),
        builder.scene_retrieval("Grid3x3T2I", grids, "OOD", "t2i", queries, pool, train=False),
        builder.scene_retrieval("Grid3x3I2T", grids, "OOD", "i2t", queries, pool, train=False),
        builder.grounding("SceneGrounding", scenes, "IND", queries, grounding, train=False),
        builder.grounding("Grid3x3Grounding", grids, "OOD", queries, grounding, train=False),
    ]
    return tables, {tuple(scene.labels) for scene in scenes}


def _train_tables(builder: TaskBuilder, size: int, eval_layouts: set[tuple[str, ...]]) -> list[TrainTable]:
    emoji = builder.pools.emoji.train
    scenes = builder.scenes("train", 2, size, eval_layouts)
    return [
        builder.fashion_classification(size, train=True),
        builder.emoji_classification("EmojiGroup", emoji, "group", "IND", size, train=True),
        builder.emoji_classification("EmojiSubgroup", emoji, "subgroup", "IND", size, train=True),
        builder.scene_vqa("SceneVQA", scenes, "IND", size, train=True),
        builder.item_retrieval("ItemI2T", size, train=True),
        builder.scene_retrieval("SceneT2I", scenes, "IND", "t2i", size, 0, train=True),
        builder.scene_retrieval("SceneI2T", scenes, "IND", "i2t", size, 0, train=True),
        builder.grounding("SceneGrounding", scenes, "IND", size, 0, train=True),
    ]


def _pretrain_corpora(trains: list[TrainTable | VideoTrainTable], video_captions: dict[str, list]
                      ) -> tuple[dict[str, list], dict[str, list]]:
    """Stage 1: (training image or clip, caption); stage 2: the text-target train rows, concatenated."""
    by_name = {table.name: table.columns for table in trains}
    stage1: dict[str, list] = {"image_path": [], "video_path": [], "caption": []}
    for name in ("FashionMNIST", "ItemI2T", "SceneI2T"):
        columns = by_name[name]
        stage1["image_path"].extend(columns["qry_image_path"])
        stage1["video_path"].extend([""] * len(columns["qry_image_path"]))
        stage1["caption"].extend(f"a photo of {with_article(text)}" if name == "FashionMNIST" else text
                                 for text in columns["pos_text"])
    for column, values in video_captions.items():
        stage1[column].extend(values)
    stage2: dict[str, list] = {column: [] for column in VIDEO_TRAIN_SCHEMA.names}
    for name in _STAGE2_SUBSETS:
        columns = by_name[name]
        size = len(columns["qry"])
        for column in VIDEO_TRAIN_SCHEMA.names:
            stage2[column].extend(columns.get(column, [""] * size))
    return stage1, stage2


def _info(table: EvalTable | VideoEvalTable) -> DatasetInfo:
    counts = [len(candidates) for candidates in table.columns["tgt_text"]]
    chance = round(sum(100.0 / count for count in counts) / len(counts), 2) if counts else 0.0
    return DatasetInfo(table.name, table.meta_task, table.split, len(counts),
                       min(counts, default=0), max(counts, default=0), chance)


def _complete_manifest(out: Path) -> Manifest | None:
    """The manifest of ``out`` if every file it lists is present with its checksum and every
    held-out copy is among them (a folder built before a copy was added is rebuilt)."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError):
        return None
    if not all(any(name.startswith(f"{folder}/") for name in manifest.checksums) for folder in HELD_OUT_SETS):
        return None
    for relative, digest in manifest.checksums.items():
        file = out / relative
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return manifest


def write_readme_table(manifest: Manifest) -> str:
    """The Markdown table of MiniMMEB datasets (name, meta-task, IND/OOD, queries, candidates, chance P@1)."""
    lines = ["| dataset | meta-task | IND/OOD | queries | candidates per query | chance P@1 |",
             "|---|---|---|---|---|---|"]
    order = sorted(manifest.datasets, key=lambda d: (META_TASKS.index(d.meta_task), d.split, d.name))
    for info in order:
        candidates = (str(info.min_candidates) if info.min_candidates == info.max_candidates
                      else f"{info.min_candidates}-{info.max_candidates}")
        lines.append(f"| {info.name} | {info.meta_task} | {info.split} | {info.queries} | {candidates} "
                     f"| {info.chance:.2f} |")
    return "\n".join(lines) + "\n"
