"""Training end to end on a tiny MiniMMEB: the stage chain, learning, GradCache, resume, recipes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from cocoa.core.distributed import DistInfo
from cocoa.core.errors import ConfigError
from cocoa.core.hub import is_hub_id
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item, TrainPair
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.losses.contrastive import info_nce
from cocoa.model.packing import Packing
from cocoa.pipeline.driver import load_pipeline
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import apply_overrides, builtin, load_recipe, parse_recipe
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
    PairBatch,
    distinct_rows,
)
from cocoa.train import checkpoint
from cocoa.train.batches import BatchPlan, StepDataset
from cocoa.train.config import LoraConfig, TrainConfig
from cocoa.train.lora import add_lora
from cocoa.train.steps import GradCacheStep
from cocoa.train.trainer import Trainer
from tests.helpers import (
    EVAL_DATASET,
    make_backbone,
    pairs,
    read_metrics,
    recipe_path,
    stage_overrides,
    tiny_recipe,
)

PRETRAIN_STEPS = 20


@pytest.fixture(scope="module")
def pretrained(mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 0 trained for a few dozen small steps at a constant learning rate."""
    out = tmp_path_factory.mktemp("runs") / "stage0"
    recipe = tiny_recipe("pretrain", mini_dir, out, "train.schedule=constant", "train.lr=2.0e-3",
                         "train.weight_decay=0", steps=PRETRAIN_STEPS, batch=4)
    result = train_stage(recipe)
    assert result.steps == PRETRAIN_STEPS and result.resumed_from == 0
    return out


