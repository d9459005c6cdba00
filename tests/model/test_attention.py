"""Attention modes: the masks themselves, and what they do inside the real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoa.core.batch import Batch
from cocoa.core.errors import ConfigError
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.attention import additive_mask, allowed
from cocoa.model.forward import hidden_states, vl_model
from tests.helpers import FAMILIES, make_backbone

Q, E, T, P = Role.QUERY, Role.EMBEDDING, Role.TARGET, Role.PAD


def test_eos_bridge_mask_table() -> None:
    roles = torch.tensor([[Q, Q, E, T, T, P]])
    ok = allowed(roles, "eos_bridge")[0].int().tolist()
    assert ok == [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]
    query_only = allowed(roles, "eos_bridge", eos_sees_target=False)[0].int().tolist()
    assert query_only[2] == [1, 1, 1, 0, 0, 0]
    assert query_only[3] == ok[3]


def test_causal_and_bidirectional_mask_tables() -> None:
    roles = torch.tensor([[P, Q, Q, E]])
    assert allowed(roles, "causal")[0].int().tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    assert allowed(roles, "bidirectional")[0].int().tolist() == [[1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1],
                                                                 [0, 1, 1, 1]]


def test_packed_segments_see_only_themselves() -> None:
    roles = torch.tensor([[Q, E, Q, Q, E, P]])
    segments = torch.tensor([[0, 0, 1, 1, 1, -1]])
    assert allowed(roles, "bidirectional", segments=segments)[0].int().tolist() == [
        [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1]]
    assert allowed(roles, "causal", segments=segments)[0, 4].int().tolist() == [0, 0, 1, 1, 1, 0]


def test_additive_mask_values_and_bad_mode() -> None:
    mask = additive_mask(torch.tensor([[Q, P]]), "bidirectional", torch.float32)
    assert mask.shape == (1, 1, 2, 2)
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 0, 1] == torch.finfo(torch.float32).min
    with pytest.raises(ConfigError, match="unknown attention mode"):
        allowed(torch.tensor([[Q]]), "sideways")  # type: ignore[arg-type]


def bridged_batch(pre: Preprocessor, query: Item) -> Batch:
    enc = pre.item(query, Role.QUERY)
    enc.add([pre.ids.eos], Role.EMBEDDING)
    enc.add(pre.text_ids("a red dress on a white background"), Role.TARGET)
    return collate([enc], pre.ids.pad)


class Probe:
    """Runs the language model on a bridged batch with optional perturbations.

    In a multi-layer model block B reads block A through the EOS states of every layer, so
    "B sees A only through the EOS" means: with the EOS states of every layer pinned to
    their unperturbed values, perturbing A leaves B exactly unchanged.
    """

    def __init__(self, family: str, attn: str, query: Item) -> None:
        self.backbone = make_backbone(family, attn)
        pre = Preprocessor(self.backbone, 256)
        self.batch = bridged_batch(pre, query)
        self.pixels = "pixel_values" if query.image is not None else "pixel_values_videos"
        roles = self.batch.roles[0]
        self.a_text = (roles == Q) & (self.batch.mm_token_type_ids[0] == 0)
        self.eos, self.b = roles == E, roles == T
        self.vl = vl_model(self.backbone.model)
        self.gen = torch.Generator().manual_seed(1)
        self.eos_states: list[torch.Tensor] = []

    def run(self, mode: str = "eos_bridge", *, embed_noise: torch.Tensor | None = None, pixel_noise: bool = False,
            record: bool = False, pin: bool = False) -> torch.Tensor:
        batch = self.batch
        if pixel_noise:
            pixels = getattr(batch, self.pixels)
            noise = torch.randn(pixels.shape, generator=self.gen)
            batch = Batch(**{**batch.__dict__, self.pixels: pixels + noise})
        handles = []
        if embed_noise is not None:
            noise = torch.randn((1, len(embed_noise), self.backbone.hidden_size), generator=self.gen)
            handles.append(self.vl.get_input_embeddings().register_forward_hook(
                lambda m, a, out: out + noise * embed_noise[None, :, None].float()))
        if record:
            self.eos_states = []
        for i, layer in enumerate(self.vl.language_model.layers):
            def hook(m: torch.nn.Module, a: tuple, out: torch.Tensor, i: int = i) -> torch.Tensor:
                if record:
                    self.eos_states.append(out[:, self.eos].clone())
                if pin:
                    out = out.clone()
                    out[:, self.eos] = self.eos_states[i]
                return out
            handles.append(layer.register_forward_hook(hook))
        try:
            with torch.no_grad():
                return hidden_states(self.backbone.model, batch, mode)[0]  # type: ignore[arg-type]
        finally:
            for handle in handles:
                handle.remove()


@pytest.mark.parametrize("media", ["image", "video"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
def test_eos_bridge_block_b_sees_block_a_only_through_the_eos(family: str, attn: str, media: str, image_dir: Path,
                                                              video_dir: Path) -> None:
    query = (Item("<|image_1|> What is in the picture?", str(image_dir / "a.png")) if media == "image"
             else Item("<|video_1|> What happens in the video?", video=str(video_dir / "clip")))
    probe = Probe(family, attn, query)
    base = probe.run(record=True)
    for kwargs in ({"embed_noise": probe.a_text}, {"pixel_noise": True}):
        pinned = probe.run(pin=True, **kwargs)
        assert (pinned[probe.b] - base[probe.b]).abs().max() < 1e-5, "block B reached block A directly"
        free = probe.run(**kwargs)
        assert (free[probe.eos] - base[probe.eos]).abs().max() > 1e-3, "the EOS must read block A"
        assert (free[probe.b] - base[probe.b]).abs().max() > 1e-3, "A's content must reach B via the EOS"
    moved = probe.run(embed_noise=probe.eos)
    assert (moved[probe.b] - base[probe.b]).abs().max() > 1e-2, "block B must see the EOS"


def test_the_pinned_probe_catches_a_leaky_mask(image_dir: Path) -> None:
    probe = Probe("qwen2_vl", "sdpa", Item("<|image_1|> What is in the picture?", str(image_dir / "a.png")))
    base = probe.run("bidirectional", record=True)
    leaked = probe.run("bidirectional", embed_noise=probe.a_text, pin=True)
    assert (leaked[probe.b] - base[probe.b]).abs().max() > 1e-3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_bidirectional_differs_from_causal_and_equals_an_all_ones_mask(family: str, attn: str) -> None:
    backbone = make_backbone(family, attn)
    pre = Preprocessor(backbone, 64)
    ids = pre.text_ids("a sneaker next to a bag")
    changed = [*ids[:-1], pre.text_ids("dress")[0]]
    batches = [collate([pre.embedding_sequence(Item(pre.backbone.tokenizer.decode(x)))], pre.ids.pad)
               for x in (ids, changed)]
    with torch.no_grad():
        causal = [hidden_states(backbone.model, b, "causal")[0] for b in batches]
        bidir = [hidden_states(backbone.model, b, "bidirectional")[0] for b in batches]
        vl = vl_model(backbone.model)
        batch = batches[0]
        embeds = vl.get_input_embeddings()(batch.input_ids)
        length = batch.input_ids.shape[1]
        ones = torch.zeros((1, 1, length, length))
        from cocoa.model.forward import position_ids
        explicit = vl.language_model(inputs_embeds=embeds, attention_mask=ones,
                                     position_ids=position_ids(backbone.model, batch), use_cache=False)
    first = slice(0, 3)
    assert torch.allclose(causal[0][first], causal[1][first], atol=1e-6), "causal: later tokens are invisible"
    assert (bidir[0][first] - bidir[1][first]).abs().max() > 1e-3, "bidirectional: later tokens are visible"
    assert torch.allclose(bidir[0], explicit.last_hidden_state[0], atol=1e-5)
