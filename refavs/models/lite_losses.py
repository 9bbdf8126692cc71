"""The training losses of the ``lite`` model (:mod:`refavs.models.lite`); weights: :class:`LiteLossConfig`.

:func:`lite_loss` sums the terms a batch has targets for:

- ``mask``: BCE + dice of the final mask logits against the target masks (with
  ``null_mask_loss`` off, the rows of null expressions are left out: :func:`null_expression_rows`);
- ``presence``: BCE of the per-frame presence score against "the target is in the frame";
- ``sounding``: BCE + dice of the stride-16 sounding-object maps against the ``SOUNDING`` target;
- ``ranks``: :func:`rank_loss` of the level and pitch rank maps against ``SOUND_RANKS``;
- ``levels``: :func:`rank_loss` of the level and pitch maps against ``SOUND_LEVELS``;
- ``target_seconds``: BCE of "the target sounds in second t" against ``TARGET_SECONDS``.

The extra targets are named as in :mod:`refavs.data.labels`; a term whose target, output or
weight is missing is left out.
"""

from __future__ import annotations

from typing import Mapping

import torch.nn.functional as F
from torch import Tensor

from refavs.data.labels import SOUND_LEVELS, SOUND_RANKS, SOUNDING, TARGET_SECONDS
from refavs.models.lite_config import LiteLossConfig
from refavs.models.readout import dice_loss, mask_loss

RANK_MIN_COVER = 0.5
"""A rank cell takes part in :func:`rank_loss` when at least this share of its pixels is labelled."""

COVER_FLOOR = 1e-6
"""Floor of a cell's labelled share when the pooled ranks are divided by it (cells with none)."""


def rank_loss(rank_logits: Tensor, ranks: Tensor) -> Tensor:
    """BCE of ``rank_logits [B, T, 2, g, g]`` against rank (or level) maps ``[B, T, 2, s, s]`` (values in
    [0, 1], -1 where no object sounds; see :mod:`refavs.synth.sound_ranks`), pooled to ``g`` over the
    labelled pixels; cells less than half labelled are left out. 0 when no cell is labelled."""
    g = rank_logits.shape[-1]
    ranks = ranks.to(rank_logits.dtype).flatten(0, 2)[:, None]
    known = (ranks >= 0).to(ranks.dtype)
    cover = F.adaptive_avg_pool2d(known, g)
    target = F.adaptive_avg_pool2d(ranks.clamp(min=0) * known, g) / cover.clamp(min=COVER_FLOOR)
    weight = (cover >= RANK_MIN_COVER).to(ranks.dtype).reshape(rank_logits.shape)
    losses = F.binary_cross_entropy_with_logits(rank_logits, target.reshape(rank_logits.shape), reduction="none")
    return (losses * weight).sum() / weight.sum().clamp(min=1.0)


def null_expression_rows(masks: Tensor, weights: LiteLossConfig) -> Tensor | None:
    """``[B]`` True for the rows whose target is empty in every frame (null expressions), when they
    are to be left out of the mask loss (``null_mask_loss`` off); None when every row takes part.
    Call it on the masks of every frame, before a training step keeps only some of them."""
    return None if weights.null_mask_loss else masks.flatten(1).amax(1) == 0


def lite_loss(weights: LiteLossConfig, masks: Tensor, targets: Mapping[str, Tensor], mask_logits: Tensor,
              presence_logits: Tensor | None = None, sounding_logits: Tensor | None = None,
              rank_logits: Tensor | None = None, level_logits: Tensor | None = None, seconds_logits: Tensor | None = None,
              null_rows: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the loss terms (see the module docstring), and each term as a float.

    Args:
        weights: the loss settings.
        masks: ``[B, k, S, S]`` target masks of the ``k`` frames the step kept.
        targets: the extra targets by name: ``SOUNDING [B, T, s, s]`` and ``SOUND_RANKS
            [B, T, 2, s, s]`` for every frame, ``TARGET_SECONDS [B, k]`` for the kept frames.
        mask_logits: ``[B, k, S, S]`` the model's final mask logits.
        presence_logits: ``[B, k]`` "the target is in the frame" logits, or None.
        sounding_logits: ``[B, T, g, g]`` sounding-object maps, or None.
        rank_logits: ``[B, T, 2, g, g]`` level and pitch rank maps, or None.
        level_logits: ``[B, T, 2, g, g]`` level and pitch maps (fixed scale), or None.
        seconds_logits: ``[B, k]`` "the target sounds in second t" logits, or None.
        null_rows: :func:`null_expression_rows` of the batch, or None.
    """
    w = weights
    sounding, target_seconds, sound_ranks = targets.get(SOUNDING), targets.get(TARGET_SECONDS), targets.get(SOUND_RANKS)
    keep = None if null_rows is None or not null_rows.any() else ~null_rows
    if keep is None:
        terms = {"mask": mask_loss(mask_logits, masks, w.bce_weight, w.dice_weight)}
    else:  # null rows teach the presence gate only
        terms = {"mask": mask_loss(mask_logits[keep], masks[keep], w.bce_weight, w.dice_weight)
                 if keep.any() else mask_logits.sum() * 0}
    if presence_logits is not None and w.presence_weight:
        present = (masks.flatten(2).amax(2) > 0).to(presence_logits.dtype)
        terms["presence"] = w.presence_weight * F.binary_cross_entropy_with_logits(presence_logits, present)
    if sounding_logits is not None and sounding is not None and w.sounding_weight:
        g = sounding_logits.shape[-1]
        target = F.adaptive_avg_pool2d(sounding.float().flatten(0, 1), g).reshape(sounding_logits.shape)
        logits = sounding_logits.to(target.dtype)
        terms["sounding"] = w.sounding_weight * (F.binary_cross_entropy_with_logits(logits, target)
                                                 + dice_loss(logits, target))
    if rank_logits is not None and sound_ranks is not None and w.rank_weight:
        terms["ranks"] = w.rank_weight * rank_loss(rank_logits, sound_ranks)
    sound_levels = targets.get(SOUND_LEVELS)
    if level_logits is not None and sound_levels is not None and w.level_weight:
        terms["levels"] = w.level_weight * rank_loss(level_logits, sound_levels)
    if seconds_logits is not None and target_seconds is not None and w.target_seconds_weight:
        terms["target_seconds"] = w.target_seconds_weight * F.binary_cross_entropy_with_logits(
            seconds_logits, target_seconds.to(seconds_logits.dtype))
    total = sum(terms.values())
    return total, {k: float(v.detach()) for k, v in terms.items()}
