"""Objects sent from DataLoader worker processes by value, never through shared memory.

A torch tensor that a worker puts on its result queue is handed to the parent as shared memory,
over a Unix socket created under ``TMPDIR`` (both of torch's sharing strategies use one). A
temporary path longer than a socket address allows (about 107 bytes) makes that fail inside the
worker's feeder thread, where the error is printed and lost, and the parent waits forever.
:func:`to_arrays` turns every tensor of a batch (in dataclasses, dicts, lists and tuples, at any
depth) into a numpy array that is pickled by value through the worker's pipe; :func:`to_tensors`
restores the tensors on the parent's side without a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import torch

#: The marker of a tensor sent as an array (with its dtype, for bfloat16, which numpy lacks).
_TENSOR = "__cocoa_tensor__"


def to_arrays(obj: Any) -> Any:
    """``obj`` with every tensor replaced by a picklable ``(marker, array, dtype)`` triple."""
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.bfloat16:
            return (_TENSOR, obj.detach().cpu().view(torch.int16).numpy(), "bfloat16")
        return (_TENSOR, obj.detach().cpu().numpy(), "")
    return _rebuilt(obj, to_arrays)


def to_tensors(obj: Any) -> Any:
    """The inverse of :func:`to_arrays` (tensors share the arrays' memory)."""
    if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == _TENSOR and isinstance(obj[1], np.ndarray):
        tensor = torch.from_numpy(obj[1])
        return tensor.view(torch.bfloat16) if obj[2] == "bfloat16" else tensor
    return _rebuilt(obj, to_tensors)


def _rebuilt(obj: Any, convert: Callable[[Any], Any]) -> Any:
    """``obj`` with ``convert`` applied to what it holds: a dataclass field by field (every field, set on a
    copy, so ``__post_init__`` does not run again), a dict, a list, a tuple or a named tuple."""
    if is_dataclass(obj) and not isinstance(obj, type):
        copied = copy.copy(obj)
        for f in fields(obj):
            object.__setattr__(copied, f.name, convert(getattr(obj, f.name)))
        return copied
    if isinstance(obj, dict):
        return {key: convert(value) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(convert(value) for value in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(convert(value) for value in obj)
    return obj
