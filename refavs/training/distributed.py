"""One process or many: the process group from the environment ``torchrun`` or
``accelerate launch`` set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).

NCCL on GPUs, gloo on CPU. Without those variables the run is a single process and nothing
is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: processes in all.
        local_rank: rank on this machine (picks the GPU).
        device: the device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistEnv:
    """Initialise the process group when launched by torchrun / accelerate, and pick the device.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``; None picks ``cuda:<local rank>`` when CUDA is
            available, else the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        torch.distributed.barrier()


def broadcast_object(env: DistEnv, obj):
    """``obj`` of rank 0, on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(env: DistEnv, value: float) -> float:
    """The mean of a float over every rank."""
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    torch.distributed.all_reduce(t)
    return float(t) / env.world_size


def teardown(env: DistEnv) -> None:
    if env.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
