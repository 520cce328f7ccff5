"""torchrun DDP plumbing: one process per device, gloo on CPU, NCCL on CUDA.

``torchrun --nproc_per_node N -m training finetune --config cfg.yaml`` sets RANK/WORLD_SIZE/
LOCAL_RANK/MASTER_ADDR/MASTER_PORT; without them everything degrades to a single process with the
same code path (a one-replica DistributedSampler), so single- and multi-process runs see the same
data order for the same seed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs, evaluates, checkpoints and exports."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool | None = None) -> DistInfo:
    """Join the process group described by the torchrun environment (no-op for a single process)."""
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if use_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP-wrap for multi-process runs (gradients are all-reduced, i.e. averaged, every step)."""
    if not info.enabled:
        return model
    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_sampler(dataset: Dataset, info: DistInfo, seed: int, shuffle: bool = True) -> DistributedSampler:
    """Each rank gets a disjoint, equally long shard of a permutation fixed by (seed, epoch)."""
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                              seed=seed, drop_last=False)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value on every rank (eval results, the early-stopping decision)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