@pytest.fixture(scope="module")
def pretrained_qwen3_vl(mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 0 of a tiny Qwen3-VL, a handful of steps: the start of its stage chain."""
    out = tmp_path_factory.mktemp("runs") / "stage0-qwen3-vl"
    result = train_stage(tiny_recipe("pretrain", mini_dir, out, "model.family=qwen3_vl", steps=3))
    assert result.steps == 3
    return out


#: Stage-0 fixture and model type of each backbone family whose stage chain is tested.
CHAIN_STARTS = [("pretrained", "qwen2_vl"), ("pretrained_qwen3_vl", "qwen3_vl")]


def test_pretrain_loss_decreases(pretrained: Path) -> None:
    losses = [m["loss"] for m in read_metrics(pretrained)]
    assert [m["step"] for m in read_metrics(pretrained)] == list(range(1, PRETRAIN_STEPS + 1))
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first - 1.0, losses


@pytest.mark.parametrize(("start", "family"), CHAIN_STARTS)
def test_stage_chain_loads_and_evaluates(start: str, family: str, request: pytest.FixtureRequest,
                                         mini_dir: Path, tmp_path: Path) -> None:
    prev: Path = request.getfixturevalue(start)
    BatchEncoder.from_pretrained(prev / "model", device="cpu")
    before = {n: p.clone() for n, p in BatchEncoder.from_pretrained(prev / "model", device="cpu")
              .backbone.model.named_parameters()}
    for stage in ("warmup", "bridge", "contrastive"):
        out = tmp_path / stage
        recipe = tiny_recipe(stage, mini_dir, out, f"model.path={prev / 'model'}", steps=2)
        assert recipe.model.path == str(prev / "model") and recipe.model.tiny is None
        result = train_stage(recipe)
        assert result.steps == 2
        metrics = read_metrics(out)
        assert [m["step"] for m in metrics] == [1, 2] and all(math.isfinite(m["loss"]) for m in metrics)
        if stage == "warmup":
            assert all("mae" in m and "mntp" in m for m in metrics)
        assert (out / "model" / "config.json").is_file() and (out / "result.json").is_file()
        encoder = BatchEncoder.from_pretrained(out / "model", device="cpu")
        assert encoder.spec.attention == "bidirectional" and encoder.backbone.family == family
        prev = out
    after = dict(encoder.backbone.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before), "training changed no weight"
    summary = evaluate(encoder, mini_dir, tmp_path / "eval", datasets=[EVAL_DATASET], batch_size=16,
                       show_progress=False)
    assert summary.evaluated == [EVAL_DATASET]
    assert 0.0 <= summary.datasets[EVAL_DATASET].score <= 100.0


@pytest.mark.parametrize(("start", "family"), CHAIN_STARTS)
def test_lora_stage_with_checkpointing_merges_into_a_plain_checkpoint(start: str, family: str,
                                                                    request: pytest.FixtureRequest,
                                                                    mini_dir: Path, tmp_path: Path) -> None:
    pretrained: Path = request.getfixturevalue(start)
    out = tmp_path / "bridge-lora"
    recipe = tiny_recipe("bridge", mini_dir, out, f"model.path={pretrained / 'model'}", "train.lr=1e-2",
                         "train.gradient_checkpointing=true",
                         "train.lora={r: 4, alpha: 8, dropout: 0.1, dora: true, vision: true}", steps=2)
    train_stage(recipe)
    config = (out / "model" / "config.json").read_text()
    weights = list((out / "model").glob("*.safetensors"))
    assert weights and not list((out / "model").glob("adapter_*")), "LoRA must be merged, not saved apart"
    assert "lora" not in config
    merged = dict(BatchEncoder.from_pretrained(out / "model", device="cpu").backbone.model.named_parameters())
    base = dict(BatchEncoder.from_pretrained(pretrained / "model", device="cpu").backbone.model.named_parameters())
    assert merged.keys() == base.keys(), "the merged model has exactly the upstream parameter names"
    changed = {n for n in base if not torch.equal(base[n], merged[n])}
    assert any("language_model" in n and "q_proj" in n for n in changed)
    assert any("visual" in n for n in changed), "vision-tower adapters were trained and merged"
    vision_mlp = "mlp.linear_fc1" if family == "qwen3_vl" else "mlp.fc1"
    assert any("visual.blocks" in n and vision_mlp in n for n in changed), "the vision MLP has adapters too"
    assert not any("lm_head" in n for n in changed), "frozen weights stayed frozen"
    assert not any("visual.blocks" in n and "attn.proj" in n for n in changed), "proj is opt-in"
    embed = next(n for n in base if n.endswith("embed_tokens.weight"))
    mask_id = BatchEncoder.from_pretrained(pretrained / "model", device="cpu").backbone.ids.mask
    rows = (base[embed] != merged[embed]).any(1).nonzero().flatten().tolist()
    assert rows == [mask_id], "of the embedding matrix only the mask token's row trains"


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_lora_targets_are_the_release_list_with_vision_proj_opt_in(family: str) -> None:
    def adapted(config: LoraConfig) -> set[str]:
        model = add_lora(make_backbone(family).model, config)
        return {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A." in name}

    default = adapted(LoraConfig())
    vision = {name.rsplit(".", 1)[-1] for name in default if "visual" in name}
    language = {name.rsplit(".", 1)[-1] for name in default if "language_model" in name}
    assert language == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    expected = {"qwen2_vl": {"qkv", "fc1", "fc2"}, "qwen2_5_vl": {"qkv", "gate_proj", "up_proj", "down_proj"},
                "qwen3_vl": {"qkv", "linear_fc1", "linear_fc2"}}[family]
    assert vision == expected
    with_proj = adapted(LoraConfig(vision_targets=[*LoraConfig().vision_targets, "proj"]))
    assert {name for name in with_proj - default} == {n for n in with_proj if n.endswith("attn.proj")} != set()
    assert not any("visual" in name for name in adapted(LoraConfig(vision=False)))
    backbone = make_backbone(family)
    mask = backbone.ids.mask
    with_token = add_lora(backbone.model, LoraConfig(), [mask])
    trainable = [n for n, p in with_token.named_parameters() if p.requires_grad and "embed_tokens" in n]
    assert trainable and all("token_adapter" in n for n in trainable)
    assert not any(p.requires_grad for n, p in add_lora(make_backbone(family).model, LoraConfig()).named_parameters()
                   if "embed_tokens" in n)


# --- GradCache ---------------------------------------------------------------------------


def contrastive_trainer(objective: nn.Module, examples: list, builder: ContrastiveBuilder, tmp_path: Path,
                        temperature: float = 0.05) -> Trainer:
    plan = BatchPlan(len(examples), len(examples))
    step = GradCacheStep(ContrastiveLoss(ContrastiveConfig(temperature=temperature, hard_negatives=True)))
    return Trainer(objective, StepDataset(examples, builder, plan), step, 1,
                   TrainConfig(output_dir=str(tmp_path), max_steps=1), DistInfo(0, 1, 0, torch.device("cpu")),
                   tmp_path)


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad and p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
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


def test_gradcache_matches_full_batch(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    full = ContrastiveBuilder(pre, hard_negatives=True, chunk=None)(examples, np.random.default_rng(0))
    chunked = ContrastiveBuilder(pre, hard_negatives=True, chunk=2)(examples, np.random.default_rng(0))
    assert len(full.chunks) == 1 and len(chunked.chunks) == 6 and chunked.negative_of == (0, 1, 2, 3)
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, True, None), tmp_path)
    assert_same_step(trainer, objective, full, chunked)


@pytest.mark.parametrize(("packed", "dedupe"), [(False, False), (False, True), (True, False), (True, True)])
def test_gradcache_chunks_cut_by_tokens_match_full_batch(packed: bool, dedupe: bool, image_dir: Path,
                                                        tmp_path: Path) -> None:
    backbone = make_backbone()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    full = ContrastiveBuilder(pre, True, None, dedupe)(examples, np.random.default_rng(0))
    lengths = [int(n) for n in (full.chunks[0].roles != Role.PAD).sum(1)]
    pack_tokens = 2 * max(lengths) if packed else None
    budget = 2 * max(lengths)  # packed: a row a chunk
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"], Packing(pack_tokens))
    objective.train()
    cut = ContrastiveBuilder(pre, True, None, dedupe, chunk_tokens=budget, packing=Packing(pack_tokens))(
        examples, np.random.default_rng(0))
    assert len(cut.chunks) > 1 and cut.rows is not None and sorted(set(cut.rows)) == list(range(len(lengths)))
    for chunk in cut.chunks:
        real = (chunk.roles != Role.PAD).sum(1)
        if pack_tokens is None:
            assert len(chunk) == 1 or len(chunk) * int(real.max()) <= budget
        assert real.tolist() == sorted(real.tolist(), reverse=True) or packed
    assert not packed or any(Packing(pack_tokens).rows(chunk) is not None for chunk in cut.chunks)
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, True, None), tmp_path)
    assert_same_step(trainer, objective, full, cut)


def test_gradcache_rows_and_tokens_are_one_choice() -> None:
    with pytest.raises(ValueError, match=r"at most one of contrastive\.gradcache_chunk"):
        ContrastiveConfig(gradcache_chunk=8, gradcache_tokens=4096)


def test_dedupe_embeds_each_distinct_row_once_with_the_same_loss_and_gradients(image_dir: Path,
                                                                             tmp_path: Path) -> None:
    backbone = make_backbone()
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    base = pairs(image_dir)
    # two more label-style rows: a positive and a negative that repeat earlier targets
    examples = [*base, TrainPair(Item("a photo of an ankle boot"), base[0].positive, base[1].positive)]
    plain = ContrastiveBuilder(pre, hard_negatives=True, chunk=3)(examples, np.random.default_rng(0))
    deduped = ContrastiveBuilder(pre, hard_negatives=True, chunk=3, dedupe=True)(examples, np.random.default_rng(0))
    embedded = sum(len(c) for c in deduped.chunks)
    assert sum(len(c) for c in plain.chunks) == 15 and embedded == 12
    assert deduped.rows is not None and len(deduped.rows) == 15 and max(deduped.rows) == embedded - 1
    assert deduped.rows[5] == deduped.rows[9] and deduped.rows[7] == deduped.rows[10] and \
        deduped.rows[6] == deduped.rows[14], "repeated targets are one row each"
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, True, 3), tmp_path)
    assert_same_step(trainer, objective, plain, deduped)


def test_distinct_rows_keys_on_text_and_image_path(image_dir: Path) -> None:
    path = str(image_dir / "a.png")
    pil = Image.new("RGB", (8, 8))
    items = [Item("x", path), Item("x"), Item("x", path), Item("", path), Item("x"), Item("x", pil), Item("x", pil)]
    distinct, rows = distinct_rows(items)
    assert distinct == [Item("x", path), Item("x"), Item("", path), Item("x", pil), Item("x", pil)]
    assert rows == (0, 1, 0, 2, 1, 3, 4)


def reference_grads(objective: nn.Module, pairs_: PairBatch, temperature: float) -> tuple[float, dict]:
    """One autograd graph over the chunks run in order (the dropout draws GradCache replays)."""
    emb = torch.cat([objective(c) for c in pairs_.chunks]).float()
    n = pairs_.n_queries
    assert pairs_.negative_of == tuple(range(n))
    loss = info_nce(emb[:n], emb[n:2 * n], temperature, emb[2 * n:])
    loss.backward()
    return float(loss.detach()), grads(objective)


def test_gradcache_replays_lora_dropout(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    model = add_lora(backbone.model, LoraConfig(r=4, alpha=8, dropout=0.3, dora=True))
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero B so that dropout changes the embeddings, not only the gradients
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    objective = EmbeddingObjective(model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    chunked = ContrastiveBuilder(pre, hard_negatives=True, chunk=3)(examples, np.random.default_rng(0))
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, True, 3), tmp_path)

    torch.manual_seed(123)
    state = checkpoint.rng_state()
    ref_loss, g_ref = reference_grads(objective, chunked, 0.05)
    checkpoint.set_rng_state(state)
    loss = trainer.compute(chunked)["loss"]
    g_cache = grads(objective)
    assert math.isclose(loss, ref_loss, rel_tol=1e-6)
    assert_same_grads(g_ref, g_cache)
    # dropout really is active: other draws give other gradients (so the replay is what makes it exact)
    torch.manual_seed(456)
    other_loss, g_other = reference_grads(objective, chunked, 0.05)
    assert other_loss != ref_loss
    assert any(not torch.allclose(g_ref[n], g_other[n], rtol=1e-3, atol=1e-7) for n in g_ref)


# --- resume ------------------------------------------------------------------------------

RESUME_STEPS = 12


def train_command(mini: Path, out: Path, *extra: str) -> list[str]:
    sets = [*stage_overrides("bridge", mini, out, RESUME_STEPS, batch=2), "model.path=null", "model.tiny=tiny",
            "train.save_every=3", "train.keep_checkpoints=2", "train.schedule=linear", "train.warmup_steps=2",
            "data.cap=48"]
    return [sys.executable, "-m", "cocoa.cli", "train", str(recipe_path("bridge")),
            *[a for s in sets for a in ("--set", s)], *extra]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def test_same_seed_same_weights_other_seed_other_weights(mini_dir: Path, tmp_path: Path) -> None:
    """Within one machine a stage is deterministic: tokenizer, initialisation and batches follow the seed."""
    runs = {name: tmp_path / name for name in ("first", "again", "seed1")}
    for name, out in runs.items():
        train_stage(tiny_recipe("pretrain", mini_dir, out, f"train.seed={int(name == 'seed1')}", steps=3))
    first, again, other = (_weights(out) for out in runs.values())
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first if first[k].shape == other[k].shape)


def comparable(metrics: list[dict]) -> list[tuple]:
    return [(m["step"], m["loss"], m["accuracy"], m["grad_norm"], m["lr"]) for m in metrics]


@pytest.mark.slow
def test_resume_after_kill_reproduces_losses(mini_dir: Path, tmp_path: Path) -> None:
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(train_command(mini_dir, killed_dir), env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ckpts = killed_dir / "checkpoints"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if checkpoint.latest(ckpts) is not None:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert checkpoint.latest(ckpts) is not None, err.decode()[-2000:]
    killed = proc.returncode == -signal.SIGKILL
    print(f"resume test: killed={killed} checkpoint={checkpoint.latest(ckpts).name}")
    if killed:
        assert not (killed_dir / "model").exists()
    else:  # finished before the kill: resuming still restarts from the last checkpoint (step 9)
        assert proc.returncode == 0, err.decode()[-2000:]
    resumed_from = int(checkpoint.latest(ckpts).name.split("-")[1])
    assert 0 < resumed_from < RESUME_STEPS

    subprocess.run(train_command(mini_dir, killed_dir, "--resume"), env=run_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    subprocess.run(train_command(mini_dir, full_dir), env=run_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    resumed, full = comparable(read_metrics(killed_dir)), comparable(read_metrics(full_dir))
    assert [r[0] for r in full] == list(range(1, RESUME_STEPS + 1))
    assert [r[0] for r in resumed] == [r[0] for r in full]
    np.testing.assert_allclose(np.array([r[1:] for r in resumed]), np.array([r[1:] for r in full]), rtol=1e-6)
    assert '"resumed_from": ' + str(resumed_from) in (killed_dir / "result.json").read_text()
    assert len(list(ckpts.glob("step-*"))) <= 2  # keep_checkpoints


# --- recipe validation -------------------------------------------------------------------


def base_overrides(tmp_path: Path) -> list[str]:
    return [f"data.root={tmp_path}", f"train.output_dir={tmp_path / 'out'}"]


def test_recipe_overrides_parse(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_path("contrastive"), [*base_overrides(tmp_path), "train.lr=1e-3",
                                                      "train.max_steps=5", "train.epochs=null",
                                                      "contrastive.gradcache_chunk=null", "data.subsets=[A, B]",
                                                      "train.lora.r=4"])
    assert recipe.train.lr == pytest.approx(1e-3) and recipe.train.max_steps == 5 and recipe.train.epochs is None
    assert recipe.contrastive.gradcache_chunk is None and recipe.data.subsets == ["A", "B"]
    assert recipe.train.lora is not None and recipe.train.lora.r == 4 and recipe.train.lora.dropout == 0.1
    assert recipe.data.root == str(tmp_path)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x=y"]) == {"a": {"b": 1, "c": "x=y"}}


@pytest.mark.parametrize(("overrides", "field"), [
    (["train.lrr=0.1"], "train.lrr"),
    (["bogus=1"], "bogus"),
    (["train.lr=-0.001"], "train.lr"),
    (["train.batch_size=0"], "train.batch_size"),
    (["contrastive.attention=sideways"], "contrastive.attention"),
    (["model.tiny=tiny"], "model"),
    (["train.max_steps=3"], "train"),
    (["stage=finetune"], "stage"),
])
def test_recipe_errors_name_the_field(tmp_path: Path, overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_path("bridge"), [*base_overrides(tmp_path), *overrides])
    assert f"  {field}:" in str(info.value)
    if overrides == ["model.tiny=tiny"]:
        assert "model.path" in str(info.value) and "model.tiny" in str(info.value)


def test_fsdp_is_for_full_fine_tuning(tmp_path: Path) -> None:
    paper = builtin("paper/contrastive")
    with pytest.raises(ConfigError) as info:
        load_recipe(paper, [*base_overrides(tmp_path), "train.parallel=fsdp"])
    assert "  train:" in str(info.value) and "train.parallel=fsdp" in str(info.value) and "train.lora" in str(info.value)
    recipe = load_recipe(paper, [*base_overrides(tmp_path), "train.parallel=fsdp", "train.lora=null"])
    assert recipe.train.parallel == "fsdp" and recipe.train.lora is None
    assert load_recipe(paper, base_overrides(tmp_path)).train.parallel == "ddp"


@pytest.mark.parametrize(("name", "patch"), [("paper-qwen2-vl-2b", 14), ("paper-qwen2.5-vl-3b", 14),
                                           ("paper-qwen2.5-vl-7b", 14), ("paper-qwen3-vl-2b", 16),
                                           ("paper-qwen3-vl-8b", 16)])
def test_paper_pipelines_validate_with_whole_merge_windows(name: str, patch: int, tmp_path: Path) -> None:
    pipeline, _ = load_pipeline(f"builtin:pipelines/{name}")
    stages = [load_recipe(builtin(entry.recipe.removeprefix("builtin:")),
                          [*base_overrides(tmp_path), *pipeline.set, *entry.set])
              for entry in pipeline.stages]
    assert [r.stage for r in stages] == ["warmup", "bridge", "contrastive"]
    base = stages[0].model.path  # the base model's Hub id
    assert base is not None and is_hub_id(base) and base.startswith("Qwen/") and base.endswith("-Instruct")
    for recipe in stages:
        image = recipe.protocol.resolve().image
        assert recipe.protocol.preset == "cocoa-release"
        if image.square is not None:
            assert image.square % (2 * patch) == 0, (recipe.stage, image)
        else:
            side = math.isqrt(image.min_pixels or 0)
            assert image.min_pixels == image.max_pixels == side * side and side % (2 * patch) == 0, recipe.stage
    assert stages[1].bridge.targets == "raw"
    assert pipeline.eval.protocol is not None and pipeline.eval.protocol.resolve() == PROTOCOLS["cocoa-release"]


@pytest.mark.parametrize("bad", ["train.lr", "train.lr.x=1"])
def test_bad_override_strings(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        load_recipe(recipe_path("bridge"), [*base_overrides(tmp_path), bad])


def test_parse_recipe_missing_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe({"stage": "bridge", "model": {"tiny": "tiny"}})
    assert "  data:" in str(info.value) and "  train:" in str(info.value)
