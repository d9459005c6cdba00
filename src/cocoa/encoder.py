"""Items in, L2-normalised embeddings out: the encoder shared by evaluation and inference."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from cocoa.attention import ATTENTION_MODES, AttentionMode
from cocoa.backbone import Backbone
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.images import image_size
from cocoa.data.items import Item
from cocoa.errors import ConfigError
from cocoa.model import embed

SPEC_FILE = "cocoa.json"

#: Image sizes by path: item lengths are asked for more than once (evaluator and encoder sort).
cached_image_size = lru_cache(maxsize=1 << 18)(image_size)
#: Text token counts kept per encoder, for the same reason (and items repeat instruction texts).
TEXT_LENGTH_CACHE = 1 << 16


@dataclass(frozen=True)
class EmbeddingSpec:
    """How a checkpoint embeds: the attention mode at inference and the token budget.

    Pooling is always the final post-norm state at an explicitly appended EOS; with
    ``causal`` attention that is last-token pooling (the VLM2Vec-style baseline).
    """

    attention: AttentionMode = "bidirectional"
    max_len: int = 4096

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_MODES or self.attention == "eos_bridge":
            raise ConfigError(f"embedding attention must be 'bidirectional' or 'causal', got {self.attention!r}")
        if self.max_len < 2:
            raise ConfigError(f"max_len must be at least 2, got {self.max_len}")

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingSpec:
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        unknown = set(data) - {"attention", "max_len"}
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**data)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class Encoder:
    """Encodes :class:`Item` lists with a backbone, sorted by length, in the input order."""

    def __init__(self, backbone: Backbone, spec: EmbeddingSpec | None = None, *,
                 device: torch.device | str | None = None) -> None:
        self.backbone = backbone
        self.spec = spec or EmbeddingSpec()
        self.device = torch.device(device) if device is not None else next(backbone.model.parameters()).device
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # trained weights with denormals slow CPU matmuls down
        self.preprocessor = Preprocessor(backbone, self.spec.max_len)
        self._text_length = lru_cache(maxsize=TEXT_LENGTH_CACHE)(self._count_text_tokens)
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, attn_implementation: str = "sdpa") -> Encoder:
        """Load a checkpoint folder with its :class:`EmbeddingSpec` (``cocoa.json``)."""
        device = torch.device(device) if device is not None else default_device()
        backbone = Backbone.load(path, dtype=dtype or default_dtype(device), attn_implementation=attn_implementation)
        backbone.model.to(device)
        return cls(backbone, EmbeddingSpec.load(path), device=device)

    def item_length(self, item: Item) -> int:
        """Token count of an item's sequence (image size read from the header only)."""
        n = self._text_length(item.text) + 1
        if item.image is not None:
            proc = self.backbone.image_processor
            image = item.image
            width, height = image.size if isinstance(image, Image.Image) else cached_image_size(image)
            factor = proc.patch_size * proc.merge_size
            h, w = smart_resize(height, width, factor=factor, min_pixels=proc.size["shortest_edge"],
                                max_pixels=proc.size["longest_edge"])
            n += (h // factor) * (w // factor) + 2
        return n

    def _count_text_tokens(self, text: str) -> int:
        return len(self.preprocessor.text_ids(text))

    @torch.inference_mode()
    def encode_items(self, items: Sequence[Item], *, batch_size: int = 32, show_progress: bool = False
                     ) -> np.ndarray:
        """Float32 ``(len(items), hidden)`` L2-normalised embeddings, in the order given."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        model = self.backbone.model
        was_training = model.training
        model.eval()
        order = sorted(range(len(items)), key=lambda i: self.item_length(items[i]))
        out = np.zeros((len(items), self.backbone.hidden_size), dtype=np.float32)
        bar = tqdm(total=len(items), disable=not show_progress, unit="item", desc="encode")
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            seqs = [self.preprocessor.embedding_sequence(items[i]) for i in chunk]
            batch = collate(seqs, self.backbone.ids.pad).to(self.device)
            out[chunk] = embed(model, batch, self.spec.attention).cpu().numpy()
            bar.update(len(chunk))
        bar.close()
        model.train(was_training)
        return out

    def fingerprint(self) -> str:
        """A stable hash of the weights, tokenizer, image processor and embedding spec."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            with torch.no_grad():
                for name, tensor in sorted(self.backbone.model.state_dict().items()):
                    flat = tensor.detach().flatten()
                    stats = (flat.float().sum().item(), flat[:32].float().cpu().numpy().round(6).tolist())
                    h.update(f"{name}{tuple(tensor.shape)}{stats}".encode())
            proc = self.backbone.image_processor
            h.update(json.dumps({"spec": asdict(self.spec), "vocab": len(self.backbone.tokenizer),
                                 "size": dict(proc.size), "patch": proc.patch_size, "merge": proc.merge_size},
                                sort_keys=True).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint
