"""Distributed data parallel training through torchrun: process group, ranks, barriers.

Launched as `torchrun --nproc_per_node=N -m facemarks train ...`, each rank takes every
N-th sample of the epoch's order (facemarks.data.samplers) and DistributedDataParallel
averages the gradients; rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def main_first(self, build):
        """`build()` on rank 0, then on the other ranks (e.g. a cache rank 0 writes and the
        others then open)."""
        result = build() if self.is_main else None
        self.barrier()
        return result if self.is_main else build()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def setup(device: str = "auto") -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=torch.device(device if device != "auto" else ("cuda" if use_cuda else "cpu")))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Distributed(rank, world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def teardown() -> None:
    """Leave the process group together: a rank that exits while another still talks to it
    can abort the other's communication threads."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
