"""The GPU path, checked and timed in one run (not a test; CI has no GPU).

Sections (each one's result is written to ``--out`` as soon as it is done, and a failing
section is reported without stopping the others):

1. ``env``: versions, the device, a measured bf16 matmul peak (the MFU denominator).
2. ``kernels``: tiny backbones of both families on the GPU. SDPA against eager attention
   in fp32 and bf16 for every attention mode; the masks hold inside the GPU kernels
   (changing the target block leaves the query and EOS states unchanged under ``causal``
   and under ``eos_bridge`` with the EOS seeing only the query, and changes them under
   ``bidirectional``); GPU bf16 embeddings against
   CPU fp32 embeddings of the same items in padded batches (cosine).
3. ``throughput``: randomly initialised models at the published shapes of Qwen2-VL-2B and
   Qwen2.5-VL-7B, run as ``cocoa train`` runs them (fp32 master weights, bf16 autocast):
   forward+backward per attention mode and backend, full and LoRA, with and without
   activation checkpointing; tokens/s, MFU (6 x parameters x tokens, vision tower
   included) and peak memory; then bf16 inference through :class:`cocoa.inference.batch_encoder.BatchEncoder`
   in items/s, preprocessing included.
4. ``e2e``: ``cocoa run mini`` on the GPU (MiniMMEB built from ``$COCOA_FASHION_MNIST_DIR``,
   ``$COCOA_EMOJI_FONT``, ``$COCOA_EMOJI_TEST`` where the Debian packages are absent),
   with its stage times and overall score.
5. ``adapters``: plain LoRA against DoRA (the paper's recipes) at the published shapes,
   one training step as ``cocoa train`` runs it, with and without activation checkpointing.
6. ``workers``: bf16 encoding at the first shape with ``BatchEncoder(num_workers=N)`` for several
   N, images read from PNG files as the evaluator reads them.
7. ``packing``: stage 3 on MMEB-shaped batches (``speed/packed_training.py``'s mix, 448x448
   images, 32 pairs, GradCache chunks of 8) at the first shape, padded against packed rows
   (``train.pack_tokens``), bf16 autocast over fp32 weights: real / computed tokens, ms per
   step, real tokens/s, MFU over the useful work (6 x parameters x real tokens and patches), peak memory.
8. ``fsdp``: ``cocoa train`` with ``train.parallel=fsdp`` in one process on the GPU (NCCL,
   FSDP2 mixed precision): stage 0 then stage 3 on a MiniMMEB folder (``--data``), the
   same stage 0 unsharded for comparison of the losses, a ``--resume`` rerun that loads the
   sharded checkpoint, and ``cocoa eval`` of the model FSDP saved.

    python benchmarks/gpu/gpu_check.py --out gpu-check
    python benchmarks/gpu/gpu_check.py --smoke [--out DIR]

``--smoke`` runs sections 1, 2, 3, 5, 6 and 7 in seconds, on the GPU or on the CPU: the published
shapes are replaced by :data:`SMOKE_SHAPES` (two layers, 56x56 images), with 2 rows, one repeat,
16 images and 16 texts encoded, 0 and 1 workers; ``e2e`` (minutes) and ``fsdp`` (NCCL) are left
out. It writes into a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speed"))
import common
import packed_training

from cocoa.core.batch import Batch
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.attention import ATTENTION_MODES
from cocoa.model.backbone import MODEL_CLASSES, Backbone, TokenIds, build_image_processor
from cocoa.model.forward import hidden_states
from cocoa.stages.contrastive import ContrastiveBuilder
from cocoa.train.config import LoraConfig
from cocoa.train.lora import add_lora

#: Published text/vision shapes (config.json of the released checkpoints); weights random.
SHAPES: dict[str, tuple[str, dict, dict]] = {
    "qwen2-vl-2b": ("qwen2_vl",
                    {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
                    {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4}),
    "qwen2.5-vl-7b": ("qwen2_5_vl",
                      {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                       "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                       "tie_word_embeddings": False},
                      {"depth": 32, "hidden_size": 1280, "out_hidden_size": 3584, "intermediate_size": 3420,
                       "num_heads": 16, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}),
}
IMAGE_SIDE = 448  # 1,024 patches, 256 merged image tokens per image
#: The smoke run's shape (Qwen2-VL's head size, two layers, a one-block vision tower) and its image side.
SMOKE_SHAPES: dict[str, tuple[str, dict, dict]] = {
    "smoke": ("qwen2_vl",
              {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 1, "vocab_size": 512, "tie_word_embeddings": True},
              {"depth": 1, "embed_dim": 64, "hidden_size": 256, "num_heads": 2, "mlp_ratio": 2}),
}
SMOKE_SIDE = 56


def bridged_batch(backbone: Backbone, rows: int, side: int, seed: int = 0) -> Batch:
    """``[image + query text] <EOS> [target text]`` rows of varied length (so padded)."""
    return common.bridged_batch(backbone, rows, side, lambda row: 1 + row % 3, seed)


# ---------------------------------------------------------------- 1. env
def section_env(device: torch.device) -> dict:
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        seconds = common.timed(lambda: a @ a, repeats=10, warmup=3)
        out.update(name=props.name, memory_gib=props.total_memory / 2**30, sms=props.multi_processor_count,
                   bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda,
                   bf16_matmul_tflops=2 * 8192**3 / seconds / 1e12)
    return out


# ---------------------------------------------------------------- 2. kernels
def section_kernels(device: torch.device) -> dict:
    out: dict = {}
    for family in MODEL_CLASSES:
        backbones = {attn: Backbone.tiny("tiny", family, attn_implementation=attn) for attn in ("sdpa", "eager")}
        batch = bridged_batch(backbones["sdpa"], 6, 84)
        changed = batch_with_new_target(batch)
        for dtype in (torch.float32, torch.bfloat16):
            for mode in ATTENTION_MODES:
                states = {attn: run_states(b, batch, mode, device, dtype) for attn, b in backbones.items()}
                real = (batch.roles != Role.PAD).to(device)
                diff = (states["sdpa"] - states["eager"]).abs()[real].max().item()
                before = (batch.roles == Role.QUERY) | (batch.roles == Role.EMBEDDING)
                # the EOS must not see the target for the query block to be independent of it
                moved = (run_states(backbones["sdpa"], changed, mode, device, dtype, eos_sees_target=False)
                         - run_states(backbones["sdpa"], batch, mode, device, dtype, eos_sees_target=False)).abs()
                out[f"{family}/{str(dtype)[6:]}/{mode}"] = {
                    "sdpa_vs_eager_max_abs": diff, "max_abs_state": states["eager"][real].abs().max().item(),
                    "finite": bool(torch.isfinite(states["sdpa"][real]).all()),
                    "query_and_eos_change_when_target_changes": moved[before.to(device)].max().item()}
        out[f"{family}/gpu_bf16_vs_cpu_fp32_min_cosine"] = gpu_vs_cpu_cosine(backbones["sdpa"], device)
    return out


def batch_with_new_target(batch: Batch) -> Batch:
    ids = batch.input_ids.clone()
    target = batch.roles == Role.TARGET
    ids[target] = (ids[target] + 7) % 200 + 20
    return Batch(**{**batch.__dict__, "input_ids": ids})


def run_states(backbone: Backbone, batch: Batch, mode: str, device: torch.device, dtype: torch.dtype, *,
               eos_sees_target: bool = True) -> torch.Tensor:
    model = backbone.model.to(device=device, dtype=dtype).eval()
    moved = batch.to(device)
    if moved.pixel_values is not None:
        moved.pixel_values = moved.pixel_values.to(dtype)
    with torch.no_grad():
        return hidden_states(model, moved, mode, eos_sees_target=eos_sees_target).float()  # type: ignore[arg-type]


def gpu_vs_cpu_cosine(backbone: Backbone, device: torch.device) -> float:
    """Smallest cosine between CPU fp32 and GPU bf16 embeddings of mixed items, batches of 5."""
    rng = np.random.default_rng(1)
    items = [Item("<|image_1|> a photo", common.random_image(rng, 28 * int(rng.integers(1, 7)))) for _ in range(12)]
    items += [Item("a query of some length " * int(rng.integers(1, 6))) for _ in range(12)]
    backbone.model.to("cpu", torch.float32)
    cpu = BatchEncoder(backbone, EmbeddingSpec(), device="cpu").encode_items(items, batch_size=5)
    backbone.model.to(device, torch.bfloat16)
    gpu = BatchEncoder(backbone, EmbeddingSpec(), device=device).encode_items(items, batch_size=5)
    return float((cpu * gpu).sum(axis=1).min())


# ---------------------------------------------------------------- 7. packing
def section_packing(device: torch.device, shape: str, pack_tokens: int, repeats: int, peak: float,
                    out_dir: Path) -> dict:
    """Padded against packed stage-3 steps on one MMEB-shaped global batch at a published shape."""
    backbone = shaped_backbone(shape, device)
    model = backbone.model.train()
    images = out_dir / "packing-images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        common.random_image(rng, IMAGE_SIDE).save(images / f"{i}.png")
    pre = Preprocessor(backbone, 1024, PROTOCOLS["cocoa"])
    examples = packed_training.mmeb_pairs(32, 0, images)
    pairs = ContrastiveBuilder(pre, 0, 8)(examples, np.random.default_rng(0))
    chunks = [c.to(device) for c in pairs.chunks]
    flops = sum(training_flops(model, chunk, 6) for chunk in chunks)
    out: dict = {}
    for name, pack in (("padded", None), ("packed", pack_tokens)):
        real, computed = packed_training.token_counts(chunks, pack)

        def step(pack: int | None = pack) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                packed_training.train_step("contrastive", backbone, chunks, pack, pairs.rows)
            model.zero_grad(set_to_none=True)

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        seconds = run_guarded(lambda step=step: {"s": common.timed(step, repeats)}).get("s")
        out[name] = {"real_over_computed": real / computed, "ms": seconds * 1e3 if seconds else None,
                     "real_tokens_per_s": real / seconds if seconds else None,
                     "mfu": flops / seconds / peak if seconds and peak else None,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
        print(shape, name, out[name], flush=True)
    if out["padded"]["ms"] and out["packed"]["ms"]:
        out["speedup"] = out["padded"]["ms"] / out["packed"]["ms"]
    return out


# ---------------------------------------------------------------- 3. throughput
def shaped_backbone(shape: str, device: torch.device, attn: str = "sdpa") -> Backbone:
    """A random model at a published shape (or a smoke one), with the tiny tokenizer's special ids, in fp32."""
    family, text, vision = SHAPES[shape] if shape in SHAPES else SMOKE_SHAPES[shape]
    side = IMAGE_SIDE if shape in SHAPES else SMOKE_SIDE
    tiny = Backbone.tiny("tiny", family)  # type: ignore[arg-type]
    ids = TokenIds.from_tokenizer(tiny.tokenizer)
    text = {**text, "max_position_embeddings": 32768, "use_cache": False, "bos_token_id": ids.eos,
            "eos_token_id": ids.eos, "pad_token_id": ids.pad,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}}
    special = {"image_token_id": ids.image, "video_token_id": ids.video,
               "vision_start_token_id": ids.vision_start, "vision_end_token_id": ids.vision_end}
    config_cls = Qwen2VLConfig if family == "qwen2_vl" else Qwen2_5_VLConfig
    config = config_cls(text_config=text, vision_config=vision, **special)
    config._attn_implementation = attn
    with torch.device(device):
        model = MODEL_CLASSES[family](config)
    return Backbone(model=model.float(), tokenizer=tiny.tokenizer,
                    image_processor=build_image_processor(side**2, side**2), ids=ids)


