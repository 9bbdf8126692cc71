"""Per-frame statistics behind J, F and S, vectorised over frames and thresholds.

All functions take ``probs`` (float probabilities in [0, 1]) and ``gt`` (bool or 0/1) shaped
``[N, H, W]`` (N frames) on any device, and return one value (or one row) per frame.

F needs, for every frame and each of the 255 thresholds ``t_k`` (``linspace(0, 1 - 1e-10, 255)``
in float32, as the reference), the number of pixels with ``p >= t_k`` and how many of them are
ground truth. Instead of 255 comparisons per pixel, :func:`threshold_counts` gives each pixel
its bucket ``b(p) = #{k : t_k <= p}`` (one rounding and one comparison with the reference's own
float32 thresholds, see :func:`threshold_buckets`) and histograms the buckets per frame with one
``bincount``; a reverse cumulative sum then yields the counts at every threshold, equal to those
of the per-threshold loop bit for bit.
"""

from __future__ import annotations

import torch

NUM_THRESHOLDS = 255
"""Thresholds of the F curve (the reference's ``pr_num``)."""

def f_thresholds(num: int = NUM_THRESHOLDS, device: torch.device | str | None = None) -> torch.Tensor:
    """The reference's thresholds: ``torch.linspace(0, 1 - 1e-10, num)`` in float32."""
    return torch.linspace(0, 1 - 1e-10, num, device=device, dtype=torch.float32)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def count_per_frame(mask: torch.Tensor) -> torch.Tensor:
    """True pixels of each frame of a bool ``[N, ...]`` tensor, int64 ``[N]``.

    Sums a uint8 view with an int32 accumulator: several times faster on CPU than summing
    bools (exact up to 2**31 pixels per frame).
    """
    return _flat(mask).view(torch.uint8).sum(1, dtype=torch.int32).long()


def iou_per_frame(probs: torch.Tensor, gt: torch.Tensor, threshold: float) -> torch.Tensor:
    """J of each frame: ``p > threshold`` against ``gt``, float64 ``[N]``.

    With an empty ground truth the IoU is the fraction of pixels predicted as background;
    otherwise ``|p AND g| / |p OR g|``.
    """
    pred, gt = _flat(probs) > threshold, _flat(gt).bool()
    inter, predicted, positives = count_per_frame(pred & gt), count_per_frame(pred), count_per_frame(gt)
    pixels = pred.shape[1]
    empty = positives == 0
    num = torch.where(empty, pixels - predicted, inter).double()
    den = torch.where(empty, torch.full_like(inter, pixels), predicted + positives - inter).double()
    return num / den


def positive_pixels(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels with ``p > threshold`` per frame, int64 ``[N]`` (the numerator of S)."""
    return count_per_frame(_flat(probs) > threshold)


def threshold_buckets(probs: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``#{k : thresholds[k] <= p}`` for every pixel, int64, same shape as ``probs``.

    ``thresholds`` must be the evenly spaced grid of :func:`f_thresholds` (``K`` values from 0
    to ~1). With ``k = round(p (K - 1))`` clamped to the grid, ``p`` lies strictly between
    ``thresholds[k - 1]`` and ``thresholds[k + 1]`` (rounding and the grid's own float error are
    far below half a step), so the bucket is ``k + (p >= thresholds[k])``: exact, one gather.
    """
    p = probs.to(torch.float32)
    nearest = (p * (thresholds.numel() - 1)).round_().clamp_(0, thresholds.numel() - 1).long()
    return nearest.add_(p >= thresholds.index_select(0, nearest.view(-1)).view_as(p))


def threshold_counts(probs: torch.Tensor, gt: torch.Tensor,
                     thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every frame and threshold: pixels with ``p >= t`` and ground-truth pixels among them.

    Returns two int64 ``[N, K]`` tensors ``(predicted, true_positive)``.
    """
    n, k = probs.shape[0], thresholds.numel()
    bins = 2 * (k + 1)                                                  # (bucket, is ground truth)
    keys = _flat(threshold_buckets(probs, thresholds)).mul_(2).add_(_flat(gt).bool())
    keys.add_(torch.arange(n, device=keys.device)[:, None] * bins)      # one histogram per frame
    hist = torch.bincount(keys.view(-1), minlength=n * bins).view(n, k + 1, 2)
    # pixels with p >= t_j are those whose bucket is at least j + 1
    above = hist.flip(1).cumsum(1).flip(1)[:, 1:]                      # [N, K, 2]
    return above.sum(2), above[..., 1]


def f_curves(probs: torch.Tensor, gt: torch.Tensor, thresholds: torch.Tensor,
             beta2: float = 0.3) -> torch.Tensor:
    """The F-measure at every threshold, float64 ``[N, K]`` (meaningful for non-empty ``gt``).

    ``precision = tp / (predicted + 1e-20)``, ``recall = tp / (|gt| + 1e-20)`` and
    ``F = (1 + b2) P R / (b2 P + R)`` with ``0/0 -> 0``, as the reference.
    """
    predicted, tp = threshold_counts(probs, gt, thresholds)
    positives = count_per_frame(_flat(gt).bool())
    tp, predicted = tp.double(), predicted.double()
    precision = tp / (predicted + 1e-20)
    recall = tp / (positives.double()[:, None] + 1e-20)
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return torch.nan_to_num(f, nan=0.0)
