"""The encoder an evaluation runs: a checkpoint under a protocol, with its frames, packing and workers.

``cocoa eval`` and the evaluation that ends ``cocoa run`` both build it here, from the same
settings, so a pipeline evaluates a model exactly as the command does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cocoa.core.protocol import Protocol
    from cocoa.evaluate.runner import ItemEncoder


def load_encoder(model_dir: str | Path, workers: int = 0, protocol: Protocol | str | None = None,
                 frames: int | None = None, pack_tokens: int | None = None) -> ItemEncoder:
    """The model in ``model_dir`` as an evaluation encoder.

    Args:
        model_dir: A checkpoint folder or a Hub id.
        workers: Preprocessing processes (0: in this process).
        protocol: A :class:`Protocol` or a preset's name; default: the one the checkpoint records.
        frames: Frames sampled per video, replacing the protocol's.
        pack_tokens: Pack each batch into rows of this many tokens (``None``: padded batches;
            :class:`~cocoa.model.packing.Packing`).

    Returns:
        A :class:`~cocoa.inference.batch_encoder.BatchEncoder`; under ``torchrun`` it joins the process
        group and sits on the rank's own device. The model stack is imported only here.
    """
    from cocoa.core.distributed import setup
    from cocoa.core.protocol import get_protocol
    from cocoa.core.spec import EmbeddingSpec
    from cocoa.inference.batch_encoder import BatchEncoder

    chosen = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if frames is not None:
        base = chosen or EmbeddingSpec.load(model_dir).protocol
        chosen = base.replace(video=dataclasses.replace(base.video, frames=frames))
    return BatchEncoder.from_pretrained(model_dir, device=setup().device, num_workers=workers, protocol=chosen,
                                        pack_tokens=pack_tokens)
