"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for full fine-tuning.

Every decoder layer and every vision block is one FSDP unit; the objective is the root unit
and holds the rest (token embeddings, LM head, final norm, the vision patch embedding and
merger, a stage's own head such as the MAE decoder). A unit's weights are all-gathered just
before it runs and freed after it, its gradients are reduce-scattered (averaged, as DDP
does) into the rank's shard, and the optimiser holds only the shards. With bf16, layers and
blocks gather bf16 weights and reduce gradients in fp32 (fp32 sharded master weights); the
root keeps fp32 weights and its ops (embeddings, norms, heads) run under autocast, as with DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from cocoa.model.forward import vl_model


def shard(objective: nn.Module, device: torch.device, compute_dtype: torch.dtype | None) -> None:
    """Shard ``objective`` (whose ``model`` is the backbone) in place over all ranks, onto ``device``."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    vl = vl_model(objective.model)
    for unit in (*vl.language_model.layers, *vl.visual.blocks):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(objective, mesh=mesh)
    # a weight that one rank's batch leaves unused (the MAE head without images) still gets a zero
    # gradient there, so that every rank reduce-scatters the same tensors
    objective.set_reduce_scatter_unused_params(True)  # type: ignore[operator]


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(m, FSDPModule) for m in module.modules())
