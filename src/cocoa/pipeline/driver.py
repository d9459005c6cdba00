"""The end-to-end driver: data -> stages -> evaluation -> report, resumable at every level.

A pipeline is a YAML file (or the built-in ``mini`` pipeline) naming the stage recipes to
chain. Each stage writes ``<out>/<n>-<stage>/model``, which becomes the next stage's
``model.path``. A finished stage is skipped on a rerun; an interrupted one resumes from its
latest checkpoint; the evaluator resumes at the first unfinished dataset.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cocoa.core.console import make_console
from cocoa.core.errors import ConfigError
from cocoa.core.packing import PackTokens
from cocoa.recipe import load_recipe, resolve
from cocoa.stages.sections import ProtocolConfig

if TYPE_CHECKING:
    from cocoa.stages.sections import RecipeBase

console = make_console()


class MineEntry(BaseModel):
    """Mine a contrastive stage's batches with the previous stage's model before training it
    (``cocoa mine``; :class:`~cocoa.mining.mine.MineSettings`). The plan is written to
    ``<stage folder>/plan`` and becomes the stage's ``data.batches``; under ``torchrun`` every rank
    encodes a share of the training set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    p: int = Field(10, ge=0, description="top ranks skipped (likely false negatives)")
    m: int = Field(20, ge=1, description="ranks [p, p+m) are strong negatives")
    size: int = Field(8, ge=1, description="rows per community")
    subsets: dict[str, tuple[int, int]] = Field({}, description="a subset's own (p, m)")
    negatives: int = Field(0, ge=0, description="also train on this many mined hard negatives per query "
                                              "(the stage's data.root becomes <plan>/negatives); 0: none")

    @model_validator(mode="after")
    def _negatives_fit(self) -> MineEntry:
        for name, (_, m) in {"": (self.p, self.m), **self.subsets}.items():
            if self.negatives > m:
                raise ValueError(f"{self.negatives} negatives per query do not fit the window of m={m} ranks"
                                 f"{' of subset ' + name if name else ''}")
        return self


class StageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    recipe: str = Field(description="a stage recipe file, relative to the pipeline file, or builtin:<name>")
    set: list[str] = []
    name: str | None = None
    mine: MineEntry | None = None


class MiniData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = 0
    queries: int = Field(1000, gt=0)
    train_size: int = Field(2000, gt=0)


class EvalSection(BaseModel):
    """What ``cocoa eval`` would be given for the final model: the same settings, the same encoder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    data: str | None = Field(None, description="MMEB-eval folder; default: the MiniMMEB built by the pipeline")
    images: str | None = None
    datasets: list[str] | None = None
    batch_size: int = Field(64, gt=0)
    protocol: ProtocolConfig | None = Field(None, description="the embedding protocol to evaluate with, as in a "
                                             "stage recipe (default: the one the final model records)")
    frames: int | None = Field(None, gt=0, description="frames sampled per video, replacing the protocol's")
    pack_tokens: PackTokens = Field(
        None, description="pack batches into rows of this many tokens (null: pad)")
    workers: int = Field(0, ge=0, description="preprocessing processes")


class Pipeline(BaseModel):
    """Stages to chain, where their data comes from, and what to evaluate on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "cocoa"
    mini: MiniData | None = None
    data_root: str | None = Field(None, description="training data folder when not building MiniMMEB")
    stages: list[StageEntry]
    eval: EvalSection = EvalSection()
    set: list[str] = Field([], description="overrides applied to every stage")


def stage_folder(out: Path, number: int, name: str) -> Path:
    """Where a pipeline writes the stage numbered ``number`` (:attr:`Stage.number`): ``<out>/<number>-<name>``,
    as the shipped recipes do."""
    return out / f"{number}-{name}"


def stage_folders(pipeline: Pipeline, base: Path, out: Path) -> list[Path]:
    """The folder of each stage of ``pipeline``, or a :class:`ConfigError` if two would share one."""
    from cocoa.stages import get_stage

    folders = []
    for entry in pipeline.stages:
        stage = load_recipe(resolve(entry.recipe, base)).stage
        folder = stage_folder(out, get_stage(stage).number, entry.name or stage)
        if folder in folders:
            raise ConfigError(f"two stages of the pipeline would write {folder}; give them distinct names")
        folders.append(folder)
    return folders


