"""The order in which training clips are seen: deterministic per (seed, epoch) and resumable.

Every process computes the same permutation of the training set for an epoch, pads it to a
multiple of ``world_size * batch_size`` by repeating its start (as ``DistributedSampler``),
and takes every ``world_size``-th index from its rank. So optimiser step ``k`` of 2 processes
with batch 1 sees the same clips as step ``k`` of 1 process with batch 2, and a resumed run
skips exactly the micro-batches already done.
"""

from __future__ import annotations

import torch


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(num_items)`` that depends only on ``seed`` and ``epoch``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator).tolist()


def rank_batches(num_items: int, seed: int, epoch: int, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> list[list[int]]:
    """This rank's micro-batches of an epoch, in order (every rank gets the same number)."""
    if num_items < 1:
        raise ValueError("the training split is empty")
    order = epoch_order(num_items, seed, epoch)
    per_step = batch_size * world_size
    total = -(-num_items // per_step) * per_step
    padded = (order * (-(-total // num_items)))[:total]
    mine = padded[rank::world_size]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
