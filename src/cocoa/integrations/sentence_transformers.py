"""A sentence-transformers module that embeds exactly as :meth:`cocoa.inference.embedder.Embedder.encode`.

``SentenceTransformer(path, trust_remote_code=True)`` on a cocoa checkpoint folder (one with
the files of :mod:`cocoa.integrations.st_layout`) builds one :class:`CocoaModule`. It keeps
cocoa's own pipeline: inputs become :class:`~cocoa.data.items.Item` rows (``prompt`` is
cocoa's instruction), sequences are built by the same preprocessor with the protocol's
embedding token at the end, the language model runs under the checkpoint's attention mode from
``cocoa.json`` (bidirectional or causal) through :meth:`cocoa.model.packing.Packing.embed`, and the output
is the L2-normalised final state at the EOS. ``trust_remote_code=True`` is how
sentence-transformers 6 allows any module class outside its own package, local folders
included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule

from cocoa.core.batch import Batch
from cocoa.core.errors import ConfigError
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.collate import Preprocessor, collate
from cocoa.inference.embedder import Input, to_item
from cocoa.integrations.st_layout import write_sentence_transformers_files
from cocoa.model.backbone import Backbone
from cocoa.model.packing import PADDED

#: ``model_kwargs`` this module honours (passed on to :meth:`Backbone.load`).
MODEL_KWARGS = frozenset({"dtype", "attn_implementation"})


class CocoaModule(InputModule):
    """The whole cocoa embedding model as the first (and only) sentence-transformers module."""

    save_in_root = True

    def __init__(self, model_name_or_path: str | Path, dtype: torch.dtype | str | None = None,
                 attn_implementation: str = "sdpa") -> None:
        super().__init__()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.backbone = Backbone.load(model_name_or_path, dtype=dtype, attn_implementation=attn_implementation)
        self.model = self.backbone.model
        self.tokenizer = self.backbone.tokenizer
        self.spec = EmbeddingSpec.load(model_name_or_path)
        self.preprocessor = Preprocessor(self.backbone, self.spec.max_len, self.spec.protocol)
        self.max_seq_length = self.spec.max_len

    @property
    def modalities(self) -> list[Any]:
        """Texts, images and both; ``message`` is how sentence-transformers names a batch mixing them.

        A chat-style message (``role``/``content``) is not an input cocoa knows and fails in
        :func:`~cocoa.inference.embedder.to_item` with an error naming the input types it takes.
        """
        return ["text", "image", ("image", "text"), "message"]

    def preprocess(self, inputs: Sequence[Input], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The collated batch of ``inputs`` (``prompt`` is prepended as cocoa's instruction)."""
        items = [to_item(value, prompt, i) for i, value in enumerate(inputs)]
        batch = collate([self.preprocessor.embedding_sequence(item) for item in items], self.backbone.ids.pad)
        return {f.name: getattr(batch, f.name) for f in fields(batch) if getattr(batch, f.name) is not None}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        batch = Batch(**{f.name: features[f.name] for f in fields(Batch) if f.name in features})
        features["sentence_embedding"] = PADDED.embed(self.model, batch, self.spec.protocol)
        return features

    def get_embedding_dimension(self) -> int:
        return self.backbone.hidden_size

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write the checkpoint folder (weights, tokenizer, image processor, ``cocoa.json``)."""
        self.backbone.save(output_path)
        self.spec.save(output_path)
        write_sentence_transformers_files(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", model_kwargs: dict[str, Any] | None = None,
             processor_kwargs: dict[str, Any] | None = None, config_kwargs: dict[str, Any] | None = None,
             backend: str = "torch", **kwargs: Any) -> CocoaModule:
        """Load from a local checkpoint folder; ``model_kwargs`` may set ``dtype`` and ``attn_implementation``.

        The processor and config come from the checkpoint as cocoa saved them, so
        ``processor_kwargs``, ``config_kwargs`` and backends other than torch are refused;
        the other keyword arguments are about fetching from the Hub, which a local folder needs none of.
        """
        folder = Path(model_name_or_path) / subfolder
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a local cocoa checkpoint folder")
        if processor_kwargs or config_kwargs or backend != "torch":
            raise ConfigError("a cocoa checkpoint takes no processor_kwargs or config_kwargs and runs on the torch "
                              f"backend only (got processor_kwargs={processor_kwargs}, config_kwargs={config_kwargs}, "
                              f"backend={backend!r})")
        options = dict(model_kwargs or {})
        unknown = set(options) - MODEL_KWARGS
        if unknown:
            raise ConfigError(f"model_kwargs {sorted(unknown)} are not used by cocoa; it takes {sorted(MODEL_KWARGS)}")
        return cls(folder, **options)
