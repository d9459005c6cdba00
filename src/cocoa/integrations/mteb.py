"""An mteb encoder for a cocoa checkpoint, so mteb's image (and text) tasks run on it.

mteb hands :meth:`CocoaMtebEncoder.encode` a data loader of batches with ``text`` and/or
``image`` columns; every row becomes one cocoa input and goes through
:meth:`cocoa.inference.embedder.Embedder.encode`, so mteb scores exactly the vectors the rest of cocoa
produces. The task's instruction (mteb's prompt for the task and prompt type) is used as
cocoa's instruction for queries and single-sided tasks, never for documents.

    import mteb
    from cocoa.integrations.mteb import CocoaMtebEncoder

    model = CocoaMtebEncoder("runs/mini/3-contrastive/model")
    mteb.evaluate(model, mteb.get_tasks(tasks=["CIFAR10"]))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.similarity_functions import ScoringFunction
from mteb.types import PromptType
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.core.matryoshka import check_dim
from cocoa.inference.embedder import Embedder, Input

#: The encoder batch size when mteb's ``encode_kwargs`` set none.
DEFAULT_BATCH_SIZE = 32


def batch_inputs(batch: Mapping[str, Any], start: int) -> list[Input]:
    """The rows of one mteb batch as cocoa inputs (``start`` numbers them in errors)."""
    texts, images = batch.get("text"), batch.get("image")
    if texts is None and images is None:
        raise DataError(f"mteb batch has neither a text nor an image column (columns: {sorted(batch)})", row=start)
    size = len(texts if texts is not None else images)
    rows: list[Input] = []
    for i in range(size):
        image = images[i] if images is not None else None
        if image is not None and not isinstance(image, Image.Image):
            raise DataError(f"cocoa embeds one PIL image per input, got {type(image).__name__}", row=start + i,
                            field="image")
        rows.append({"text": texts[i] if texts is not None else "", "image": image})
    return rows


class CocoaMtebEncoder(AbsEncoder):
    """mteb's encoder interface over :class:`Embedder`; ``dim`` picks a Matryoshka dim."""

    def __init__(self, model_name: str | Path, revision: str | None = None, *, device: str | None = None,
                 dim: int | None = None) -> None:
        self.model = Embedder.from_pretrained(model_name, device=device)
        self.dim = None if dim is None else check_dim(dim, self.model.dims)
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": f"cocoa/{Path(model_name).resolve().name}", "revision": revision or self.model.fingerprint,
            "embed_dim": self.dim or self.model.dim, "modalities": ["image", "text"],
            "framework": ["PyTorch"], "similarity_fn_name": ScoringFunction.COSINE, "use_instructions": True,
            "max_tokens": self.model.encoder.spec.max_len,
            "n_parameters": self.model.encoder.backbone.num_parameters()})

    def instruction(self, task_metadata: Any, prompt_type: PromptType | None) -> str | None:
        """mteb's instruction for the task, or ``None`` on the document side of a retrieval task."""
        if prompt_type == PromptType.document:
            return None
        return self.get_task_instruction(task_metadata, prompt_type) or None

    def encode(self, inputs: Iterable[Mapping[str, Any]], *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        """Embeddings of every row of ``inputs``; honours ``batch_size`` and ``show_progress_bar``."""
        rows: list[Input] = []
        for batch in inputs:
            rows.extend(batch_inputs(batch, len(rows)))
        return self.encode_rows(rows, self.instruction(task_metadata, prompt_type),
                                batch_size=kwargs.get("batch_size") or DEFAULT_BATCH_SIZE,
                                show_progress=bool(kwargs.get("show_progress_bar", False)))

    def encode_rows(self, rows: Sequence[Input], instruction: str | None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                    show_progress: bool = False) -> np.ndarray:
        """Embeddings of cocoa inputs at the chosen width."""
        return self.model.encode(rows, instruction=instruction, batch_size=batch_size, show_progress=show_progress,
                                 dim=self.dim)
