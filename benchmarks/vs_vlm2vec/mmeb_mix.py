"""Stage-3 training and evaluation on MMEB-shaped data: VLM2Vec v1 against cocoa, padded and packed (not a test).

The model is ``packed_training.py``'s Qwen2-VL whose vision-tower to language-model FLOP ratio
per 448x448 image is Qwen2-VL-2B's (``--shape 2b``) or 7B's (``--shape 7b``), saved in the Hub
layout both transformers versions read, its processor fixed at 448x448 (256 image tokens). The
data is four MMEB-train-format subsets in the shares ``packed_training.py`` assumes for MMEB-train's
20 (image -> text 55%, text -> image 20%, image -> image 15%, image -> caption 10%), mixed into
one shuffled stream by both trainers as VLM2Vec v1 does. Settings on both sides: batch 32,
GradCache chunks of 8, max_len 512, temperature 0.02, causal attention with last-token pooling,
no hard negatives, one epoch, fp32, one process under torchrun. Systems alternate, the order
flipping each round. Each trainer reports its own samples/s (its training loop, preprocessing
included). A fourth run, cocoa packed with token chunks, cuts GradCache chunks over the whole
batch of queries and targets by ``4 x pack_tokens`` computed tokens (``contrastive.gradcache_tokens``)
instead of 8 sequences.

Computed tokens per step: VLM2Vec runs its processor over the 32 queries and, apart, the 32
targets, padding each to its longest; cocoa pads each chunk of 8 (queries, then targets) to its
longest, or packs it. Their ratio to the real tokens is computed on the same data in random
batches of 32 (seed 0), by each system's rule.

Evaluation (``--what eval``): the same model, untrained (speed does not depend on the weights),
and four MMEB-eval-format subsets of the same kinds and shares, ``--queries`` queries in all,
each with 10 candidates (gold first) from the subset's pool: 40 texts of 5-40 tokens, or 16
images with one fixed instruction, so candidates repeat across queries as MMEB-eval's do. Both
systems embed each distinct (text, image) item once, in batches of ``--eval-batch``; VLM2Vec's
eval.py in its own (hash) order, cocoa's ``cocoa eval`` sorted by length (and each item once
across subsets: its cache serves the image candidates two subsets share). Items/s is the
subsets' distinct items over each system's own encoding time (VLM2Vec: its tqdm bars' elapsed
time; cocoa: the seconds each dataset's score file records, which include scoring), and over the
process wall. Attention differs (VLM2Vec causal, cocoa's default protocol bidirectional), which
costs the same.

    benchmarks/vs_vlm2vec/setup.sh
    python benchmarks/vs_vlm2vec/mmeb_mix.py --shape 2b --rows 256 --rounds 2
    python benchmarks/vs_vlm2vec/mmeb_mix.py --shape 2b --what eval --queries 64 --rounds 2
    python benchmarks/vs_vlm2vec/mmeb_mix.py --smoke [--what eval] [--work DIR]

``--smoke`` is one round of 32 pairs (one step) or 8 queries, with the model's processor fixed at
56x56 (4 image tokens) and one cocoa run: packed with token chunks (train) or packed (eval, besides
the profiled padded one); where VLM2Vec is not set up under ``--work``, cocoa's side alone.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from build import hub_layout
from PIL import Image
from run import REPO, TRAIN_SAMPLES, timed, vlm2vec_ready

sys.path.insert(0, str(REPO / "benchmarks" / "speed"))
sys.path.insert(0, str(REPO / "benchmarks"))
from packed_training import SIDE, backbone, flop_ratio, mmeb_pairs, text

from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, TrainPair
from cocoa.model.backbone import Backbone, build_image_processor
from cocoa.model.packing import pack_rows, token_chunks

KINDS = ("ImageToText", "TextToImage", "ImageToImage", "ImageToCaption")
MAX_LEN = 512
SMOKE_SIDE = 56


def kind_of(pair: TrainPair) -> str:
    """The subset a pair of ``mmeb_pairs`` belongs to, by which sides carry an image."""
    if pair.query.image is None:
        return "TextToImage"
    if pair.positive.image is not None:
        return "ImageToImage"
    return "ImageToCaption" if len(pair.positive.text) > 30 else "ImageToText"


def build_data(out: Path, rows: int) -> dict[str, int]:
    """MMEB-train-format subsets of ``rows`` pairs in all, under ``out/train``, images under ``out/images``."""
    rng = np.random.default_rng(0)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        Image.fromarray((rng.random((SIDE, SIDE, 3)) * 255).astype("uint8")).save(out / "images" / f"{i}.png")
    pairs = mmeb_pairs(rows, 1000, out / "images")
    tables: dict[str, dict[str, list]] = {k: {c: [] for c in ("qry", "qry_image_path", "pos_text", "pos_image_path",
                                                               "neg_text", "neg_image_path")} for k in KINDS}
    for pair in pairs:
        table = tables[kind_of(pair)]
        table["qry"].append(pair.query.text)
        table["qry_image_path"].append(Path(pair.query.image).name if pair.query.image else "")
        table["pos_text"].append(pair.positive.text)
        table["pos_image_path"].append(Path(pair.positive.image).name if pair.positive.image else "")
        table["neg_text"].append("")
        table["neg_image_path"].append("")
    configs = []
    for kind, table in tables.items():
        folder = out / "train" / kind
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), folder / "original-00000-of-00001.parquet")
        configs.append(f"- config_name: {kind}\n  data_files:\n  - split: original\n    path: {kind}/original-*.parquet\n")
    (out / "train" / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    return {kind: len(table["qry"]) for kind, table in tables.items()}


#: cocoa's settings per system: pack_tokens and contrastive.gradcache_tokens (None: chunks of 8 sequences).
SYSTEMS: dict[str, tuple[int | None, int | None]] = {"vlm2vec": (None, None), "cocoa padded": (None, None)}
EVAL_SHARES = {"ImageToText": 0.55, "TextToImage": 0.20, "ImageToImage": 0.15, "ImageToCaption": 0.10}
META_TASK = {"ImageToText": "classification", "TextToImage": "retrieval", "ImageToImage": "retrieval",
             "ImageToCaption": "retrieval"}
CANDIDATES = 10
TARGET_INSTRUCTION = f"{IMAGE_PLACEHOLDER} Represent the given image."
ELAPSED = re.compile(r"Encode (query|target): 100%[^\[]*\[(?:(\d+):)?(\d+):(\d+)<")


def build_eval_data(out: Path, queries: int) -> int:
    """MMEB-eval-format subsets under ``out/eval`` (images under ``out/images``); the items to embed:
    each subset's distinct queries and distinct candidates, summed over subsets."""
    rng = np.random.default_rng(1)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pool_images = []
    for i in range(16):
        name = f"eval-{i}.png"
        Image.fromarray((rng.random((SIDE, SIDE, 3)) * 255).astype("uint8")).save(out / "images" / name)
        pool_images.append(name)
    configs, items = [], 0
    for kind, share in EVAL_SHARES.items():
        queries_seen: set[tuple[str, str]] = set()
        candidates_seen: set[tuple[str, str]] = set()
        texts = [text(rng, 5, 40) for _ in range(40)]
        image_target = kind in ("TextToImage", "ImageToImage")
        pool = [(TARGET_INSTRUCTION, name) for name in pool_images] if image_target else [(t, "") for t in texts]
        table: dict[str, list] = {"qry_text": [], "qry_img_path": [], "tgt_text": [], "tgt_img_path": []}
        for _ in range(max(1, round(share * queries))):
            if kind == "TextToImage":
                query = (text(rng, 5, 40), "")
            else:
                query = (f"{IMAGE_PLACEHOLDER} {text(rng, 10, 30)}", str(rng.choice(pool_images)))
            picked = [pool[int(i)] for i in rng.choice(len(pool), CANDIDATES, replace=False)]
            table["qry_text"].append(query[0])
            table["qry_img_path"].append(query[1])
            table["tgt_text"].append([t for t, _ in picked])
            table["tgt_img_path"].append([p for _, p in picked])
            queries_seen.add(query)
            candidates_seen.update(picked)
        items += len(queries_seen) + len(candidates_seen)
        folder = out / "eval" / kind
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), folder / "test-00000-of-00001.parquet")
        configs.append(f"- config_name: {kind}\n  data_files:\n  - split: test\n    path: {kind}/test-*.parquet\n")
    (out / "eval" / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    return items


def vlm2vec_eval(work: Path, model: Path, data: Path, out: Path, batch: int) -> tuple[float, float]:
    """VLM2Vec v1's eval.py: seconds its encoding bars report, and the process wall."""
    venv, src = work / "venv", work / "VLM2Vec"
    cmd = [str(venv / "bin" / "python"), "eval.py", "--model_name", str(model), "--encode_output_path", str(out),
           "--output_dir", str(out), "--dataset_name", str(data / "eval"), "--dataset_split", "test",
           "--subset_name", *KINDS, "--per_device_eval_batch_size", str(batch), "--image_dir", str(data / "images"),
           "--image_resolution", "original", "--max_len", str(MAX_LEN), "--pooling", "last", "--normalize", "True",
           "--dataloader_num_workers", "0", "--report_to", "none"]
    env = {"VLM2VEC_ATTN": "sdpa", "PYTHONPATH": str(src), "VLM2VEC_DTYPE": "float32", "WANDB_MODE": "disabled",
           "HF_DATASETS_CACHE": str(out.with_suffix(".hf-cache"))}
    log = out.with_suffix(".log")
    wall, _ = timed(cmd, log, {**os.environ, **env}, src)
    bars: list[tuple[str, str, str, str]] = []
    for bar in ELAPSED.findall(log.read_text().replace("\r", "\n")):  # a bar may print 100% twice: keep its last
        if bars and bars[-1][0] == bar[0]:
            bars.pop()
        bars.append(bar)
    if len(bars) != 2 * len(KINDS):
        raise SystemExit(f"expected {2 * len(KINDS)} finished encoding bars in {log}, found {len(bars)}")
    return sum(int(h or 0) * 3600 + int(m) * 60 + int(sec) for _, h, m, sec in bars), wall


def cocoa_eval(model: Path, data: Path, out: Path, batch: int, pack_tokens: int | None) -> tuple[float, float]:
    """``cocoa eval``: seconds its datasets record, and the process wall."""
    cmd = [str(REPO / ".venv" / "bin" / "cocoa"), "eval", "--model", str(model), "--data", str(data / "eval"),
           "--images", str(data / "images"), "--out", str(out), "--batch-size", str(batch),
           *(f"--dataset-info={kind}={META_TASK[kind]}" for kind in KINDS),
           *(["--pack-tokens", str(pack_tokens)] if pack_tokens else [])]
    wall, _ = timed(cmd, out.with_suffix(".log"), dict(os.environ), REPO)
    return sum(json.loads((out / f"{kind}_score.json").read_text())["seconds"] for kind in KINDS), wall


#: Where ``cocoa eval``'s time goes: (label, cocoa module, function) whose cumulative time is reported.
PROFILED = (("whole command", "cocoa/cli.py", "main"), ("evaluation", "cocoa/evaluate/runner.py", "evaluate"),
             ("model forward", "cocoa/model/packing.py", "embed"),
             ("vision tower", "cocoa/model/forward.py", "vision_features"),
             ("preprocessing", "cocoa/data/collate.py", "embedding_sequence"))


def cocoa_eval_profile(model: Path, data: Path, out: Path, batch: int) -> str:
    """One padded ``cocoa eval`` under cProfile: the cumulative seconds of :data:`PROFILED`."""
    if out.exists():
        shutil.rmtree(out)
    stats_file = out.with_suffix(".prof")
    cmd = [str(REPO / ".venv" / "bin" / "python"), "-m", "cProfile", "-o", str(stats_file), "-m", "cocoa.cli", "eval",
           "--model", str(model), "--data", str(data / "eval"), "--images", str(data / "images"), "--out", str(out),
           "--batch-size", str(batch), *(f"--dataset-info={kind}={META_TASK[kind]}" for kind in KINDS)]
    timed(cmd, out.with_suffix(".log"), dict(os.environ), REPO)
    stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    found = {label: sum(v[3] for (file, _, name), v in stats.items() if file.endswith(path) and name == func)
             for label, path, func in PROFILED}
    found["language model"] = found["model forward"] - found["vision tower"]
    return ", ".join(f"{label} {seconds:.1f} s" for label, seconds in found.items())


def eval_rounds(args: argparse.Namespace, work: Path, model: Path, data: Path, root: Path) -> None:
    items = build_eval_data(data, args.queries)
    print(f"{items} items (distinct per subset), eval batch {args.eval_batch}")
    cocoa_runs = ["cocoa packed"] if args.smoke else ["cocoa padded", "cocoa packed"]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ["vlm2vec"] * vlm2vec_ready(work) + cocoa_runs}
    for r in range(args.rounds):
        for name in list(results) if r % 2 == 0 else list(results)[::-1]:
            out = root / "eval-runs" / f"{name.replace(' ', '-')}-r{r}"
            if out.exists():
                shutil.rmtree(out)
            if name == "vlm2vec":
                value = vlm2vec_eval(work, model, data, out, args.eval_batch)
            else:
                value = cocoa_eval(model, data, out, args.eval_batch,
                                   args.pack_tokens if name == "cocoa packed" else None)
            results[name].append(value)
            print(f"round {r} {name}: encoding {value[0]:.1f} s, process {value[1]:.1f} s", flush=True)
    print("cocoa eval (padded) under cProfile: " + cocoa_eval_profile(model, data, root / "eval-runs" / "profile",
                                                                      args.eval_batch))
    base = statistics.median(items / s for s, _ in results["vlm2vec"]) if "vlm2vec" in results else None
    print(f"\n| system | items/s encoding (median of {args.rounds}) | / VLM2Vec | items/s process wall |"
          "\n|---|---|---|---|")
    for name, values in results.items():
        rate = statistics.median(items / s for s, _ in values)
        print(f"| {name} | {rate:.2f} | {ratio(rate, base)} | {statistics.median(items / w for _, w in values):.2f} |")


