"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL backbones: real checkpoints from a folder, or named tiny configs.

A :class:`Backbone` bundles the upstream ``*ForConditionalGeneration`` model (never a copy
of its code), its tokenizer and a PIL image processor (no torchvision needed), plus the
special-token ids read from the tokenizer. A tiny model saved with :meth:`Backbone.save`
is an ordinary checkpoint folder that :meth:`Backbone.load` (and ``from_pretrained``)
reads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from cocoa.core.errors import ConfigError
from cocoa.core.hub import resolve_model

Family = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_vl": Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


@dataclass(frozen=True)
class ImageSettings:
    """What a family's image processor uses: patch side and per-channel normalisation."""

    patch_size: int
    mean: tuple[float, ...] = tuple(OPENAI_CLIP_MEAN)
    std: tuple[float, ...] = tuple(OPENAI_CLIP_STD)


#: Image-processor settings of each family's checkpoints (Qwen3-VL: 16-pixel patches, mean = std = 0.5).
IMAGE_SETTINGS: dict[str, ImageSettings] = {
    "qwen2_vl": ImageSettings(14),
    "qwen2_5_vl": ImageSettings(14),
    "qwen3_vl": ImageSettings(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

#: The mask token added for masked next-token prediction (stages 1 and 2).
MASK_TOKEN = "<|mask|>"
#: Special tokens of the Qwen2-VL tokenizer that a tiny tokenizer must carry too.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", MASK_TOKEN,
)

#: Named tiny configurations: text hidden size/depth/heads, MLP size, vision hidden size/depth/heads.
TINY_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 96, "layers": 3, "heads": 4, "kv_heads": 2, "mlp": 256,
             "vision_dim": 48, "vision_depth": 1, "vision_heads": 2, "vocab": 2048},
    "small": {"hidden": 256, "layers": 6, "heads": 8, "kv_heads": 4, "mlp": 768,
              "vision_dim": 128, "vision_depth": 2, "vision_heads": 4, "vocab": 4096},
}

#: Tiny image processors keep 1 to 36 merged tokens per image: 28x28 to 168x168 at patch 14,
#: 32x32 to 192x192 at patch 16.
TINY_MAX_TOKENS_PER_SIDE = 6


@dataclass(frozen=True)
class TokenIds:
    """Special-token ids, always read from the tokenizer."""

    pad: int
    eos: int
    image: int
    video: int
    vision_start: int
    vision_end: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> TokenIds:
        def tid(token: str) -> int:
            value = tokenizer.convert_tokens_to_ids(token)
            if value is None or value == tokenizer.unk_token_id:
                raise ConfigError(f"tokenizer has no token {token!r}")
            return int(value)

        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tid("<|endoftext|>")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        return cls(pad=int(pad), eos=int(eos), image=tid("<|image_pad|>"), video=tid("<|video_pad|>"),
                   vision_start=tid("<|vision_start|>"), vision_end=tid("<|vision_end|>"),
                   mask=tid(MASK_TOKEN))


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the Qwen special tokens, built offline.

    With a ``corpus`` the merges are learned from it (deterministically); without one the
    tokenizer has no merges and spells text byte by byte.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL_TOKENS),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(list(corpus) if corpus is not None else [], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   unk_token=None, mask_token=MASK_TOKEN, padding_side="right")


def build_image_processor(min_pixels: int | None = None, max_pixels: int | None = None, *,
                          family: Family = "qwen2_vl") -> Qwen2VLImageProcessorPil:
    """The PIL Qwen2-VL image processor (merge 2) with a family's patch size and pixel bounds.

    Bounds left out are the tiny ones: one merged token up to a 6 x 6 grid of them.
    """
    if family not in IMAGE_SETTINGS:
        raise ConfigError(f"unknown backbone family {family!r}; choose one of {sorted(IMAGE_SETTINGS)}")
    settings = IMAGE_SETTINGS[family]
    side = settings.patch_size * 2  # one merged token
    return Qwen2VLImageProcessorPil(
        patch_size=settings.patch_size, merge_size=2,
        image_mean=list(settings.mean), image_std=list(settings.std),
        min_pixels=side * side if min_pixels is None else min_pixels,
        max_pixels=(TINY_MAX_TOKENS_PER_SIDE * side) ** 2 if max_pixels is None else max_pixels)