def training_flops(model: torch.nn.Module, batch: Batch, per_param: int) -> float:
    """``per_param`` x parameters x positions: decoder layers over tokens, the vision tower over patches."""
    text_params = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and "visual" not in n)
    vision_params = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    tokens = int((batch.roles != Role.PAD).sum())
    patches = int(batch.image_grid_thw.prod(-1).sum()) if batch.image_grid_thw is not None else 0
    return per_param * (text_params * tokens + vision_params * patches)


def train_step(model: torch.nn.Module, batch: Batch, mode: str) -> None:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=batch.input_ids.is_cuda):
        loss = hidden_states(model, batch, mode).float().pow(2).mean()  # type: ignore[arg-type]
    loss.backward()


def measure_training(model: torch.nn.Module, batch: Batch, mode: str, flops_per_step: float, peak: float,
                     repeats: int) -> dict:
    model.zero_grad(set_to_none=True)  # gradients left by the previous setting would count in its peak
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds = common.timed(lambda: train_step(model, batch, mode), repeats)
    tokens = int((batch.roles != Role.PAD).sum())
    return {"ms": seconds * 1e3, "tokens_per_s": tokens / seconds, "rows_per_s": len(batch) / seconds,
            "mfu": flops_per_step / seconds / peak if peak else None,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def section_throughput(device: torch.device, shapes: list[str], rows: int, repeats: int, peak: float,
                       side: int, items: int = 256) -> dict:
    out: dict = {}
    for index, shape in enumerate(shapes):
        out.update(shape_throughput(shape, device, rows, repeats, peak, side, eager=index == 0, items=items))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def shape_throughput(shape: str, device: torch.device, rows: int, repeats: int, peak: float, side: int,
                     eager: bool, items: int = 256) -> dict:
    """Training steps (full, checkpointed, LoRA) and bf16 encoding (``items`` images and as many texts) for one
    published shape."""
    began = time.perf_counter()
    backbone = shaped_backbone(shape, device)
    model = backbone.model.train()
    out: dict = {f"{shape}/init_s": time.perf_counter() - began,
                 f"{shape}/params_b": sum(p.numel() for p in model.parameters()) / 1e9}
    batch = bridged_batch(backbone, rows, side).to(device)
    tokens = int((batch.roles != Role.PAD).sum())
    patches = int(batch.image_grid_thw.prod(-1).sum()) if batch.image_grid_thw is not None else 0
    flops = training_flops(model, batch, 6)
    out[f"{shape}/batch"] = {"rows": len(batch), "tokens": tokens, "padded": list(batch.input_ids.shape),
                             "patches": patches}

    def record(name: str, net: torch.nn.Module, mode: str, step_flops: float) -> None:
        out[f"{shape}/{name}"] = run_guarded(measure_training, net, batch, mode, step_flops, peak, repeats)
        print(shape, name, out[f"{shape}/{name}"], flush=True)

    for attn, mode in [("sdpa", m) for m in ATTENTION_MODES] + [("eager", "bidirectional")] * eager:
        model.set_attn_implementation(attn)
        record(f"full/{attn}/{mode}", model, mode, flops)
    model.set_attn_implementation("sdpa")
    model.activation_checkpointing_enable()
    model.enable_input_require_grads()
    record("full/sdpa/bidirectional/ckpt", model, "bidirectional", flops)
    lora_model = add_lora(model, LoraConfig())
    for mode in ("bidirectional", "eos_bridge"):  # no weight gradients of the base: 4, not 6, FLOPs per param
        record(f"lora/sdpa/{mode}/ckpt", lora_model, mode, flops * 4 / 6)
    base = lora_model.merge_and_unload().to(torch.bfloat16).eval()
    encoder = BatchEncoder(Backbone(model=base, tokenizer=backbone.tokenizer, image_processor=backbone.image_processor,
                               ids=backbone.ids), EmbeddingSpec(), device=device)
    rng = np.random.default_rng(2)
    encoded = [Item("<|image_1|> Represent the given image.", common.random_image(rng, side)) for _ in range(items)]
    encoded += [Item(f"a short caption number {i} about a dress") for i in range(items)]
    out[f"{shape}/encode_bf16_items_per_s"] = encoding_rate(encoder, encoded)
    print(shape, "encode items/s", out[f"{shape}/encode_bf16_items_per_s"], flush=True)
    return out


def encoding_rate(encoder: BatchEncoder, items: list[Item]) -> float:
    """Items per second of ``encode_items`` in batches of 64, after one warm-up batch."""
    encoder.encode_items(items[:64], batch_size=64)
    common.sync()
    began = time.perf_counter()
    encoder.encode_items(items, batch_size=64)
    common.sync()
    return len(items) / (time.perf_counter() - began)


def run_guarded(fn: Callable[..., dict], *args: object) -> dict:
    try:
        return fn(*args)
    except Exception as exc:  # an out-of-memory or kernel error in one setting must not end the run
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


# ---------------------------------------------------------------- 4. e2e
def section_e2e(out_dir: Path, timeout: float, overrides: list[str]) -> dict:
    run_dir = Path("/tmp/cocoa-gpu-run")
    began = time.perf_counter()
    command = [sys.executable, "-m", "cocoa", "run", "mini", "--out", str(run_dir)]
    command += [arg for override in overrides for arg in ("--set", override)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    (out_dir / "e2e_log.txt").write_text(proc.stdout[-20000:] + "\n--- stderr ---\n" + proc.stderr[-20000:])
    result: dict = {"returncode": proc.returncode, "wall_s": time.perf_counter() - began, "command": command}
    summary = run_dir / "eval" / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        result["overall"] = data["overall"]["score"]
        result["meta_tasks"] = {k: v["score"] for k, v in data["meta_tasks"].items()}
    report = run_dir / "report.md"
    if report.is_file():
        (out_dir / "e2e_report.md").write_text(report.read_text())
    return result


# ---------------------------------------------------------------- 5. adapters
def section_adapters(device: torch.device, shapes: list[str], rows: int, repeats: int, peak: float,
                     side: int) -> dict:
    """Plain LoRA against DoRA (r8, every linear layer, as the paper recipes) per shape."""
    out: dict = {}
    for shape in shapes:
        backbone = shaped_backbone(shape, device)
        model = backbone.model.train()
        batch = bridged_batch(backbone, rows, side).to(device)
        flops = training_flops(model, batch, 4)  # no base-weight gradients
        for checkpointing in (True, False):
            if checkpointing:
                model.activation_checkpointing_enable()
                model.enable_input_require_grads()
            else:
                model.activation_checkpointing_disable()
            for dora in (False, True):
                name = f"{shape}/{'dora' if dora else 'lora'}/bidirectional/{'ckpt' if checkpointing else 'no-ckpt'}"
                adapted = add_lora(model, LoraConfig(dora=dora))
                out[name] = run_guarded(measure_training, adapted, batch, "bidirectional", flops, peak, repeats)
                print(name, out[name], flush=True)
                model = adapted.unload()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        del model, backbone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------- 6. workers
def section_workers(device: torch.device, shape: str, side: int, workers: list[int], images: int = 256) -> dict:
    """Encoding items/s with preprocessing in 0..N worker processes (``images`` from PNG files, as many texts)."""
    backbone = shaped_backbone(shape, device)
    model = backbone.model.to(torch.bfloat16).eval()
    with tempfile.TemporaryDirectory(prefix="cocoa-gpu-images-") as folder:
        rng = np.random.default_rng(3)
        items = []
        for index in range(images):
            path = Path(folder) / f"{index}.png"
            common.random_image(rng, side).save(path)
            items.append(Item("<|image_1|> Represent the given image.", str(path)))
        items += [Item(f"a short caption number {i} about a dress") for i in range(images)]
        out: dict = {"items": len(items), "cpu_count": os.cpu_count()}
        for count in workers:
            encoder = BatchEncoder(Backbone(model=model, tokenizer=backbone.tokenizer,
                                            image_processor=backbone.image_processor, ids=backbone.ids),
                                   EmbeddingSpec(), device=device, num_workers=count)
            out[f"workers_{count}_items_per_s"] = encoding_rate(encoder, items)
            print(shape, "workers", count, out[f"workers_{count}_items_per_s"], flush=True)
    return out


# ---------------------------------------------------------------- 7. fsdp
def cocoa_command(out_dir: Path, name: str, args: list[str], timeout: float = 240.0) -> dict:
    """Run ``python -m cocoa ARGS``; keep its log in ``out_dir`` and return its exit status and time."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cocoa", *args], capture_output=True, text=True, timeout=timeout)
    (out_dir / f"fsdp_{name}.txt").write_text(proc.stdout[-8000:] + "\n--- stderr ---\n" + proc.stderr[-8000:])
    return {"returncode": proc.returncode, "wall_s": time.perf_counter() - began}


def logged_losses(folder: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def section_fsdp(out_dir: Path, data: Path | None) -> dict:
    """Stage 0 and stage 3 sharded by FSDP2 on one GPU, the unsharded stage 0, resume and eval."""
    if data is None:
        raise ValueError("the fsdp section needs --data (a MiniMMEB folder)")
    root = Path("/tmp/cocoa-gpu-fsdp")
    common = [f"data.root={data}", "train.epochs=null", "train.log_every=1", "train.save_every=10",
              "train.warmup_steps=2", "train.batch_size=16"]
    out: dict = {}
    for parallel in ("fsdp", "ddp"):
        out[f"pretrain_{parallel}"] = cocoa_command(out_dir, f"pretrain_{parallel}", [
            "train", "builtin:tiny/pretrain", *[f"--set={x}" for x in common],
            f"--set=train.output_dir={root / parallel / 'pretrain'}", f"--set=train.parallel={parallel}",
            "--set=train.max_steps=20"])
    fsdp_losses = logged_losses(root / "fsdp" / "pretrain")
    ddp_losses = logged_losses(root / "ddp" / "pretrain")
    out["pretrain_losses"] = {"fsdp": fsdp_losses, "unsharded": ddp_losses}
    out["pretrain_max_abs_loss_difference"] = max(abs(fsdp_losses[k] - ddp_losses[k]) for k in ddp_losses)
    out["pretrain_fsdp_resume"] = cocoa_command(out_dir, "pretrain_resume", [
        "train", "builtin:tiny/pretrain", *[f"--set={x}" for x in common],
        f"--set=train.output_dir={root / 'fsdp' / 'pretrain'}", "--set=train.parallel=fsdp",
        "--set=train.max_steps=20", "--resume"])
    out["contrastive_fsdp"] = cocoa_command(out_dir, "contrastive_fsdp", [
        "train", "builtin:tiny/contrastive", *[f"--set={x}" for x in common],
        f"--set=model.path={root / 'fsdp' / 'pretrain' / 'model'}",
        f"--set=train.output_dir={root / 'fsdp' / 'contrastive'}", "--set=train.parallel=fsdp",
        "--set=train.max_steps=10", "--set=contrastive.gradcache_chunk=8"])
    out["contrastive_losses"] = logged_losses(root / "fsdp" / "contrastive")
    out["eval"] = cocoa_command(out_dir, "eval", [
        "eval", "--model", str(root / "fsdp" / "contrastive" / "model"), "--data", str(data),
        "--out", str(root / "eval")])
    summary = root / "eval" / "summary.json"
    if summary.is_file():
        out["eval_overall"] = json.loads(summary.read_text())["overall"]["score"]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="required without --smoke")
    parser.add_argument("--sections", nargs="+", help="default: env kernels throughput e2e; with --smoke env "
                                                       "kernels throughput adapters workers packing")
    parser.add_argument("--shapes", nargs="+", help="default: the published shapes; with --smoke the smoke shape")
    parser.add_argument("--rows", type=int, help="rows per training batch in the throughput section "
                                                 "(default: 16; 2 with --smoke)")
    parser.add_argument("--side", type=int, help=f"image side in pixels (throughput; default: {IMAGE_SIDE}, "
                                                 f"{SMOKE_SIDE} with --smoke)")
    parser.add_argument("--repeats", type=int, help="default: 5; 1 with --smoke")
    parser.add_argument("--items", type=int, help="images, and as many texts, encoded in the throughput and workers "
                                                  "sections (default: 256; 16 with --smoke)")
    parser.add_argument("--e2e-timeout", type=float, default=420.0)
    parser.add_argument("--e2e-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every stage of `cocoa run mini` (repeatable)")
    parser.add_argument("--workers", type=int, nargs="+",
                        help="preprocessing processes to compare in the workers section (default: 0 4 8; 0 1 "
                             "with --smoke)")
    parser.add_argument("--data", type=Path, default=None, help="MiniMMEB folder for the fsdp section")
    parser.add_argument("--pack-tokens", type=int, default=1024, help="packed row length in the packing section")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-smoke-"))
        args.sections = args.sections or ["env", "kernels", "throughput", "adapters", "workers", "packing"]
        args.shapes, args.rows, args.side = args.shapes or list(SMOKE_SHAPES), args.rows or 2, args.side or SMOKE_SIDE
        args.repeats, args.workers, args.items = args.repeats or 1, args.workers or [0, 1], args.items or 16
    elif args.out is None:
        parser.error("--out is required without --smoke")
    args.sections = args.sections or ["env", "kernels", "throughput", "e2e"]
    args.shapes, args.rows, args.side = args.shapes or list(SHAPES), args.rows or 16, args.side or IMAGE_SIDE
    args.repeats, args.workers, args.items = args.repeats or 5, args.workers or [0, 4, 8], args.items or 256
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict = {}
    peak = 0.0
    for section in args.sections:
        began = time.perf_counter()
        print(f"== {section}", flush=True)
        try:
            if section == "env":
                results[section] = section_env(device)
                peak = results[section].get("bf16_matmul_tflops", 0.0) * 1e12
            elif section == "kernels":
                results[section] = section_kernels(device)
            elif section == "throughput":
                results[section] = section_throughput(device, args.shapes, args.rows, args.repeats, peak, args.side,
                                                      args.items)
            elif section == "e2e":
                results[section] = section_e2e(args.out, args.e2e_timeout, args.e2e_set)
            elif section == "adapters":
                results[section] = section_adapters(device, args.shapes, args.rows, args.repeats, peak, args.side)
            elif section == "workers":
                results[section] = section_workers(device, args.shapes[0], args.side, args.workers, args.items)
            elif section == "packing":
                results[section] = section_packing(device, args.shapes[0], args.pack_tokens, args.repeats, peak,
                                                   args.out)
            elif section == "fsdp":
                results[section] = section_fsdp(args.out, args.data)
            else:
                raise ValueError(f"unknown section {section!r}")
        except Exception:
            results[section] = {"error": traceback.format_exc()[-3000:]}
        results[section]["section_s"] = time.perf_counter() - began
        print(json.dumps(results[section], indent=1, default=str), flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
