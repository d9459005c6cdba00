"""Conformance: VLM2Vec v1's own eval.py against ``cocoa eval --protocol vlm2vec-v1-<resolution>``, query by query.

Both evaluate the same Qwen2-VL folder (``build.py``'s tiny model, or ``--model``) on the same
MMEB-format Fashion-MNIST eval set, whose query instructions and candidate labels carry 0-16 and
0-4 extra words by row, so that every batch mixes token lengths and pads rows. VLM2Vec runs from
the source and venv of ``setup.sh`` (patched by ``vlm2vec-cpu.patch``: sdpa, the dtype from
``VLM2VEC_DTYPE``), with ``--image_resolution <resolution> --pooling last --normalize True
--max_len 4096``, in fp32 (cocoa's CPU dtype). cocoa runs with the matching protocol.

A query agrees when both systems predict the same candidate and every one of its items (the query
and its candidates) has embeddings within ``--tolerance`` of each other (largest absolute
difference). The script prints how many agree, the largest difference, each disagreeing query,
and checks each system's reported predictions against the ones recomputed from its embeddings.
It exits 1 when any query disagrees or any check fails, 0 otherwise.

Each side's output is reused only when its record matches: the cocoa checkout (``git rev-parse
HEAD`` and a hash of uncommitted changes), the cocoa encoder fingerprint of the model under the
protocol, the data (a hash of the eval table and images), the VLM2Vec source (commit and patch)
and the settings; otherwise it is recomputed.

``--perturb N`` inverts query N's image in a copy that only cocoa reads: the run must fail, naming
query N. ``--smoke`` is a seconds-long run of the same code on the tiny preset and 24 queries; where
VLM2Vec is not set up under ``--work`` its reference is ``cocoa eval --batch-size 1`` written in
eval.py's output format (a check of this script and of cocoa's padding, not a conformance result).

    benchmarks/vs_vlm2vec/setup.sh
    python benchmarks/vs_vlm2vec/conformance.py --resolution low [--perturb 17]
    python benchmarks/vs_vlm2vec/conformance.py --smoke --work /tmp/smoke
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from build import SUBSET, build, hub_layout
from PIL import Image, ImageOps
from run import REPO, VLM2Vec, timed

Key = tuple[str, str]
Rows = list[tuple[Key, list[Key]]]
KEY_FILE = "conformance-key.json"
#: cocoa's cache keys end an image path with ``#`` and the start of the file's SHA-256.
HASHED_PATH = re.compile(r"^(?P<path>.+)#(?P<sha>[0-9a-f]{8,64})$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git(*args: str, cwd: Path = REPO) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout


def checkout_state(cwd: Path = REPO) -> dict[str, str]:
    """The commit of the git checkout at ``cwd`` and a hash of its uncommitted changes (tracked diffs,
    untracked files' names and bytes); ``dirty`` is ``""`` for a clean tree."""
    diff = git("diff", "HEAD", "--binary", cwd=cwd)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", cwd=cwd).split(b"\0")
    h = hashlib.sha256(diff)
    for name in sorted(n for n in untracked if n):
        path = cwd / os.fsdecode(name)
        h.update(name + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    dirty = h.hexdigest() if diff or any(untracked) else ""
    return {"commit": git("rev-parse", "HEAD", cwd=cwd).decode().strip(), "dirty": dirty}


def data_hash(data: Path, images: Path) -> str:
    """A hash of the eval table and of every image under ``images`` (names and bytes)."""
    h = hashlib.sha256()
    for root, paths in ((data, sorted((data / "eval").rglob("*.parquet"))),
                        (images, sorted(p for p in images.rglob("*") if p.is_file()))):
        for path in paths:
            h.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes() + b"\0")
    return h.hexdigest()


def cocoa_fingerprint(model: Path, protocol: str) -> str:
    """cocoa's encoder fingerprint of ``model`` under ``protocol`` (weights, config, tokenizer, image
    processor, embedding spec and protocol)."""
    from cocoa.core.protocol import get_protocol
    from cocoa.inference.batch_encoder import BatchEncoder

    return BatchEncoder.from_pretrained(model, device="cpu", protocol=get_protocol(protocol)).fingerprint()


def reuse_or_run(out: Path, key: dict, run: Callable[[], None]) -> str:
    """Run ``run`` into a fresh ``out`` unless ``out`` holds the record of a finished run with ``key``;
    the record is written after the run succeeds. Returns what happened, for the log."""
    record = out / KEY_FILE
    old = json.loads(record.read_text()) if record.is_file() else None
    if old == key:
        return "reused (same checkout, fingerprint, data and settings)"
    why = ("no earlier run" if old is None
           else "changed: " + ", ".join(sorted(k for k in key.keys() | old.keys() if key.get(k) != old.get(k))))
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    run()
    record.write_text(json.dumps(key, indent=2, sort_keys=True))
    return f"ran in {time.perf_counter() - start:.1f} s ({why})"


def vlm2vec_embeddings(out: Path) -> dict[Key, np.ndarray]:
    """``(text, image path)`` -> embedding, from eval.py's ``<subset>_qry`` / ``<subset>_tgt`` pickles."""
    found: dict[Key, np.ndarray] = {}
    for side in ("qry", "tgt"):
        with (out / f"{SUBSET}_{side}").open("rb") as f:
            tensor, pairs = pickle.load(f)
        if len(tensor) != len(pairs):
            raise SystemExit(f"{out / f'{SUBSET}_{side}'}: {len(tensor)} embeddings for {len(pairs)} items")
        found.update({(p["text"], p["img_path"]): np.asarray(t, dtype=np.float64) for t, p in zip(tensor, pairs,
                                                                                                  strict=True)})
    return found


def relative_image(key: str, images: Path) -> str:
    """The image path of a cocoa cache key relative to ``images`` (``""`` for none), after checking that
    its ``#`` hash is that of the file's bytes."""
    if not key:
        return ""
    match = HASHED_PATH.match(key)
    if match is None:
        raise SystemExit(f"cocoa cache key {key!r} does not end with '#<sha256>'")
    prefix = str(images.resolve()) + os.sep
    if not match["path"].startswith(prefix):
        raise SystemExit(f"cocoa cache key {key!r} is not under {prefix}")
    if not sha256(Path(match["path"]).read_bytes()).startswith(match["sha"]):
        raise SystemExit(f"cocoa cache key {key!r}: the file's SHA-256 does not start with {match['sha']}")
    return match["path"].removeprefix(prefix)


def cocoa_embeddings(out: Path, images: Path) -> dict[Key, np.ndarray]:
    """``(text, image path relative to ``images``)`` -> embedding, from cocoa's embedding cache under ``out``."""
    folders = [p for p in (out / "cache").iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise SystemExit(f"{out / 'cache'}: expected one fingerprint folder, found {len(folders)}")
    found: dict[Key, np.ndarray] = {}
    for keys_file in sorted(folders[0].glob("*.keys.json")):
        array = np.load(keys_file.with_name(keys_file.name.removesuffix(".keys.json") + ".npy"))
        for (text, image), row in zip(json.loads(keys_file.read_text()), array, strict=True):
            found[(text, relative_image(image, images))] = np.asarray(row, dtype=np.float64)
    return found


def rows(data: Path) -> Rows:
    """Each eval row's query key and candidate keys (gold first)."""
    table = pq.read_table(next((data / "eval" / SUBSET).glob("*.parquet"))).to_pylist()
    return [((r["qry_text"], r["qry_img_path"]), list(zip(r["tgt_text"], r["tgt_img_path"], strict=True)))
            for r in table]


def predictions(embeddings: dict[Key, np.ndarray], data: Rows) -> tuple[list[int], list[float]]:
    """Argmax candidate per row (ties to the first, as both systems break them) and its top-two margin."""
    preds, margins = [], []
    for query, candidates in data:
        q = embeddings[query] / np.linalg.norm(embeddings[query])
        scores = np.array([q @ (embeddings[c] / np.linalg.norm(embeddings[c])) for c in candidates])
        preds.append(int(np.argmax(scores)))
        top = np.sort(scores)[::-1]
        margins.append(float(top[0] - top[1]) if len(top) > 1 else float("inf"))
    return preds, margins


def run_cocoa(model: Path, data: Path, images: Path, out: Path, protocol: str, batch_size: int) -> None:
    cmd = [sys.executable, "-m", "cocoa.cli", "eval", "--model", str(model), "--data", str(data / "eval"),
           "--images", str(images), "--out", str(out), "--batch-size", str(batch_size), "--protocol", protocol]
    timed(cmd, out.with_suffix(".log"), dict(os.environ), REPO)


def write_stand_in(model: Path, data: Path, out: Path, protocol: str, table: Rows) -> None:
    """The smoke reference where VLM2Vec is not set up: ``cocoa eval --batch-size 1`` (no padding),
    written as eval.py writes its outputs (pickles of embeddings and items, predictions, score)."""
    raw = out.with_name(out.name + "-cocoa-batch1")
    if raw.exists():
        shutil.rmtree(raw)
    run_cocoa(model, data, data / "images", raw, protocol, 1)
    emb = cocoa_embeddings(raw, data / "images")
    out.mkdir(parents=True)
    for side, keys in (("qry", sorted({q for q, _ in table})), ("tgt", sorted({c for _, cs in table for c in cs}))):
        tensor = np.stack([emb[k] for k in keys]).astype(np.float32)
        with (out / f"{SUBSET}_{side}").open("wb") as f:
            pickle.dump((tensor, [{"text": t, "img_path": i} for t, i in keys]), f)
    own = [json.loads(line)["pred"] for line in (raw / f"{SUBSET}_pred.jsonl").read_text().splitlines()]
    (out / f"{SUBSET}_pred.txt").write_text("".join(f"{cs[p]}\n" for p, (_, cs) in zip(own, table, strict=True)))
    hits = sum(p == 0 for p in own)
    (out / f"{SUBSET}_score.json").write_text(json.dumps({"acc": hits / len(table), "num_correct": hits,
                                                          "num_pred": len(table)}))


def perturbed_images(images: Path, out: Path, table: Rows, query: int) -> Path:
    """A copy of ``images`` under ``out`` with query ``query``'s image inverted."""
    if not 0 <= query < len(table):
        raise SystemExit(f"--perturb {query}: there are {len(table)} queries")
    rel = table[query][0][1]
    if not rel or sum(q[1] == rel for q, _ in table) != 1:
        raise SystemExit(f"--perturb {query}: its image {rel!r} is not the image of that query alone")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(images, out)
    with Image.open(images / rel) as image:
        ImageOps.invert(image.convert("RGB")).save(out / rel)
    return out


def token_lengths(model: Path, texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [len(tokenizer(t)["input_ids"]) for t in texts]


def compare(table: Rows, v_out: Path, c_out: Path, images: Path, tolerance: float, reference: str) -> int:
    """Print the comparison; the number of failures (disagreeing queries and failed checks)."""
    v_emb, c_emb = vlm2vec_embeddings(v_out), cocoa_embeddings(c_out, images)
    needed = {q for q, _ in table} | {c for _, cs in table for c in cs}
    if set(v_emb) != needed or set(c_emb) != needed:
        print(f"FAILED: the items differ: {len(needed ^ set(v_emb))} between the eval set and {reference}, "
              f"{len(needed ^ set(c_emb))} between the eval set and cocoa; e.g. "
              f"{sorted(needed ^ set(c_emb))[:2] or sorted(needed ^ set(v_emb))[:2]}")
        return 1
    diffs = {k: float(np.abs(v_emb[k] - c_emb[k]).max()) for k in needed}
    v_pred, v_margin = predictions(v_emb, table)
    c_pred, c_margin = predictions(c_emb, table)
    v_reported = [ast.literal_eval(line) for line in (v_out / f"{SUBSET}_pred.txt").read_text().splitlines()]
    v_own = [candidates.index(tuple(p)) for p, (_, candidates) in zip(v_reported, table, strict=True)]
    c_own = [json.loads(line)["pred"] for line in (c_out / f"{SUBSET}_pred.jsonl").read_text().splitlines()]
    failures = 0
    for name, own, pred in ((f"{reference:<15}", v_own, v_pred), (f"{'cocoa eval':<15}", c_own, c_pred)):
        same = own == pred
        failures += not same
        print(f"{name} P@1 {100 * np.mean([p == 0 for p in own]):.2f}  (recomputed from its embeddings: "
              f"{'same predictions' if same else 'DIFFERENT predictions'})")
    bad = []
    for i, (query, candidates) in enumerate(table):
        worst = max([query, *candidates], key=diffs.__getitem__)
        if v_pred[i] != c_pred[i] or diffs[worst] > tolerance:
            bad.append(i)
            print(f"  query {i} ({query[1]}) disagrees: {reference} picks {v_pred[i]} (top-two margin "
                  f"{v_margin[i]:.2e}), cocoa picks {c_pred[i]} (margin {c_margin[i]:.2e}); largest difference of "
                  f"its items {diffs[worst]:.2e} ({'the query' if worst == query else f'candidate {worst[0]!r}'})")
    agree_pred = sum(a == b for a, b in zip(v_pred, c_pred, strict=True))
    worst = max(diffs, key=diffs.__getitem__)
    print(f"predicted candidate agrees on {agree_pred} of {len(table)} queries")
    print(f"queries agreeing (same candidate, every item within {tolerance:.0e}): {len(table) - len(bad)} of "
          f"{len(table)}")
    print(f"largest embedding difference {diffs[worst]:.2e} (item {worst!r}); median {np.median(list(diffs.values())):.2e}")
    (c_out.parent / "conformance.json").write_text(json.dumps({
        "queries": len(table), "agree": len(table) - len(bad), "agree_pred": agree_pred, "disagree": bad,
        "max_abs_diff": diffs[worst], "reference": reference,
        "reference_p1": 100 * float(np.mean([p == 0 for p in v_own])),
        "cocoa_p1": 100 * float(np.mean([p == 0 for p in c_own]))}, indent=2))
    if bad:
        print(f"FAILED: {len(bad)} of {len(table)} queries disagree: " + ", ".join(map(str, bad[:20]))
              + (" ..." if len(bad) > 20 else ""))
    return failures + len(bad)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "vs_vlm2vec",
                        help="setup.sh's folder (VLM2Vec/, venv/); the data, model and outputs go under it too")
    parser.add_argument("--resolution", choices=("low", "mid", "high"), default="low")
    parser.add_argument("--preset", help="cocoa tiny preset of the built model (default: small; tiny with --smoke)")
    parser.add_argument("--eval-rows", type=int, help="queries (default: 1000; 24 with --smoke)")
    parser.add_argument("--seed", type=int, default=0, help="which Fashion-MNIST test images are picked")
    parser.add_argument("--batch-size", type=int, help="both systems' batch size (default: 32; 8 with --smoke)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest absolute embedding difference of an item that still agrees")
    parser.add_argument("--model", type=Path, help="a Qwen2-VL folder to evaluate (default: build.py's tiny one)")
    parser.add_argument("--perturb", type=int, metavar="N",
                        help="invert query N's image for cocoa only (the run must then fail, naming query N)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds long: the tiny preset, 24 queries; without VLM2Vec under --work, "
                             "cocoa eval --batch-size 1 stands in for it")
    args = parser.parse_args()
    start = time.perf_counter()
    preset = args.preset or ("tiny" if args.smoke else "small")
    eval_rows = args.eval_rows or (24 if args.smoke else 1000)
    batch_size = args.batch_size or (8 if args.smoke else 32)
    train_rows = 8 if args.smoke else 64
    work = args.work.resolve()
    built, data = build(work, preset, 0, train_rows, eval_rows, args.seed, vary=True)
    model = built
    if args.model:  # a fresh copy in the layout both transformers versions read
        model = work / "conformance" / f"model-{sha256(str(args.model.resolve()).encode())[:12]}"
        if model.exists():
            shutil.rmtree(model)
        shutil.copytree(args.model, model)
        hub_layout(model)
    protocol = f"vlm2vec-v1-{args.resolution}"
    out = work / "conformance" / f"{model.name}-{args.resolution}-{eval_rows}-seed{args.seed}-b{batch_size}"
    table = rows(data)

    fingerprint = cocoa_fingerprint(model, protocol)
    key = {"cocoa": checkout_state(), "fingerprint": fingerprint, "protocol": protocol,
           "data": data_hash(data, data / "images"), "model": str(model), "resolution": args.resolution,
           "preset": preset, "eval_rows": eval_rows, "seed": args.seed, "batch_size": batch_size}
    have_vlm2vec = (work / "VLM2Vec" / "eval.py").is_file() and (work / "venv" / "bin" / "python").is_file()
    if have_vlm2vec:
        reference, v_out = "VLM2Vec eval.py", out / "vlm2vec"
        vlm2vec = VLM2Vec(work, "fp32", 0, resolution=args.resolution, max_len=4096)
        v_key = {**key, "vlm2vec": checkout_state(work / "VLM2Vec")}

        def run_reference() -> None:
            shutil.rmtree(vlm2vec.cache_env(v_out)["HF_DATASETS_CACHE"], ignore_errors=True)  # datasets' own reuse
            vlm2vec.evaluate(model, data, v_out, 0)
    elif args.smoke:
        reference, v_out = "stand-in", out / "stand-in"
        print(f"VLM2Vec is not set up under {work}: its stand-in is cocoa eval --batch-size 1 in eval.py's output "
              "format (a smoke check of this script and of padding, not a conformance result)")
        v_key = {**key, "reference": "cocoa eval --batch-size 1"}

        def run_reference() -> None:
            write_stand_in(model, data, v_out, protocol, table)
    else:
        raise SystemExit(f"VLM2Vec is not set up under {work}: run benchmarks/vs_vlm2vec/setup.sh {work} "
                         "(or use --smoke)")

    images = data / "images"
    c_out = out / ("cocoa" if args.perturb is None else f"cocoa-perturb{args.perturb}")
    if args.perturb is not None:
        images = perturbed_images(images, out / f"images-perturb{args.perturb}", table, args.perturb)
        print(f"perturbed: query {args.perturb}'s image {table[args.perturb][0][1]} inverted for cocoa only")
    c_key = {**key, "perturb": args.perturb, "images": data_hash(data, images)}
    # one after the other: side by side, their torch threads would share the cores
    v_how = reuse_or_run(v_out, v_key, run_reference)
    c_how = reuse_or_run(c_out, c_key, lambda: run_cocoa(model, data, images, c_out, protocol, batch_size))
    summary = json.loads((c_out / "summary.json").read_text())
    if summary.get("fingerprint") != fingerprint:
        raise SystemExit(f"cocoa eval ran with encoder {summary.get('fingerprint')}, not {fingerprint}")

    q_len = token_lengths(model, sorted({q[0] for q, _ in table}))
    t_len = token_lengths(model, sorted({c[0] for _, cs in table for c in cs}))
    print(f"model {model}, protocol {protocol}, fp32, batch {batch_size}, {len(table)} queries")
    print(f"  {len(q_len)} distinct query texts of {min(q_len)}-{max(q_len)} tokens ({len(set(q_len))} lengths) besides "
          f"image tokens; {len(t_len)} distinct candidates of {min(t_len)}-{max(t_len)} tokens ({len(set(t_len))} lengths)")
    print(f"  {reference}: {v_how}; cocoa eval: {c_how}")
    failures = compare(table, v_out, c_out, images, args.tolerance, reference)
    print(f"wall {time.perf_counter() - start:.1f} s; " + ("CONFORMANCE FAILED" if failures else "conformance OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