def tiny_config(preset: str, family: Family, tokenizer: PreTrainedTokenizerBase
                ) -> Qwen2VLConfig | Qwen2_5_VLConfig | Qwen3VLConfig:
    """A tiny config of the real Qwen2-VL / Qwen2.5-VL / Qwen3-VL classes with ids from ``tokenizer``."""
    if preset not in TINY_PRESETS:
        raise ConfigError(f"unknown tiny preset {preset!r}; choose one of {sorted(TINY_PRESETS)}")
    if family not in MODEL_CLASSES:
        raise ConfigError(f"unknown backbone family {family!r}; choose one of {sorted(MODEL_CLASSES)}")
    p = TINY_PRESETS[preset]
    ids = TokenIds.from_tokenizer(tokenizer)
    text = tiny_text_config(p, family, tokenizer, ids)
    special = {"image_token_id": ids.image, "video_token_id": ids.video,
               "vision_start_token_id": ids.vision_start, "vision_end_token_id": ids.vision_end}
    if family == "qwen2_vl":
        vision = {"depth": p["vision_depth"], "embed_dim": p["vision_dim"], "hidden_size": p["hidden"],
                  "num_heads": p["vision_heads"], "mlp_ratio": 2}
        return Qwen2VLConfig(text_config=text, vision_config=vision, **special)
    if family == "qwen3_vl":
        side = TINY_MAX_TOKENS_PER_SIDE * 2  # patches per side of the largest tiny image
        vision = {"depth": p["vision_depth"], "hidden_size": p["vision_dim"], "out_hidden_size": p["hidden"],
                  "num_heads": p["vision_heads"], "intermediate_size": 2 * p["vision_dim"],
                  "patch_size": IMAGE_SETTINGS[family].patch_size,
                  "num_position_embeddings": side * side,
                  "deepstack_visual_indexes": list(range(min(3, p["vision_depth"])))}
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **special)
    vision = {"depth": p["vision_depth"], "hidden_size": p["vision_dim"], "out_hidden_size": p["hidden"],
              "num_heads": p["vision_heads"], "intermediate_size": 2 * p["vision_dim"],
              "fullatt_block_indexes": [p["vision_depth"] - 1], "window_size": 56}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)


def tiny_text_config(p: dict[str, int], family: Family, tokenizer: PreTrainedTokenizerBase, ids: TokenIds
                     ) -> dict[str, object]:
    """The language model of a tiny preset, with an M-RoPE split that sums to head_dim / 2.

    Qwen3-VL interleaves the (t, h, w) frequencies, so each spatial share is at most a third
    of them (its checkpoints use 24/20/20 of 64); Qwen2(.5)-VL uses contiguous sections.
    """
    head_dim = p["hidden"] // p["heads"]
    half = head_dim // 2
    spatial = half * 5 // 16 if family == "qwen3_vl" else half * 3 // 8
    section = [half - 2 * spatial, spatial, spatial]
    rope: dict[str, object] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    if family == "qwen3_vl":
        rope["mrope_interleaved"] = True
    text: dict[str, object] = {
        "vocab_size": len(tokenizer), "hidden_size": p["hidden"], "intermediate_size": p["mlp"],
        "num_hidden_layers": p["layers"], "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"], "max_position_embeddings": 4096, "use_cache": False,
        "rope_parameters": rope, "bos_token_id": ids.eos, "eos_token_id": ids.eos, "pad_token_id": ids.pad,
        "tie_word_embeddings": False,
    }
    if family == "qwen3_vl":
        text["head_dim"] = head_dim  # its config defaults to 128 rather than hidden / heads
    return text


@dataclass
class Backbone:
    """The upstream model with its tokenizer, image processor and special-token ids."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    image_processor: Qwen2VLImageProcessorPil
    ids: TokenIds

    @property
    def family(self) -> str:
        return str(self.model.config.model_type)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def merge_size(self) -> int:
        return int(self.image_processor.merge_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @classmethod
    def tiny(cls, preset: str = "tiny", family: Family = "qwen2_vl", *, corpus: Iterable[str] | None = None,
             seed: int = 0, attn_implementation: str = "sdpa") -> Backbone:
        """Build a randomly initialised tiny backbone (tokenizer learned on ``corpus`` if given)."""
        vocab = TINY_PRESETS[preset]["vocab"] if preset in TINY_PRESETS else 0
        tokenizer = build_tokenizer(corpus, vocab_size=vocab)
        config = tiny_config(preset, family, tokenizer)
        config._attn_implementation = attn_implementation
        torch.manual_seed(seed)
        model = MODEL_CLASSES[family](config)
        model.eval()
        return cls(model=model, tokenizer=tokenizer, image_processor=build_image_processor(family=family),
                   ids=TokenIds.from_tokenizer(tokenizer))

    @classmethod
    def load(cls, path: str | Path, *, dtype: torch.dtype | None = None, attn_implementation: str = "sdpa",
             min_pixels: int | None = None, max_pixels: int | None = None) -> Backbone:
        """Load a checkpoint folder (``save_pretrained`` layout) with its tokenizer and image processor;
        ``path`` may be a Hub id (:mod:`cocoa.core.hub`)."""
        path = resolve_model(path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ConfigError(f"{path} is not a model folder: {config_file} is missing")
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type not in MODEL_CLASSES:
            raise ConfigError(f"{config_file}: model_type {model_type!r} is not one of {sorted(MODEL_CLASSES)}")
        model = MODEL_CLASSES[model_type].from_pretrained(path, dtype=dtype or torch.float32,
                                                         attn_implementation=attn_implementation)
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.convert_tokens_to_ids(MASK_TOKEN) in (None, tokenizer.unk_token_id):
            tokenizer.add_special_tokens({"additional_special_tokens": [MASK_TOKEN]},
                                         replace_extra_special_tokens=False)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        bounds = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **bounds)
        return cls(model=model, tokenizer=tokenizer, image_processor=image_processor,
                   ids=TokenIds.from_tokenizer(tokenizer))

    def save(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write model (or ``state_dict``, its gathered weights), tokenizer and image processor into one folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=state_dict)
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)
        return path
