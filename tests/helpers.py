"""Helpers the tests share: tiny backbones, hand-made MMEB-schema benchmarks and rows with a fake encoder,
tiny training recipes on a MiniMMEB folder (``mini_dir`` in conftest), several-process runs and inference."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch import nn

from cocoa.core.distributed import DistInfo
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.data.video_tasks import VIDEO_TASKS
from cocoa.inference.shards import ShardedOutput, ShardPlan, ShardReader
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed_padded
from cocoa.model.packing import Packing
from cocoa.recipe import Recipe, builtin, load_recipe
from cocoa.stages.contrastive import ContrastiveBuilder, ContrastiveConfig, ContrastiveLoss, PairBatch
from cocoa.train.batches import BatchPlan, StepDataset
from cocoa.train.config import TrainConfig
from cocoa.train.steps import GradCacheStep
from cocoa.train.trainer import Trainer

if TYPE_CHECKING:
    import typer

# --- backbones ----------------------------------------------------------------------------

CORPUS = [
    "a photo of a red dress on a white background",
    "Represent the given image for classification.",
    "Find me an everyday image that matches the given caption: a sneaker next to a bag",
    "what is in the top-left corner? an ankle boot",
] * 20

#: The backbone families every family-wide test runs on.
FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def make_backbone(family: str = "qwen2_vl", attn: str = "sdpa", preset: str = "tiny") -> Backbone:
    backbone = Backbone.tiny(preset, family, corpus=CORPUS, seed=0, attn_implementation=attn)
    backbone.model.eval()
    return backbone


# --- embedding batches --------------------------------------------------------------------

def embedding_items(image_dir: Path, video_dir: Path | None = None) -> list[Item]:
    """Five items of every kind: image with placeholder, texts, image alone, image mid-text; with
    ``video_dir`` three more: a frame folder with a placeholder, a video file alone, a video and an image."""
    items = [
        Item("<|image_1|> Represent the given image for classification.\n", str(image_dir / "a.png")),
        Item("Find me an everyday image that matches the given caption: a sneaker next to a bag"),
        Item("dress"),
        Item("", str(image_dir / "c.png")),
        Item("<|image_1|> what is in the top-left corner?", str(image_dir / "d.png")),
    ]
    if video_dir is not None:
        items += [Item("<|video_1|> What happens in the video?", video=str(video_dir / "clip")),
                  Item("", video=str(video_dir / "clip.mp4")),
                  Item("<|image_1|> is this in <|video_1|>?", str(image_dir / "b.png"), str(video_dir / "long"))]
    return items


def embed_all(backbone: Backbone, xs: list[Item], side: str, mode: str = "bidirectional",
              pack_tokens: int | None = None) -> torch.Tensor:
    """Embeddings of ``xs`` in one batch padded on ``side`` (or packed into rows of ``pack_tokens``)."""
    pre = Preprocessor(backbone, 256)
    batch = collate([pre.embedding_sequence(x) for x in xs], backbone.ids.pad, padding_side=side)
    with torch.no_grad():
        if pack_tokens is None:
            return embed_padded(backbone.model, batch, mode)
        return Packing(pack_tokens).embed(backbone.model, batch, PROTOCOLS["cocoa"].replace(attention=mode))


# --- hand-made benchmarks -----------------------------------------------------------------

SCHEMA = pa.schema([("qry_text", pa.string()), ("qry_img_path", pa.string()),
                    ("tgt_text", pa.list_(pa.string())), ("tgt_img_path", pa.list_(pa.string()))])


class FakeEncoder:
    """Embeds ``[x,y]`` written in the text as that vector, anything else by a hash of its key."""

    def __init__(self, dim: int = 4, fail_on: str | None = None) -> None:
        self.dim, self.fail_on = dim, fail_on
        self.encoded: list[tuple[str, str]] = []

    def vector(self, item: Item) -> np.ndarray:
        match = re.search(r"\[([-0-9., ]+)\]", item.text)
        if match:
            values = np.zeros(self.dim)
            parsed = [float(v) for v in match.group(1).split(",")]
            values[:len(parsed)] = parsed
        else:
            seed = int.from_bytes(hashlib.sha256(repr(item.key()).encode()).digest()[:8], "little")
            values = np.random.default_rng(seed).normal(size=self.dim)
        return (values / np.linalg.norm(values)).astype(np.float32)

    def encode_items(self, items: Sequence[Item], *, batch_size: int = 32,
                     show_progress: bool = False) -> np.ndarray:
        vectors = []
        for item in items:
            if self.fail_on is not None and self.fail_on in item.text:
                raise RuntimeError("simulated crash")
            self.encoded.append(item.key())
            vectors.append(self.vector(item))
        return np.stack(vectors)

    def fingerprint(self) -> str:
        return f"fake-{self.dim}"

    def item_length(self, item: Item) -> int:
        return len(item.text) + (4 if item.image else 0)


def write_eval(path: Path, rows: list[tuple[str, str, list[str], list[str]]]) -> None:
    """Write MMEB-eval rows ``(qry_text, qry_img_path, tgt_text, tgt_img_path)`` as parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = dict(zip(SCHEMA.names, zip(*rows, strict=True), strict=True))
    pq.write_table(pa.table({k: list(v) for k, v in columns.items()}, schema=SCHEMA), path)