def ratio(value: float, base: float | None) -> str:
    """``value / base`` as a factor, ``-`` without VLM2Vec's figure."""
    return "-" if base is None else f"{value / base:.2f}x"


def computed_tokens(chunk: list[int], pack_tokens: int | None) -> int:
    """Tokens the language model computes for one chunk: padded, or packed when that saves rows
    (``model.packing.Packing.rows``)."""
    padded = len(chunk) * max(chunk)
    if pack_tokens is None:
        return padded
    rows = pack_rows(chunk, pack_tokens)
    fill = [sum(n for n, r in zip(chunk, rows, strict=True) if r == row) for row in set(rows)]
    return len(fill) * max(fill) if len(fill) < len(chunk) else padded


def token_ratios(model_dir: Path, data: Path, pack_tokens: int) -> dict[str, float]:
    """Real tokens / computed tokens under each system's rule, on random batches of 32 of the data."""
    pre = Preprocessor(Backbone.load(model_dir), MAX_LEN, PROTOCOLS["cocoa"])
    rows = [row for kind in KINDS
            for row in pq.read_table(data / "train" / kind / "original-00000-of-00001.parquet").to_pylist()]

    def seq(text: str, image: str) -> int:
        item = Item(text, str(data / "images" / image) if image else None)
        return len(pre.embedding_sequence(item))

    lengths = [(seq(r["qry"], r["qry_image_path"]), seq(r["pos_text"], r["pos_image_path"])) for r in rows]
    order = np.random.default_rng(0).permutation(len(lengths))
    real = 0
    computed = dict.fromkeys(SYSTEMS, 0)
    for start in range(0, len(order) - 31, 32):
        batch = [lengths[i] for i in order[start:start + 32]]
        queries, targets = [q for q, _ in batch], [t for _, t in batch]
        real += sum(queries) + sum(targets)
        computed["vlm2vec"] += 32 * max(queries) + 32 * max(targets)
        for name, (pack, chunk_tokens) in SYSTEMS.items():
            if name == "vlm2vec":
                continue
            seqs = queries + targets
            chunks = ([[seqs[i] for i in c] for c in token_chunks(seqs, chunk_tokens, pack)] if chunk_tokens
                      else [seqs[i:i + 8] for i in range(0, 64, 8)])
            computed[name] += sum(computed_tokens(c, pack) for c in chunks)
    return {name: real / tokens for name, tokens in computed.items()}


