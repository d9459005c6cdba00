"""Process-group setup for ``torchrun`` (NCCL on GPUs, gloo on CPUs), once per process.

The group lives until the process exits (an ``atexit`` hook destroys it), so stages run one
after another in one process (``cocoa run``) share it: destroying and re-making the group
inside one ``torchrun`` job can pair ranks up through stale rendezvous keys and hang.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(group: bool = False) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a single process otherwise.

    ``group`` makes a process group even for one process (FSDP shards over one), from an
    in-process store.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        torch.set_flush_denormal(True)  # denormal Adam states slow CPU steps down up to 20x
    if (world > 1 or group) and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if world > 1:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        atexit.register(_destroy)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
