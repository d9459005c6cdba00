"""Helpers the tests share: tiny backbones, hand-made MMEB-schema benchmarks with a fake encoder,
and tiny training recipes on a MiniMMEB folder (``mini_dir`` in conftest)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.data.video_tasks import VIDEO_TASKS
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed_padded
from cocoa.model.packing import Packing
from cocoa.recipe import Recipe, builtin, load_recipe

# --- backbones ----------------------------------------------------------------------------

CORPUS = [
    "a photo of a red dress on a white background",
    "Represent the given image for classification.",
    "Find me an everyday image that matches the given caption: a sneaker next to a bag",
    "what is in the top-left corner? an ankle boot",
] * 20


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
                  Item("an ankle boot")),
        TrainPair(Item("Find me an everyday image that matches the given caption: a sneaker next to a bag"),
                  Item("", img["b"]), Item("a photo", img["c"])),
        TrainPair(Item("what is in the top-left corner?", img["d"]), Item("an ankle boot"),
                  Item("a red dress on a white background")),
        TrainPair(Item("a photo of a red dress on a white background"), Item("a white background", img["c"]),
                  Item("", img["a"])),
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


# --- MMEB-V2 video tasks -----------------------------------------------------------------

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