def write_images(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for shade, name in enumerate(names):
        Image.new("RGB", (8, 8), (shade * 40, 0, 0)).save(folder / name)


def build_benchmark(root: Path) -> Path:
    """A three-dataset MiniMMEB-style folder; the expected scores are Alpha 100, Beta 0, Gamma 100."""
    write_images(root / "images", "a.png", "b.png")
    (root / "manifest.json").write_text(json.dumps({"name": "Tiny", "datasets": [
        {"name": "Alpha", "meta_task": "classification", "split": "IND"},
        {"name": "Beta", "meta_task": "classification", "split": "OOD"},
        {"name": "Gamma", "meta_task": "retrieval", "split": "IND"},
    ]}))
    write_eval(root / "eval" / "Alpha.parquet", [
        ("<|image_1|> classify [1,0]", "a.png", ["[1,0] cat", "[0,1] dog"], ["", ""]),
        ("<|image_1|> classify [0,1]", "b.png", ["[0,1] dog", "[1,0] cat"], ["", ""]),
    ])
    write_eval(root / "eval" / "Beta.parquet", [
        ("which [1,0]", "", ["[0,1] dog", "[1,0] cat"], ["", ""]),
        ("which [0,1]", "", ["[1,0] cat", "[0,1] dog"], ["", ""]),
    ])
    write_eval(root / "eval" / "Gamma.parquet", [
        ("tie [1,1]", "", ["<|image_1|> gold [1,1]", "other [1,1]", "[0,1] dog"], ["a.png", "", ""]),
    ])
    return root


# --- tiny training recipes ----------------------------------------------------------------

#: A small eval dataset of MiniMMEB used for the end-of-chain evaluation.
EVAL_DATASET = "FashionMNIST"


def stage_overrides(stage: str, root: Path, out: Path, steps: int = 3, batch: int = 4) -> list[str]:
    """Overrides that make a ``configs/tiny`` recipe a few small steps on ``root``."""
    sets = [f"data.root={root}", f"train.output_dir={out}", f"train.max_steps={steps}", "train.epochs=null",
            f"train.batch_size={batch}", "train.warmup_steps=0", "train.log_every=1", "data.max_len=160"]
    if stage == "contrastive":
        sets += ["data.cap=16", "contrastive.gradcache_chunk=4", "contrastive.temperature=0.05"]
    if stage == "bridge":
        sets += ["data.cap=32"]
    return sets


def recipe_path(stage: str) -> Path:
    """The shipped tiny recipe of a stage."""
    return builtin(f"tiny/{stage}")


def tiny_recipe(stage: str, root: Path, out: Path, *extra: str, steps: int = 3, batch: int = 4) -> Recipe:
    return load_recipe(recipe_path(stage), [*stage_overrides(stage, root, out, steps, batch), *extra])


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


def pairs(image_dir: Path) -> list[TrainPair]:
    """Four query/positive/negative triples mixing image and text rows."""
    img = {n: str(image_dir / f"{n}.png") for n in "abcd"}
    return [
        TrainPair(Item("Represent the given image for classification.", img["a"]), Item("a red dress"),
                  (Item("an ankle boot"),)),
        TrainPair(Item("Find me an everyday image that matches the given caption: a sneaker next to a bag"),
                  Item("", img["b"]), (Item("a photo", img["c"]),)),
        TrainPair(Item("what is in the top-left corner?", img["d"]), Item("an ankle boot"),
                  (Item("a red dress on a white background"),)),
        TrainPair(Item("a photo of a red dress on a white background"), Item("a white background", img["c"]),
                  (Item("", img["a"]),)),
    ]


#: The tiny preset's hidden size, and the Matryoshka dims of :func:`matryoshka_model`.
TINY_HIDDEN = 96
MATRYOSHKA_WIDTHS = (32, 64)


def matryoshka_model(folder: Path) -> Path:
    """A tiny model folder whose ``cocoa.json`` serves :data:`MATRYOSHKA_WIDTHS` besides the full width."""
    make_backbone().save(folder)
    EmbeddingSpec(dims=MATRYOSHKA_WIDTHS).save(folder)
    return folder


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` with each row divided by its L2 norm."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_info_nce(q: np.ndarray, t: np.ndarray, temperature: float, neg: np.ndarray | None = None,
                   mask: np.ndarray | None = None) -> float:
    """Mean over queries of -log softmax(target i) with every target and every present negative as candidates."""
    total = 0.0
    for i in range(len(q)):
        candidates = list(t) + ([] if neg is None else [neg[j] for j in range(len(neg)) if mask is None or mask[j]])
        logits = [float(q[i] @ c) / temperature for c in candidates]
        top = max(logits)
        total -= logits[i] - (top + math.log(sum(math.exp(x - top) for x in logits)))
    return total / len(q)


def brute_matryoshka(q: np.ndarray, t: np.ndarray, temperature: float, dims: list[int], weights: list[float],
                     neg: np.ndarray | None = None, mask: np.ndarray | None = None) -> float:
    return sum(w * brute_info_nce(unit_rows(q[:, :d]), unit_rows(t[:, :d]), temperature,
                                  None if neg is None else unit_rows(neg[:, :d]), mask)
               for d, w in zip(dims, weights, strict=True))


# --- MMEB-V2 video tasks ------------------------------------------------------------------

def video_frames(folder: Path, count: int = 3) -> None:
    """``count`` small JPEG frames of noise seeded by the folder's path, named as VLM2Vec-V2's extraction names them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(f"{folder.parent.name}/{folder.name}".encode()))
    for i in range(count):
        Image.fromarray((rng.random((28, 28, 3)) * 255).astype("uint8")).save(folder / f"frame_{i + 1:04d}.jpg")


def video_table(path: Path, rows: dict[str, list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)


def frame_root(root: Path, task: str) -> Path:
    return root / VIDEO_TASKS[task].frames


def write_video_snapshot(root: Path) -> Path:
    """One MMEB-V2 video task of each reader kind, laid out as the Hugging Face snapshots and the frame
    archives lay them out (tests/data/test_video_tasks.py states what each reader must build from it)."""
    for vid in ("v1", "v2", "v3"):
        video_frames(frame_root(root, "K700") / vid)
    video_table(root / "K700" / "test-00000-of-00001.parquet",
          {"video_id": ["v1", "v2", "v3"], "pos_text": ["abseiling", "juggling", "abseiling"]})
    video_frames(frame_root(root, "SmthSmthV2") / "s1")
    video_table(root / "SmthSmthV2" / "data" / "test-00000-of-00001.parquet",
          {"video_id": ["s1", "s1"], "pos_text": ["Pushing a cup", "Lifting a pen"],
           "neg_text": [["Dropping a cup", "Pushing a cup"], ["Dropping a cup", "Pushing a cup"]]})
    for vid in ("m1", "m2"):
        video_frames(frame_root(root, "MSR-VTT") / vid)
    video_table(root / "MSR-VTT" / "test_1k" / "test-00000-of-00001.parquet",
          {"video_id": ["m1", "m2"], "video": ["m1.mp4", "m2.mp4"], "caption": ["a dog runs", "a cat sleeps"]})
    video_table(root / "MSR-VTT" / "test_9k" / "test-00000-of-00001.parquet",
          {"video_id": ["m9"], "video": ["m9.mp4"], "caption": ["not in the 1k subset"]})
    video_frames(frame_root(root, "DiDeMo") / "d1")
    video_table(root / "DiDeMo" / "test.parquet", {"video": ["clips/d1.mp4"], "caption": ["someone waves"]})
    for clip in ("query", "positive_3", "negative_1", "negative_2"):
        video_frames(frame_root(root, "QVHighlight") / "q1" / clip)
    video_table(root / "QVHighlight" / "test.parquet", {"query": ["a man cooks"], "video_path": ["videos/q1.mp4"]})
    ms = frame_root(root, "MomentSeeker")
    for clip in ("movie_a", "movie_b", "movie_c", "clip_x"):
        video_frames(ms / "video_frames" / clip)
    Image.new("RGB", (28, 28), "red").save(ms / "query_pic.jpg")
    video_table(root / "MomentSeeker" / "test.parquet", {
        "query": ["the car stops", "a red thing", "someone sits"],
        "input_frames": ["clip/x.mp4", "pic.jpg", ""],
        "positive_frames": [[{"output_path": "movie/a.mp4"}, {"output_path": "movie/b.mp4"}],
                            [{"output_path": "movie/c.mp4"}], [{"output_path": "movie/a.mp4"}]],
        "negative_frames": [[{"output_path": "movie/c.mp4"}], [{"output_path": "movie/a.mp4"}],
                            [{"output_path": "movie/b.mp4"}]]})
    video_frames(frame_root(root, "Video-MME") / "vm1")
    video_table(root / "Video-MME" / "test.parquet", {
        "videoID": ["vm1"], "question": ["What color is the car?"], "answer": ["B"],
        "options": [["A. Red.", "B. Blue", "C. Green.", "D. White"]]})
    video_frames(frame_root(root, "NExTQA") / "n1")
    video_table(root / "NExTQA" / "MC" / "test-00000-of-00001.parquet", {
        "video": ["n1"], "question": ["why did the boy run"], "answer": [2],
        **{f"a{i}": [f"option {i}"] for i in range(5)}})
    video_frames(frame_root(root, "EgoSchema") / "e1")
    video_table(root / "EgoSchema" / "Subset" / "test-00000-of-00001.parquet", {
        "video_idx": ["e1"], "question": ["What is C doing?"], "answer": ["1"],
        "option": [["A. cooking.", "B. cleaning", "C. reading"]]})
    video_frames(frame_root(root, "MVBench") / "action_sequence" / "clip1.mp4")
    video_table(root / "MVBench" / "action_sequence" / "train-00000-of-00001.parquet", {
        "video": ["clip1.mp4", "clip1.mp4"], "question": ["What happened first?", "And then?"],
        "candidates": [["sat down", "stood up"], ["ran", "walked"]], "answer": ["stood up", "flew"]})
    video_frames(frame_root(root, "ActivityNetQA") / "v_a1")
    video_table(root / "ActivityNetQA" / "test.parquet",
          {"video_name": ["a1"], "question": ["is the person outdoors"], "answer": ["no"]})
    return root


# --- hand-made MMEB rows ------------------------------------------------------------------

#: The query of the hand-made MMEB-eval and MMEB-train rows (an image classification prompt).
CLASSIFY_QUERY = "<|image_1|> Represent the given image for classification.\n"


#: MMEB-train rows with video queries and targets: folders and a file of ``video_dir``.
VIDEO_PAIR_ROWS = {
    "qry": ["<|video_1|> What happens in the video?", "Find a video that contains: noise", "a red dress",
            "<|video_1|> Describe it."],
    "qry_image_path": ["", "", "", ""],
    "pos_text": ["noise moving", "<|video_1|> Understand the content of the provided video.", "", "a still frame"],
    "pos_image_path": ["", "", "", ""],
    "qry_video_path": ["clip", "", "", "still"],
    "pos_video_path": ["", "long", "clip.mp4", ""],
}


def write_video_pairs(root: Path, rows: dict[str, list[str]]) -> Path:
    """``rows`` as ``train/VideoPairs.parquet`` under ``root``."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), root / "train" / "VideoPairs.parquet")
    return root


#: The columns of an instruction-split MMEB-eval dataset, and one row of them.
INSTRUCT_SCHEMA = pa.schema([("qry_inst", pa.string()), ("qry_text", pa.string()), ("qry_img_path", pa.string()),
                             ("tgt_inst", pa.string()), ("tgt_text", pa.list_(pa.string())),
                             ("tgt_img_path", pa.list_(pa.string()))])
InstructRow = tuple[str, str, str, str, list[str], list[str]]


def write_instruct_split(path: Path, rows: list[InstructRow]) -> None:
    """Write instruction-split MMEB-eval rows as parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [list(column) for column in zip(*rows, strict=True)]
    pq.write_table(pa.table(dict(zip(INSTRUCT_SCHEMA.names, columns, strict=True)), schema=INSTRUCT_SCHEMA), path)


#: One row per reference parser, with the exact texts the reference code builds from it.
INSTRUCT_CASES: dict[str, tuple[InstructRow, str, list[str], bool]] = {
    "ImageNet-1K": (("<|image_1|> Represent the given image for classification.", "", "0.png", "",
                     ["cat [1,0]", "dog [0,1]"], ["", ""]),
                    "<|image_1|>  Represent the given image for classification.\n", ["cat [1,0]", "dog [0,1]"], False),
    "OK-VQA": (("Represent the given image with the following question:", "What is it? [0,1]", "1.png", "",
                ["a cat", "a dog [0,1]"], ["", ""]),
               "<|image_1|>\nRepresent the given image with the following question: What is it? [0,1]\n",
               ["a cat", "a dog [0,1]"], False),
    "MSCOCO_i2t": (("Find an image caption describing the given everyday image. \n", "", "2.png", "",
                    ["two dogs", "a cat"], ["x.png", "y.png"]),
                   "<|image_1|> Find an image caption describing the given everyday image.\n\n",
                   ["two dogs", "a cat"], False),
    "VisDial": (("Represent the given dialogue about an image, which is used for image retrieval:", "Q: dog? A: yes",
                 "", "<|image_1|> Represent the given image.", ["", ""], ["1.png", "2.png"]),
                "Represent the given dialogue about an image, which is used for image retrieval: Q: dog? A: yes\n\n",
                ["<|image_1|>  Represent the given image.\n"] * 2, True),
    "WebQA": (("Find a Wikipedia image that answers this question:", "Where? [1,0]", "", "Represent the given "
               "Wikipedia image with related text information:", ["Paris [1,0]", "Rome"], ["1.png", "2.png"]),
              "Find a Wikipedia image that answers this question: Where? [1,0]\n",
              ["<|image_1|> Represent the given Wikipedia image with related text information: Paris [1,0]\n",
               "<|image_1|> Represent the given Wikipedia image with related text information: Rome\n"], True),
    "MSCOCO": (("<|image_1|> Select the portion of the image that isolates the object labeled as \"cat\"", "", "0.png",
                "<|image_1|> Represent the given cropped image of the object", [" ", ""], ["1.png", "2.png"]),
               "<|image_1|>\nSelect the portion of the image that isolates the object labeled as \"cat\"\n",
               ["<|image_1|>  Represent the given cropped image of the object"] * 2, True),
    "RefCOCO-Matching": (("Select the portion of the image that follows the language expressions.", "the dog",
                          "0.png", "Select the portion of the image that follows the language expressions.",
                          ["the cat", "the dog"], ["1.png", "2.png"]),
                         "<|image_1|>\nSelect the portion of the image that follows the language expressions. the dog\n",
                         ["<|image_1|> Select the portion of the image that follows the language expressions. the cat\n",
                          "<|image_1|> Select the portion of the image that follows the language expressions. the dog\n"],
                         True),
}


#: An MMEB-eval row ``(qry_text, qry_img_path, tgt_text, tgt_img_path)``.
CustomRow = tuple[str, str, list[str], list[str]]


def random_rows(rng: np.random.Generator, queries: int, tag: str) -> list[CustomRow]:
    """Rows whose queries and candidates repeat across rows, some with images, some texts with vectors."""
    pool = [(f"{tag} cand {i}" + (f" [{i % 3 + 1},{i % 2}]" if i % 4 else ""), f"{i % 4}.png" if i % 3 == 0 else "")
            for i in range(14)]
    rows = []
    for r in range(queries):
        picks = rng.choice(len(pool), size=int(rng.integers(2, 7)), replace=False)
        query = f"{tag} query {r % 7}" + (f" [{r % 2},1]" if r % 3 else "")
        rows.append((query, f"{r % 4}.png" if r % 2 else "", [pool[p][0] for p in picks], [pool[p][1] for p in picks]))
    return rows


def brute_force_p1(encoder: FakeEncoder, rows: list[CustomRow], images: Path) -> float:
    """Precision@1 (percent) by scoring every candidate of every row anew, ties to the first."""
    def item(text: str, image: str) -> Item:
        return Item(text, str(images / image) if image else None)

    correct = 0
    for qt, qi, tt, ti in rows:
        q = encoder.vector(item(qt, qi)).astype(np.float64)
        sims = [float(q @ encoder.vector(item(t, i)).astype(np.float64)) for t, i in zip(tt, ti, strict=True)]
        correct += max(range(len(sims)), key=lambda k: (sims[k], -k)) == 0
    return 100.0 * correct / len(rows)


def build_custom(root: Path) -> dict[str, list[CustomRow]]:
    """An MMEB-eval (Hugging Face layout) folder of three custom datasets; Pets has a YAML card,
    Docs a JSON card beside a single parquet, Misc none."""
    rng = np.random.default_rng(3)
    write_images(root / "images", *(f"{i}.png" for i in range(4)))
    rows = {name: random_rows(rng, 20, name) for name in ("Pets", "Docs", "Misc")}
    write_eval(root / "Pets" / "test-00000-of-00001.parquet", rows["Pets"])
    (root / "Pets" / "card.yaml").write_text("meta_task: classification\nsplit: OOD\n")
    write_eval(root / "Docs.parquet", rows["Docs"])
    (root / "Docs.card.json").write_text(json.dumps({"meta_task": "VQA"}))
    write_eval(root / "Misc" / "test-00000-of-00001.parquet", rows["Misc"])
    return rows


#: The Hub's image column: bytes and an optional path.
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def page_png(shade: int) -> bytes:
    """An 8x8 PNG page whose colour ``shade`` sets."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 255 - shade, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_part(folder: Path, part: str, columns: dict[str, list], schema: pa.Schema | None = None) -> None:
    """One part (``corpus``, ``queries`` or ``qrels``) of a visual-document dataset."""
    (folder / part).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), folder / part / "test-00000-of-00001.parquet")


def build_visdoc(folder: Path, seed: int, pages: int = 9, queries: int = 12) -> dict[str, dict[str, float]]:
    """A BEIR-style dataset: int corpus-ids with image bytes, an extra column, graded qrels with zero scores
    and a repeated pair; returns the positive relevance per query id, as the reference keeps it."""
    rng = np.random.default_rng(seed)
    write_part(folder, "corpus", {"corpus-id": list(range(pages)),
                                  "image": [{"bytes": page_png(20 * i), "path": None} for i in range(pages)],
                                  "doc-id": [f"doc{i // 3}" for i in range(pages)]},
               pa.schema([("corpus-id", pa.int64()), ("image", IMAGE_STRUCT), ("doc-id", pa.string())]))
    texts = [f"question {q} [{rng.integers(1, 4)},{rng.integers(0, 3)},{rng.integers(0, 2)}]" for q in range(queries)]
    write_part(folder, "queries", {"query-id": list(range(queries)), "query": texts,
                                   "language": ["english"] * queries})
    qrels: list[tuple[int, int, int]] = []
    for q in range(queries):
        for page in rng.choice(pages, size=int(rng.integers(1, 4)), replace=False).tolist():
            qrels.append((q, page, int(rng.integers(0, 3))))
        qrels.append((q, int(q % pages), 1))
    qrels.append((0, qrels[0][1], 2))
    write_part(folder, "qrels", {"query-id": [r[0] for r in qrels], "corpus-id": [r[1] for r in qrels],
                                 "score": [r[2] for r in qrels]})
    relevance: dict[str, dict[str, float]] = {}
    for q, page, score in qrels:
        if score > 0:
            gains = relevance.setdefault(str(q), {})
            gains[str(page)] = max(gains.get(str(page), 0.0), float(score))
    return {"texts": dict(enumerate(texts)), "relevance": relevance}  # type: ignore[dict-item]


def write_llavahound_jsonl(path: Path, video_dir: Path) -> Path:
    """Three LLaVA-Hound rows, the second naming a video ``video_dir`` lacks."""
    rows = [{"id": "a", "video": "clip", "conversations": [{"from": "human", "value": "<video>\nDescribe it."},
                                                           {"from": "gpt", "value": "noise that moves"}]},
            {"id": "b", "video": "missing", "conversations": [{"from": "human", "value": "<video>\nWhat?"},
                                                              {"from": "gpt", "value": "nothing"}]},
            {"id": "c", "video": "long", "conversations": [{"from": "human", "value": "<video>\nIs it long?"},
                                                           {"from": "gpt", "value": "yes"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# --- downloads and MiniMMEB ---------------------------------------------------------------

def tiny_png() -> bytes:
    """An 8x8 black PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_train_snapshot(repo_id: str, repo_type: str, revision: str | None, local_dir: str) -> str:
    """MMEB-train's layout: a parquet folder per subset, images in images_zip/<Subset>.zip."""
    assert (repo_id, repo_type) == ("TIGER-Lab/MMEB-train", "dataset")
    root = Path(local_dir)
    for subset in ("CIRR", "DocVQA"):
        (root / subset).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"qry": ["<|image_1|> find it"], "qry_image_path": [f"{subset}/a.png"],
                                 "pos_text": ["x"], "pos_image_path": [f"{subset}/b.png"], "neg_text": [""],
                                 "neg_image_path": [""]}), root / subset / "original-00000-of-00001.parquet")
        (root / "images_zip").mkdir(exist_ok=True)
        with zipfile.ZipFile(root / "images_zip" / f"{subset}.zip", "w") as z:
            z.writestr(f"{subset}/a.png", tiny_png())
            z.writestr(f"{subset}/b.png", tiny_png())
    meta = root / ".cache" / "huggingface" / "download" / "CIRR"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "original-00000-of-00001.parquet.metadata").write_text("abc123\netag\n0\n")
    return local_dir


def copy_of(fetched: Path, tmp_path: Path) -> Path:
    """A copy of the ``fetched`` MMEB-V2 folder to change, without the pages a visdoc evaluation extracted."""
    folder = tmp_path / "data"
    shutil.copytree(fetched, folder, ignore=shutil.ignore_patterns("pages"))
    return folder


#: The sizes of the MiniMMEB the MiniMMEB tests inspect (``mini`` in tests/data/minimmeb/conftest.py).
MINI_SIZES = {"queries": 40, "pool": 100, "train_size": 60, "grounding_candidates": 30, "video_queries": 16,
              "video_train_size": 32}


def frames_of(images: Path, video: str) -> list[str]:
    """The pixel hashes of a MiniMMEB clip's frames, in order."""
    folder = images / video.removesuffix(".mp4")
    return [hashlib.sha256(Image.open(f).convert("RGB").tobytes()).hexdigest()
            for f in sorted(folder.iterdir(), key=lambda p: int(p.stem.split("_")[1]))]


# --- training stages and steps ------------------------------------------------------------

#: Steps of the ``pretrained`` stage-0 run (conftest).
PRETRAIN_STEPS = 20


#: Stage-0 fixture and model type of each backbone family whose stage chain is tested.
CHAIN_STARTS = [("pretrained", "qwen2_vl"), ("pretrained_qwen3_vl", "qwen3_vl")]


def base_overrides(tmp_path: Path) -> list[str]:
    """The data root and output folder every recipe needs."""
    return [f"data.root={tmp_path}", f"train.output_dir={tmp_path / 'out'}"]


#: A caption long enough to mask a fifth of and still label several tokens.
LONG_CAPTION = "a photo of a red dress on a white background next to a sneaker and a bag"


def text_positions(pre: Preprocessor, ex: CaptionPair) -> tuple[list[int], list[int]]:
    """The ids of a caption pair's sequence, and the positions of its (unprotected) text tokens."""
    enc = pre.fit(pre.item(Item(ex.caption, ex.media.image, ex.media.video)))
    return enc.ids, [i for i, p in enumerate(enc.protected) if not p]


def contrastive_trainer(objective: nn.Module, examples: list, builder: ContrastiveBuilder, tmp_path: Path,
                        temperature: float = 0.05) -> Trainer:
    """A trainer of one GradCache step over all ``examples``, with hard negatives."""
    plan = BatchPlan(len(examples), len(examples))
    step = GradCacheStep(ContrastiveLoss(ContrastiveConfig(temperature=temperature, hard_negatives=True)))
    return Trainer(objective, StepDataset(examples, builder, plan), step, 1,
                   TrainConfig(output_dir=str(tmp_path), max_steps=1), DistInfo(0, 1, 0, torch.device("cpu")),
                   tmp_path)


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    """The gradients of ``module``'s trainable parameters, which it then forgets."""
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad and p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
    """Same names, mostly non-zero, equal within ``rtol`` of each tensor's scale."""
    assert a.keys() == b.keys() and len(a) > 0
    nonzero = 0
    for name in a:
        scale = float(a[name].abs().max())
        assert torch.allclose(a[name], b[name], rtol=rtol, atol=rtol * scale + 1e-9), name
        nonzero += scale > 0
    assert nonzero > len(a) // 2


def assert_same_step(trainer: Trainer, objective: nn.Module, a: PairBatch, b: PairBatch) -> None:
    """The two batches give the same loss and the same gradients."""
    loss_a = trainer.compute(a)["loss"]
    g_a = grads(objective)
    loss_b = trainer.compute(b)["loss"]
    g_b = grads(objective)
    assert math.isclose(loss_a, loss_b, rel_tol=1e-5)
    assert_same_grads(g_a, g_b)


# --- several processes --------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun() -> list[str]:
    """The ``torchrun`` beside this Python, else the one on the path."""
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [shutil.which("torchrun") or "torchrun"]


DIST_EVAL_BATCH = 4  # chunks of 32 items: most datasets take several rounds, and the last round leaves a rank idle


def two_ranks(model_dir: Path, mini_dir: Path, out: Path) -> subprocess.CompletedProcess:
    """``cocoa eval`` on MiniMMEB under torchrun on two CPU ranks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "cocoa", "eval", "--model", str(model_dir), "--data", str(mini_dir), "--out", str(out),
           "--batch-size", str(DIST_EVAL_BATCH)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


# --- inference ----------------------------------------------------------------------------

#: The name the test servers serve their model under.
SERVED_MODEL = "tiny-cocoa"


def response_vectors(response: Any) -> np.ndarray:
    """The embeddings of a 200 ``/v1/embeddings`` response, float or base64, in input order."""
    assert response.status_code == 200, response.text
    rows = sorted(response.json()["data"], key=lambda d: d["index"])
    return np.array([r["embedding"] if isinstance(r["embedding"], list)
                     else np.frombuffer(base64.b64decode(r["embedding"]), "<f4") for r in rows], dtype=np.float32)


def inference_app() -> typer.Typer:
    """A command line of ``cocoa encode`` and ``cocoa index build|search`` alone (``noop``: typer keeps
    ``encode`` a subcommand)."""
    import typer

    from cocoa.inference.cli import encode, index_app

    app = typer.Typer()
    app.command("encode")(encode)
    app.command("noop")(lambda: None)
    app.add_typer(index_app, name="index")
    return app


def checkpoint_with_spec(model_dir: Path, tmp_path: Path, spec: EmbeddingSpec) -> Path:
    """A copy of ``model_dir`` whose ``cocoa.json`` is ``spec``."""
    folder = shutil.copytree(model_dir, tmp_path / "model")
    spec.save(folder)
    return folder


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors of ``dim`` dimensions."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


#: Rows per shard of :func:`write_shards`.
SHARD_ROWS = 2000


def clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 fixed centres, as embeddings of a real collection cluster (``seed`` draws the points)."""
    centres = np.random.default_rng(dim).standard_normal((50, dim))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, 50, count)] + 0.4 * rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_shards(folder: Path, vectors: np.ndarray, ids: list[str] | None = None) -> ShardReader:
    """``vectors`` (and ``ids``) written as an embedding shard folder, read back."""
    ids = ids or [f"v{i}" for i in range(len(vectors))]
    plan = ShardPlan("fp", vectors.shape[1], SHARD_ROWS, {"path": "synthetic", "kind": "jsonl", "rows": len(vectors)})
    output = ShardedOutput(folder, plan)
    output.start()
    for k in range(plan.num_shards):
        rows = slice(plan.first_row(k), plan.first_row(k) + plan.shard_rows(k))
        output.write(k, ids[rows], [{"n": i} for i in range(len(vectors))][rows], vectors[rows])
    output.finish()
    return ShardReader(folder)
