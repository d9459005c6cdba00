"""The shared inputs of the side-by-side benchmark: a tiny Qwen2-VL folder and Fashion-MNIST in MMEB format.

The model folder is written in the layout of the Hub's Qwen2-VL checkpoints (a flat config with
``rope_scaling``, the weights under ``model.*`` / ``visual.*`` / ``lm_head``), which transformers
4.46 (VLM2Vec's) and transformers 5 (cocoa's) both load. The data follows MMEB's own formats in the
Hugging Face layout, with a README that declares each subset as a config, so that
``datasets.load_dataset(folder, subset)`` reads it as it reads TIGER-Lab/MMEB-train and MMEB-eval:

- ``train/FashionMNIST/original-00000-of-00001.parquet``: ``qry``, ``qry_image_path``,
  ``pos_text``, ``pos_image_path`` with MMEB's ImageNet-1K instruction, and empty ``neg_text``,
  ``neg_image_path`` (VLM2Vec's train set reader fails on a config without them);
- ``eval/FashionMNIST/test-00000-of-00001.parquet``: ``qry_text``, ``qry_img_path``,
  ``tgt_text`` (the ten labels, gold first), ``tgt_img_path``;
- ``images/fashion/{train,test}/NNNNN.png``: 56x56 RGB (four merged tokens each).

With ``vary`` (the conformance check's data), each eval query's instruction ends with 0 to 16 extra
words and each row's candidates with 0 to 4, chosen by the row's index, so that the items of a
batch have different token lengths and padding and last-token pooling on padded rows are exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.data.items import IMAGE_PLACEHOLDER
from cocoa.data.minimmeb.pools import item_image
from cocoa.data.minimmeb.sources import FASHION_CLASSES, load_fashion_mnist
from cocoa.model.backbone import Backbone

SUBSET = "FashionMNIST"
QUERY = f"{IMAGE_PLACEHOLDER} Represent the given image for classification.\n"
CONFIG_KEYS_DROPPED = ("model_type", "rope_parameters", "layer_types", "dtype")
#: Words added at the end by ``vary``: all in the tiny tokenizer's corpus, one token each.
FILLER = ("the", "given", "image", "for", "classification")


def varied_query(row: int) -> str:
    """Eval row ``row``'s query under ``vary``: the instruction plus ``(5 * row) % 17`` filler words."""
    extra = "".join(f" {FILLER[j % len(FILLER)]}" for j in range((5 * row) % 17))
    return QUERY.removesuffix(".\n") + extra + ".\n"


def varied_target(label: str, row: int) -> str:
    """A candidate label of eval row ``row`` under ``vary``: the label plus ``row % 5`` filler words."""
    return label + "".join(f" {FILLER[-1 - j]}" for j in range(row % 5))


def _readme(split: str) -> str:
    return (f"---\nconfigs:\n- config_name: {SUBSET}\n  data_files:\n  - split: {split}\n"
            f"    path: {SUBSET}/{split}-*.parquet\n---\n")


def _write(table: dict[str, list], root: Path, split: str) -> None:
    folder = root / SUBSET
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), folder / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text(_readme(split))


def build_data(out: Path, train_rows: int, eval_rows: int, seed: int = 0, vary: bool = False) -> Path:
    """Write the train and eval sets and their images under ``out``; returns ``out``. ``seed`` picks
    the images; ``vary`` gives the eval rows texts of different lengths (see the module's doc)."""
    rng = np.random.default_rng(seed)
    labels_text = list(FASHION_CLASSES)
    for split, rows in (("train", train_rows), ("test", eval_rows)):
        images, labels = load_fashion_mnist(split)
        picked = rng.choice(len(images), size=rows, replace=False)
        paths = []
        for index in picked:
            rel = f"fashion/{split}/{int(index):05d}.png"
            (out / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            item_image(images[index]).save(out / "images" / rel)
            paths.append(rel)
        golds = [labels_text[int(labels[i])] for i in picked]
        if split == "train":
            _write({"qry": [QUERY] * rows, "qry_image_path": paths, "pos_text": golds, "pos_image_path": [""] * rows,
                    "neg_text": [""] * rows, "neg_image_path": [""] * rows}, out / "train", "original")
        else:
            candidates = [[gold] + [t for t in labels_text if t != gold] for gold in golds]
            queries = [QUERY] * rows
            if vary:
                queries = [varied_query(i) for i in range(rows)]
                candidates = [[varied_target(t, i) for t in row] for i, row in enumerate(candidates)]
            _write({"qry_text": queries, "qry_img_path": paths, "tgt_text": candidates,
                    "tgt_img_path": [[""] * len(labels_text)] * rows}, out / "eval", "test")
    return out


def hub_config(config: dict) -> dict:
    """A transformers-5 Qwen2-VL config in the Hub's flat layout (text fields at the top)."""
    text = config["text_config"]
    rope = text["rope_parameters"]
    flat = {k: v for k, v in config.items() if k not in ("text_config", "dtype")}
    flat.update({k: v for k, v in text.items() if k not in CONFIG_KEYS_DROPPED})
    flat["rope_theta"] = rope["rope_theta"]
    flat["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    flat["torch_dtype"] = "float32"
    vision = {k: v for k, v in config["vision_config"].items() if k != "rope_parameters"}
    flat["vision_config"] = vision
    return flat


def build_model(out: Path, preset: str, corpus: list[str], vocab: int = 0, seed: int = 0) -> Path:
    """A randomly initialised tiny Qwen2-VL folder (tokenizer learned on ``corpus``) in the Hub layout.

    ``vocab`` > 0 gives the embedding and LM-head matrices that many rows (the tokenizer uses the
    first ones), as real checkpoints carry more rows than their tokenizer has tokens.
    """
    backbone = Backbone.tiny(preset, "qwen2_vl", corpus=corpus, seed=seed)
    if vocab:
        if vocab < len(backbone.tokenizer):
            raise ValueError(f"vocab {vocab} is below the tokenizer's {len(backbone.tokenizer)} tokens")
        backbone.model.resize_token_embeddings(vocab, mean_resizing=False)
    backbone.save(out)
    return hub_layout(out)


def hub_layout(folder: Path) -> Path:
    """Rewrite a saved model folder's config and image-processor files in the Hub's layout, which
    transformers 4.46 (VLM2Vec's pin) reads as well as 5 does; returns ``folder``."""
    config = json.loads((folder / "config.json").read_text())
    if "text_config" in config:
        (folder / "config.json").write_text(json.dumps(hub_config(config), indent=2))
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    processor["min_pixels"] = processor["size"]["shortest_edge"]
    processor["max_pixels"] = processor["size"]["longest_edge"]
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder


def build(work: Path, preset: str, vocab: int, train_rows: int, eval_rows: int, seed: int = 0,
          vary: bool = False) -> tuple[Path, Path]:
    """The model folder and the data folder under ``work`` (each kept when built with the same settings)."""
    name = f"data-{train_rows}-{eval_rows}" + (f"-seed{seed}" if seed else "") + ("-varied" if vary else "")
    data, model = work / name, work / f"model-{preset}-vocab{vocab or 'tok'}"
    if not (data / "eval" / "README.md").is_file():
        build_data(data, train_rows, eval_rows, seed, vary)
    if not (model / "config.json").is_file():
        build_model(model, preset, [QUERY.replace(IMAGE_PLACEHOLDER, " "), *FASHION_CLASSES], vocab)
    return model, data