def load_pipeline(path: str | Path) -> tuple[Pipeline, Path]:
    """Read and validate a pipeline file; returns it with the folder its paths are relative to."""
    path = resolve(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file not found: {path}")
    try:
        return Pipeline.model_validate(yaml.safe_load(path.read_text()) or {}), path.parent
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid pipeline {path}:\n" + "\n".join(lines)) from None


def run_pipeline(pipeline: Pipeline, base: Path, out: Path, *, extra: list[str] | None = None) -> dict:
    """Run every stage (skipping finished ones), evaluate the last model, write the report."""
    from cocoa.data.minimmeb.build import build_mini
    from cocoa.pipeline.train_stage import train_stage

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data_root = Path(pipeline.data_root) if pipeline.data_root else out / "data"
    rank = int(os.environ.get("RANK", "0"))
    if pipeline.mini is not None:
        console.rule("[bold]data: MiniMMEB")
        began = time.perf_counter()
        if rank == 0:
            build_mini(data_root, seed=pipeline.mini.seed, queries=pipeline.mini.queries,
                       train_size=pipeline.mini.train_size)
        else:
            wait_for(data_root / "manifest.json")
        timings["data"] = time.perf_counter() - began
    previous: Path | None = None
    stage_dirs = stage_folders(pipeline, base, out)
    recipes: list[RecipeBase] = []
    for index, (entry, folder) in enumerate(zip(pipeline.stages, stage_dirs, strict=True)):
        file = resolve(entry.recipe, base)
        overrides = [f"data.root={data_root}", f"train.output_dir={folder}", *pipeline.set, *entry.set,
                     *(extra or [])]
        if previous is not None:
            overrides.append(f"model.path={previous}")
        source = recipe = load_recipe(file, overrides)
        if entry.mine is not None:
            recipe = load_recipe(file, [*overrides, *mined_overrides(entry.mine, folder / "plan", source)])
        recipes.append(recipe)
        if recipe.model.path is not None and recipe.model.tiny is not None:
            raise ConfigError(f"{file}: stage {index} sets model.tiny but follows another stage")
        teacher, previous = previous, folder / "model"
        if (folder / "result.json").is_file() and previous.is_dir():
            console.print(f"[green]stage {index} ({recipe.stage}) already done: {previous}")
            continue
        if entry.mine is not None:
            if teacher is None:
                raise ConfigError(f"{file}: stage {index} mines with the previous stage's model but has none before it")
            console.rule(f"[bold]stage {index}: mining its batches")
            began = time.perf_counter()
            mine_batches(source, entry.mine, teacher, folder / "plan")
            timings[f"{folder.name}-mine"] = time.perf_counter() - began
        console.rule(f"[bold]stage {index}: {recipe.stage}")
        began = time.perf_counter()
        train_stage(recipe, resume=(folder / "checkpoints").is_dir())
        timings[folder.name] = time.perf_counter() - began
    if previous is None:
        raise ConfigError("the pipeline has no stages")
    summary = evaluate_model(previous, pipeline.eval, data_root, out / "eval")
    if rank != 0:
        return {}
    timings["eval"] = summary.pop("seconds")
    from cocoa.core.spec import EmbeddingSpec
    from cocoa.evaluate.summary import Summary
    from cocoa.pipeline.model_card import write_model_card
    from cocoa.pipeline.report import write_run_report

    write_model_card(previous, out.resolve().name, recipes, EmbeddingSpec.load(previous), Summary.from_dict(summary))
    write_run_report(out, stage_dirs, summary, timings, chance=mini_chance(data_root))
    return summary


def mined_overrides(entry: MineEntry, plan: Path, source: RecipeBase) -> list[str]:
    """Overrides that make the stage of recipe ``source`` read the plan in ``plan`` (and train on its
    mined negatives, with ``entry.negatives``)."""
    from cocoa.stages.base import image_root
    from cocoa.train.community_batches import NEGATIVES_DIR

    sets = [f"data.batches={plan}"]
    if entry.negatives:
        sets += [f"data.root={plan / NEGATIVES_DIR}", f"data.images={image_root(source)}",
                 "contrastive.hard_negatives=true", f"contrastive.negatives_per_query={entry.negatives}"]
    return sets


def mine_batches(source: RecipeBase, entry: MineEntry, teacher: Path, plan: Path) -> None:
    """Mine the rows the stage of recipe ``source`` reads with ``teacher`` into ``plan`` (a finished
    plan of the same settings is kept). Under ``torchrun`` each rank encodes its share."""
    from cocoa.core.distributed import setup
    from cocoa.inference.embedder import Embedder
    from cocoa.mining.mine import MineSettings, mine
    from cocoa.stages import get_stage

    info = setup()
    settings = MineSettings(p=entry.p, m=entry.m, size=entry.size, batch_size=source.train.batch_size * info.world_size,
                            seed=source.train.seed, subsets=dict(entry.subsets), negatives=max(entry.negatives, 1))
    mine(get_stage(source.stage).examples(source), Embedder.from_pretrained(teacher, device=info.device), plan,
         settings)


def mini_chance(data_root: Path) -> dict[str, float] | None:
    """Chance Precision@1 per dataset from a MiniMMEB manifest (version 2 on), else None."""
    from cocoa.data.minimmeb.build import Manifest

    path = data_root / "manifest.json"
    if not path.is_file():
        return None
    manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    return {info.name: info.chance for info in manifest.datasets if info.chance} or None


#: How long other ranks wait for rank 0's MiniMMEB build before giving up.
RANK0_WAIT_S = 3600.0


def wait_for(path: Path, timeout: float = RANK0_WAIT_S) -> None:
    """Block a non-main rank until the main rank has written ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise ConfigError(f"timed out waiting for {path} from rank 0")
        time.sleep(1.0)


def evaluate_model(model_dir: Path, section: EvalSection, data_root: Path, out: Path) -> dict:
    """Evaluate a checkpoint with the MMEB evaluator; returns the summary as a dict. Under ``torchrun``
    every rank encodes its share of the items and rank 0 writes the results."""
    from cocoa.core.distributed import rank_and_world
    from cocoa.evaluate.encoder import load_encoder
    from cocoa.evaluate.runner import evaluate

    console.rule("[bold]evaluation")
    began = time.perf_counter()
    data = Path(section.data) if section.data else data_root
    images = Path(section.images) if section.images else None
    protocol = section.protocol.resolve() if section.protocol is not None else None
    encoder = load_encoder(model_dir, section.workers, protocol, section.frames, section.pack_tokens)
    summary = evaluate(encoder, data, out, datasets=section.datasets, image_root=images,
                       batch_size=section.batch_size)
    result = summary.to_dict()
    result["seconds"] = time.perf_counter() - began
    if rank_and_world()[0] == 0:
        (out / "model.json").write_text(json.dumps({"model": str(model_dir)}))
    return result
