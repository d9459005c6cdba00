"""Conformance: VLM2Vec v1's own eval.py against ``cocoa eval --protocol vlm2vec-v1-<resolution>``, query by query.

Both evaluate the same Qwen2-VL folder (``build.py``'s tiny model, or ``--model``) on the same
MMEB-format Fashion-MNIST eval set. VLM2Vec runs from the source and venv of ``setup.sh`` (patched by
``vlm2vec-cpu.patch``: sdpa, the dtype from ``VLM2VEC_DTYPE``), with ``--image_resolution
<resolution> --pooling last --normalize True --max_len 4096``, in fp32 (cocoa's CPU dtype). cocoa runs
with the matching protocol.
Prints the share of queries whose predicted candidate agrees, the largest difference between the
two systems' embeddings of the same item (query or candidate), and, for each query that disagrees,
its top-two score margin under each system (a flip between two candidates whose scores are closer
than the embeddings' difference can move them is float rounding, not a protocol difference).
Each system's own reported score is checked against the one recomputed from its embeddings.

    benchmarks/vs_vlm2vec/setup.sh
    python benchmarks/vs_vlm2vec/conformance.py --resolution low
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from build import SUBSET, build, hub_layout
from run import REPO, VLM2Vec, timed

Key = tuple[str, str]


def vlm2vec_embeddings(out: Path) -> dict[Key, np.ndarray]:
    """``(text, image path)`` -> embedding, from eval.py's ``<subset>_qry`` / ``<subset>_tgt`` pickles."""
    found: dict[Key, np.ndarray] = {}
    for side in ("qry", "tgt"):
        with (out / f"{SUBSET}_{side}").open("rb") as f:
            tensor, pairs = pickle.load(f)
        found.update({(p["text"], p["img_path"]): np.asarray(t, dtype=np.float64) for t, p in zip(tensor, pairs,
                                                                                                  strict=True)})
    return found


def cocoa_embeddings(out: Path, images: Path) -> dict[Key, np.ndarray]:
    """``(text, image path relative to ``images``)`` -> embedding, from cocoa's embedding cache under ``out``."""
    found: dict[Key, np.ndarray] = {}
    prefix = str(images.resolve()) + os.sep
    for keys_file in sorted((out / "cache").glob("*/*.keys.json")):
        array = np.load(keys_file.with_name(keys_file.name.removesuffix(".keys.json") + ".npy"))
        for (text, image), row in zip(json.loads(keys_file.read_text()), array, strict=True):
            found[(text, image.removeprefix(prefix))] = np.asarray(row, dtype=np.float64)
    return found


def rows(data: Path) -> list[tuple[Key, list[Key]]]:
    """Each eval row's query key and candidate keys (gold first)."""
    table = pq.read_table(next((data / "eval" / SUBSET).glob("*.parquet"))).to_pylist()
    return [((r["qry_text"], r["qry_img_path"]), list(zip(r["tgt_text"], r["tgt_img_path"], strict=True)))
            for r in table]


