"""Items in, L2-normalised embeddings out, in length-sorted batches: the engine under every encode path.

:class:`BatchEncoder` knows items and batches; :class:`~cocoa.inference.embedder.Embedder` is the
user-facing API on top of it (raw texts, images and dicts in, Matryoshka dims out), and the
evaluator takes any :class:`~cocoa.evaluate.runner.ItemEncoder`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cocoa.core.batch import Batch
from cocoa.core.by_value import to_arrays, to_tensors
from cocoa.core.defaults import ENCODE_BATCH_SIZE, FINGERPRINT_CHARS
from cocoa.core.errors import CocoaError, ConfigError, DataError, ItemError
from cocoa.core.hub import resolve_model
from cocoa.core.protocol import Protocol
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.collate import Encoded, Preprocessor, collate
from cocoa.data.images import image_size
from cocoa.data.items import EveryFrame, Item
from cocoa.data.videos import first_frame_size, frame_count
from cocoa.model.backbone import Backbone
from cocoa.model.packing import Packing

#: Leading values of each weight tensor that enter the fingerprint (with its shape, dtype and sum).
FINGERPRINT_VALUES = 32
#: Image sizes by path: item lengths are asked for more than once (evaluator and encoder sort).
cached_image_size = lru_cache(maxsize=1 << 18)(image_size)
#: Text token counts kept per encoder, for the same reason (and items repeat instruction texts).
TEXT_LENGTH_CACHE = 1 << 16


#: Config keys that say where a model came from or how it was saved, not how it computes (the
#: weights' dtype is in the weights' own entries).
_PROVENANCE_KEYS = frozenset({"_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"})


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the provenance keys, at every depth."""
    return {k: _settings(v) if isinstance(v, dict) else v for k, v in config.items() if k not in _PROVENANCE_KEYS}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


#: Integer views of float dtypes, whose sums fingerprint weights exactly.
_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bit_sum(flat: Tensor) -> int:
    """The sum of a tensor's bit patterns as integers: exact, so the same on any device and thread count
    (a float sum is not), with no float64 copy of the weights."""
    if flat.dtype == torch.bool:
        return int(flat.sum().item())
    return int(flat.contiguous().view(_BITS[flat.element_size()]).sum(dtype=torch.int64).item())