def vlm2vec_train(work: Path, model: Path, data: Path, out: Path, rows: int, port: int) -> float:
    venv, src = work / "venv", work / "VLM2Vec"
    cmd = [str(venv / "bin" / "torchrun"), "--nproc_per_node", "1", "--master_port", str(port), "train.py",
           "--model_name", str(model), "--output_dir", str(out), "--dataset_name", str(data / "train"),
           "--split_name", "original", "--subset_name", *KINDS, "--num_sample_per_subset", str(rows),
           "--temperature", "0.02", "--per_device_train_batch_size", "32", "--grad_cache", "True",
           "--gc_q_chunk_size", "8", "--gc_p_chunk_size", "8", "--learning_rate", "1e-4", "--num_train_epochs", "1",
           "--lr_scheduler_type", "linear", "--warmup_steps", "0", "--save_strategy", "no", "--logging_steps", "10",
           "--remove_unused_columns", "False", "--seed", "0", "--image_dir", str(data / "images"),
           "--image_resolution", "original", "--max_len", str(MAX_LEN), "--pooling", "last", "--normalize", "True",
           "--dataloader_num_workers", "0", "--report_to", "none"]
    env = {"VLM2VEC_ATTN": "sdpa", "PYTHONPATH": str(src), "VLM2VEC_DTYPE": "float32", "WANDB_MODE": "disabled",
           "HF_DATASETS_CACHE": str(out.with_suffix(".hf-cache"))}
    log = out.with_suffix(".log")
    timed(cmd, log, {**os.environ, **env}, src)
    return float(TRAIN_SAMPLES.findall(log.read_text())[-1])


