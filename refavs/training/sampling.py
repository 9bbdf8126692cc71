"""The order in which training expressions are seen: deterministic per (seed, epoch) and resumable.

Every process computes the same permutation of the training set for an epoch, pads it to a
multiple of ``world_size * batch_size`` by repeating its start (as ``DistributedSampler``),
and cuts it into optimiser steps of ``world_size * batch_size`` items; rank ``r`` takes the
``r``-th run of ``batch_size`` items of each step. So optimiser step ``k`` of 2 processes
with batch 1 sees the same expressions as step ``k`` of 1 process with batch 2, and a resumed
run skips exactly the micro-batches already done.

With ``groups`` (the expressions of each clip), the permutation is of clips, and each clip's
expressions follow one another, so a batch holds whole clips where the batch size allows:
EEMC then runs its pixel-level module once per clip (see :meth:`refavs.models.eemc.EEMC.forward`).
With ``per_group`` as well, an epoch takes at most that many expressions of each clip, a seeded
choice that changes from epoch to epoch (a dataset with more sentences per clip than a step needs).
"""

from __future__ import annotations

from typing import Sequence

import torch

SUBSAMPLE_SALT = 7_919
"""Added to the seed of the per-epoch choice within groups, so that it draws from another stream
than the epoch's order of the groups."""


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(num_items)`` that depends only on ``seed`` and ``epoch``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator).tolist()


def rank_batches(num_items: int, seed: int, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 groups: Sequence[Sequence[int]] | None = None, per_group: int | None = None) -> list[list[int]]:
    """This rank's micro-batches of an epoch, in order (every rank gets the same number).

    Args:
        groups: optional partition of ``range(num_items)`` (e.g. the expressions of each clip);
            the epoch then visits the groups in a seeded order, each group's items together.
        per_group: with ``groups``, take at most this many items of each group in an epoch, a
            seeded choice that differs from epoch to epoch (None: all of them).
    """
    if num_items < 1:
        raise ValueError("the training split is empty")
    if groups is None:
        order = epoch_order(num_items, seed, epoch)
    else:
        if sorted(i for g in groups for i in g) != list(range(num_items)):
            raise ValueError(f"groups must partition the {num_items} items")
        if per_group is not None:
            groups = subsample_groups(groups, per_group, seed, epoch)
        order = [i for g in epoch_order(len(groups), seed, epoch) for i in groups[g]]
    per_step = batch_size * world_size
    total = -(-len(order) // per_step) * per_step
    padded = (order * (-(-total // len(order))))[:total]
    return [padded[start + rank * batch_size: start + (rank + 1) * batch_size] for start in range(0, total, per_step)]


def subsample_groups(groups: Sequence[Sequence[int]], per_group: int, seed: int, epoch: int) -> list[list[int]]:
    """At most ``per_group`` items of each group, in their original order, chosen by a generator
    that depends only on ``seed`` and ``epoch``."""
    if per_group < 1:
        raise ValueError(f"per_group must be at least 1, got {per_group}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + SUBSAMPLE_SALT)
    picked = []
    for group in groups:
        if len(group) <= per_group:
            picked.append(list(group))
        else:
            keep = sorted(torch.randperm(len(group), generator=generator)[:per_group].tolist())
            picked.append([group[i] for i in keep])
    return picked


def clip_groups(clips: Sequence[str]) -> list[list[int]]:
    """Indices of equal clip ids, grouped, in order of first appearance."""
    index: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        index.setdefault(clip, []).append(i)
    return list(index.values())