class CollatedChunks(Dataset):
    """Batch ``i`` is the collated sequences of ``items[j] for j in chunks[i]``.

    A :class:`CocoaError` (a missing image, say) is returned rather than raised, so that it
    reaches the caller from a worker process with its file, row and field intact; bad data in one
    item is an :class:`ItemError` naming the item's position in ``items``.
    """

    def __init__(self, items: Sequence[Item], chunks: list[list[int]], preprocessor: Preprocessor,
                 pad: int) -> None:
        self.items, self.chunks, self.preprocessor, self.pad = items, chunks, preprocessor, pad

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> Batch | CocoaError:
        sequences = []
        for i in self.chunks[index]:
            try:
                sequences.append(self.preprocessor.embedding_sequence(self.items[i]))
            except DataError as exc:
                return ItemError(exc, i)
            except CocoaError as exc:
                return exc
        try:
            return collate(sequences, self.pad)
        except CocoaError as exc:
            return exc


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class BatchEncoder:
    """Encodes :class:`Item` lists with a backbone, sorted by length, in the input order.

    ``num_workers`` processes preprocess (tokenise, load and resize images, collate) the
    next batches while the model encodes; 0 preprocesses in this process. ``pack_tokens`` packs
    each batch into rows of that many tokens (:class:`~cocoa.model.packing.Packing`; ``None`` pads);
    the embeddings equal the padded ones to float rounding, so the fingerprint ignores it.
    """

    def __init__(self, backbone: Backbone, spec: EmbeddingSpec | None = None, *,
                 device: torch.device | str | None = None, num_workers: int = 0,
                 pack_tokens: int | None = None) -> None:
        if num_workers < 0:
            raise ConfigError(f"num_workers must be 0 or more, got {num_workers}")
        self.num_workers, self.packing = num_workers, Packing(pack_tokens)
        self.backbone = backbone
        self.spec = spec or EmbeddingSpec()
        self.dims = self.spec.served_dims(backbone.hidden_size)
        self.device = torch.device(device) if device is not None else next(backbone.model.parameters()).device
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # trained weights with denormals slow CPU matmuls down
        self.preprocessor = Preprocessor(backbone, self.spec.max_len, self.spec.protocol)
        self._text_length = lru_cache(maxsize=TEXT_LENGTH_CACHE)(self._count_text_tokens)
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, attn_implementation: str = "sdpa",
                        num_workers: int = 0, protocol: Protocol | None = None,
                        pack_tokens: int | None = None) -> BatchEncoder:
        """Load a checkpoint folder, or a Hub id (``org/name[@revision]``), with its :class:`EmbeddingSpec`
        (``cocoa.json``).

        ``protocol`` replaces the one the checkpoint records (to evaluate it as another project does).
        """
        path = resolve_model(path)
        device = torch.device(device) if device is not None else default_device()
        backbone = Backbone.load(path, dtype=dtype or default_dtype(device), attn_implementation=attn_implementation)
        backbone.model.to(device)
        spec = EmbeddingSpec.load(path)
        if protocol is not None:
            spec = spec.with_protocol(protocol)
        return cls(backbone, spec, device=device, num_workers=num_workers, pack_tokens=pack_tokens)

    @property
    def protocol(self) -> Protocol:
        """The protocol items are embedded under."""
        return self.spec.protocol

    def item_length(self, item: Item) -> int:
        """Token count of an item's sequence (image and first-frame sizes read from headers only; a
        video's timestamp text, which only Qwen3-VL has, is not counted: the count orders batches)."""
        protocol = self.spec.protocol
        n = self._text_length(item.text) + (protocol.embedding_token is not None)
        wrap = 2 if protocol.image_tokens == "vision_block" else 0
        if item.image is not None:
            image = item.image
            width, height = image.size if isinstance(image, Image.Image) else cached_image_size(image)
            n += protocol.image.tokens(width, height, self.backbone.image_processor) + wrap
        if item.video is not None:
            width, height = first_frame_size(item.video)
            total = frame_count(item.video)
            frames = total if isinstance(item.video, EveryFrame) else protocol.video.sampled(total)
            n += protocol.video.tokens(width, height, frames, protocol.image, self.backbone.image_processor) + wrap
        return n

    def _count_text_tokens(self, text: str) -> int:
        return len(self.preprocessor.text_ids(text))

    @property
    def pack_tokens(self) -> int | None:
        """Tokens per packed row (``None``: padded batches)."""
        return self.packing.pack_tokens

    def encode_items(self, items: Sequence[Item], *, batch_size: int = ENCODE_BATCH_SIZE, show_progress: bool = False
                     ) -> np.ndarray:
        """Float32 ``(len(items), hidden)`` L2-normalised embeddings, in the order given."""
        order = sorted(range(len(items)), key=lambda i: self.item_length(items[i]))
        chunks = self._chunks(order, batch_size)
        return self._embed(chunks, self._batches(items, chunks), len(items), show_progress)

    def encode_sequences(self, seqs: Sequence[Encoded], *, batch_size: int = ENCODE_BATCH_SIZE) -> np.ndarray:
        """Embeddings of sequences made by :meth:`Preprocessor.embedding_sequence`, in the order given.

        The server preprocesses each request on its own threads and hands the model only these.
        """
        chunks = self._chunks(sorted(range(len(seqs)), key=lambda i: len(seqs[i])), batch_size)
        pad = self.backbone.ids.pad
        batches = (collate([seqs[i] for i in chunk], pad) for chunk in chunks)
        return self._embed(chunks, batches, len(seqs))

    @staticmethod
    def _chunks(order: list[int], batch_size: int) -> list[list[int]]:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    @torch.inference_mode()
    def _embed(self, chunks: list[list[int]], batches: Iterable[Batch | CocoaError], n: int,
               show_progress: bool = False) -> np.ndarray:
        """Row ``chunks[i]`` of the output is the embedding of ``batches[i]``, in eval mode."""
        model = self.backbone.model
        was_training = model.training
        model.eval()
        out = np.zeros((n, self.backbone.hidden_size), dtype=np.float32)
        bar = tqdm(total=n, disable=not show_progress, unit="item", desc="encode")
        try:
            for chunk, batch in zip(chunks, batches, strict=True):
                if isinstance(batch, CocoaError):
                    raise batch
                vectors = self.packing.embed(model, batch.to(self.device), self.protocol)
                out[chunk] = vectors.cpu().numpy()
                bar.update(len(chunk))
        finally:
            bar.close()
            model.train(was_training)
        return out

    def _batches(self, items: Sequence[Item], chunks: list[list[int]]) -> Iterable[Batch | CocoaError]:
        source = CollatedChunks(items, chunks, self.preprocessor, self.backbone.ids.pad)
        workers = min(self.num_workers, len(chunks) - 1)
        if workers < 1:
            return (source[i] for i in range(len(source)))
        loader = DataLoader(source, batch_size=None, num_workers=workers, collate_fn=to_arrays,
                            worker_init_fn=_one_thread, prefetch_factor=2)
        return (to_tensors(batch) for batch in loader)  # by value: see cocoa.core.by_value

    def fingerprint(self) -> str:
        """A stable hash of everything that makes an embedding: the weights (each tensor's shape, dtype,
        sum and first values), the model config, the attention kernel, the tokenizer, the image
        processor and the embedding spec (protocol included)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            model = self.backbone.model
            with torch.no_grad():
                for name, tensor in sorted(model.state_dict().items()):
                    flat = tensor.detach().flatten()
                    stats = (_bit_sum(flat), flat[:FINGERPRINT_VALUES].float().cpu().numpy().round(6).tolist())
                    h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{stats}".encode())
            config = _settings(model.config.to_dict())
            tokenizer = self.backbone.tokenizer
            vocab = (tokenizer.backend_tokenizer.to_str() if getattr(tokenizer, "is_fast", False)
                     else json.dumps(tokenizer.get_vocab(), sort_keys=True))
            processor = {k: v for k, v in self.backbone.image_processor.to_dict().items()
                         if k not in ("processor_class", "image_processor_type")}
            h.update(json.dumps({"spec": self.spec.embedding(), "config": config, "processor": processor,
                                 "attention_kernel": model.config._attn_implementation,
                                 "tokenizer": hashlib.sha256(vocab.encode()).hexdigest(), "vocab": len(tokenizer)},
                                sort_keys=True, default=str).encode())
            self._fingerprint = h.hexdigest()[:FINGERPRINT_CHARS]
        return self._fingerprint