def cocoa_train(model: Path, data: Path, out: Path, rows: int, port: int, pack_tokens: int | None,
                chunk_tokens: int | None) -> float:
    recipe = {
        "stage": "contrastive",
        "model": {"path": str(model), "attn_implementation": "sdpa"},
        "data": {"root": str(data / "train"), "images": str(data / "images"), "subsets": list(KINDS),
                 "split": "original", "cap": rows, "max_len": MAX_LEN},
        "train": {"output_dir": str(out), "batch_size": 32, "epochs": 1, "lr": 1e-4, "warmup_steps": 0,
                  "schedule": "linear", "precision": "fp32", "seed": 0, "log_every": 10, "save_every": 100_000,
                  "pack_tokens": pack_tokens},
        "contrastive": {"temperature": 0.02, "attention": "causal", "hard_negatives": False,
                        "gradcache_chunk": None if chunk_tokens else 8, "gradcache_tokens": chunk_tokens},
        "protocol": {"preset": "cocoa", "image": {}},
    }
    path = out.with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    cmd = [str(REPO / ".venv" / "bin" / "torchrun"), "--nproc_per_node", "1", "--master_port", str(port),
           "-m", "cocoa.cli", "train", str(path)]
    timed(cmd, out.with_suffix(".log"), dict(os.environ), REPO)
    return float(json.loads((out / "result.json").read_text())["samples_per_second"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "vs_vlm2vec")
    parser.add_argument("--shape", choices=("2b", "7b"), default="2b")
    parser.add_argument("--rows", type=int, help="training pairs in all (default: 256; 32 with --smoke)")
    parser.add_argument("--rounds", type=int, help="default: 2; 1 with --smoke")
    parser.add_argument("--pack-tokens", type=int, default=512)
    parser.add_argument("--port", type=int, default=29641)
    parser.add_argument("--what", choices=("train", "eval"), default="train")
    parser.add_argument("--queries", type=int, help="evaluation queries in all (default: 64; 8 with --smoke)")
    parser.add_argument("--eval-batch", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    args.rows, args.rounds = args.rows or (32 if args.smoke else 256), args.rounds or (1 if args.smoke else 2)
    args.queries = args.queries or (8 if args.smoke else 64)
    work = args.work.resolve()
    if not vlm2vec_ready(work):
        if not args.smoke:
            raise SystemExit(f"VLM2Vec is not set up under {work}: run benchmarks/vs_vlm2vec/setup.sh {work}")
        print(f"VLM2Vec is not set up under {work}: cocoa's side only")
    root = work / (f"mmeb-mix-{args.shape}-{args.rows}" + ("-smoke" if args.smoke else ""))
    model, data = root / "model", root / "data"
    if not (model / "config.json").is_file():
        counts = build_data(data, args.rows)
        b = backbone(args.shape)
        if args.smoke:
            b.image_processor = build_image_processor(SMOKE_SIDE**2, SMOKE_SIDE**2)
        b.save(model)
        hub_layout(model)
        print(f"subsets {counts}; vision FLOPs per {SIDE}x{SIDE} image = {flop_ratio(b):.0f} LM tokens")
    if args.what == "eval":
        eval_rounds(args, work, model, data, root)
        return
    SYSTEMS.update({"cocoa packed": (args.pack_tokens, None),
                    "cocoa packed, token chunks": (args.pack_tokens, 4 * args.pack_tokens)})
    ratios = token_ratios(model, data, args.pack_tokens)
    print("real / computed tokens: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    cocoa_runs = ["cocoa packed, token chunks"] if args.smoke else [name for name in SYSTEMS if name != "vlm2vec"]
    results: dict[str, list[float]] = {name: [] for name in ["vlm2vec"] * vlm2vec_ready(work) + cocoa_runs}
    for r in range(args.rounds):
        names = list(results) if r % 2 == 0 else list(results)[::-1]
        for name in names:
            out = root / "runs" / f"{name.replace(' ', '-').replace(',', '')}-r{r}"
            if name == "vlm2vec":
                value = vlm2vec_train(work, model, data, out, args.rows, args.port)
            else:
                value = cocoa_train(model, data, out, args.rows, args.port, *SYSTEMS[name])
            results[name].append(value)
            print(f"round {r} {name}: {value:.2f} samples/s", flush=True)
    base = statistics.median(results["vlm2vec"]) if "vlm2vec" in results else None
    print(f"\n| system | samples/s (median of {args.rounds}) | / VLM2Vec | real / computed tokens |\n|---|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {ratio(median, base)} | {ratios[name]:.3f} |")


if __name__ == "__main__":
    main()