def predictions(embeddings: dict[Key, np.ndarray], data: list[tuple[Key, list[Key]]]) -> tuple[list[int], list[float]]:
    """Argmax candidate per row (ties to the first, as both systems break them) and its top-two margin."""
    preds, margins = [], []
    for query, candidates in data:
        q = embeddings[query] / np.linalg.norm(embeddings[query])
        scores = np.array([q @ (embeddings[c] / np.linalg.norm(embeddings[c])) for c in candidates])
        preds.append(int(np.argmax(scores)))
        top = np.sort(scores)[::-1]
        margins.append(float(top[0] - top[1]) if len(top) > 1 else float("inf"))
    return preds, margins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "vs_vlm2vec")
    parser.add_argument("--resolution", choices=("low", "mid", "high"), default="low")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--eval-rows", type=int, default=1000)
    parser.add_argument("--model", type=Path, help="a Qwen2-VL folder to evaluate (default: build.py's tiny one)")
    args = parser.parse_args()
    work = args.work.resolve()
    built, data = build(work, args.preset, 0, 64, args.eval_rows)
    model = built
    if args.model:  # a copy in the layout both transformers versions read
        model = work / "conformance" / f"model-{args.model.resolve().parent.name}"
        if not (model / "config.json").is_file():
            shutil.copytree(args.model, model)
            hub_layout(model)
    out = work / "conformance" / f"{model.name}-{args.resolution}-{args.eval_rows}"
    protocol = f"vlm2vec-v1-{args.resolution}"

    vlm2vec = VLM2Vec(work, "fp32", 0, resolution=args.resolution, max_len=4096)
    v_out = out / "vlm2vec"
    if not (v_out / f"{SUBSET}_score.json").is_file():
        vlm2vec.evaluate(model, data, v_out, 0)
    c_out = out / "cocoa"
    if not (c_out / "summary.json").is_file():
        cmd = [str(REPO / ".venv" / "bin" / "cocoa"), "eval", "--model", str(model), "--data", str(data / "eval"),
               "--images", str(data / "images"), "--out", str(c_out), "--batch-size", "32", "--protocol", protocol]
        timed(cmd, c_out.with_suffix(".log"), dict(os.environ), REPO)

    table = rows(data)
    v_emb, c_emb = vlm2vec_embeddings(v_out), cocoa_embeddings(c_out, data / "images")
    keys = sorted(v_emb)
    if set(keys) != set(c_emb):
        raise SystemExit(f"the two systems embedded different items: {len(set(keys) ^ set(c_emb))} differ")
    diffs = {k: float(np.abs(v_emb[k] - c_emb[k]).max()) for k in keys}
    v_pred, v_margin = predictions(v_emb, table)
    c_pred, c_margin = predictions(c_emb, table)

    v_reported = [ast.literal_eval(line) for line in (v_out / f"{SUBSET}_pred.txt").read_text().splitlines()]
    v_own = [candidates.index(tuple(p)) for p, (_, candidates) in zip(v_reported, table, strict=True)]
    c_own = [json.loads(line)["pred"] for line in (c_out / f"{SUBSET}_pred.jsonl").read_text().splitlines()]
    agree = sum(a == b for a, b in zip(v_pred, c_pred, strict=True))
    worst = max(diffs, key=diffs.get)
    print(f"model {model}, protocol {protocol}, fp32, {len(table)} queries, {len(keys)} distinct items")
    print(f"VLM2Vec eval.py P@1 {100 * np.mean([p == 0 for p in v_own]):.2f}  "
          f"(recomputed from its embeddings: {'same predictions' if v_own == v_pred else 'DIFFERENT'})")
    print(f"cocoa eval      P@1 {100 * np.mean([p == 0 for p in c_own]):.2f}  "
          f"(recomputed from its embeddings: {'same predictions' if c_own == c_pred else 'DIFFERENT'})")
    print(f"predicted candidate agrees on {agree} of {len(table)} queries ({100 * agree / len(table):.2f}%)")
    print(f"largest embedding difference {diffs[worst]:.2e} (item {worst!r}); "
          f"median {np.median(list(diffs.values())):.2e}")
    for i, (a, b) in enumerate(zip(v_pred, c_pred, strict=True)):
        if a != b:
            print(f"  query {i}: VLM2Vec picks {a} (top-two margin {v_margin[i]:.2e}), cocoa picks {b} "
                  f"(margin {c_margin[i]:.2e}); largest difference of its items "
                  f"{max(diffs[k] for k in [table[i][0], *table[i][1]]):.2e}")
    (out / "conformance.json").write_text(json.dumps({
        "protocol": protocol, "queries": len(table), "agree": agree, "max_abs_diff": diffs[worst],
        "vlm2vec_p1": 100 * float(np.mean([p == 0 for p in v_own])),
        "cocoa_p1": 100 * float(np.mean([p == 0 for p in c_own]))}, indent=2))


if __name__ == "__main__":
    main()
