"""J, F and S of Ref-AVS as an accumulator: ``update`` per batch, ``compute`` once.

Definitions (section 5 of the reference page), on 256x256 masks, per frame:

- J: ``p > 0.4`` against the ground truth; a frame with empty ground truth scores the share
  of pixels predicted as background, any other ``|p AND g| / |p OR g|``.
- F: precision and recall at 255 thresholds (``p >= t``), ``F = 1.3 P R / (0.3 P + R)``;
  only frames with non-empty ground truth count; the F curves are averaged, then the
  maximum over thresholds is taken.
- S: ``sqrt(share of pixels with p > 0.5)``, the headline of the null split (lower is better).
- empty share (null rejection): among the frames whose ground truth is empty, the share whose
  prediction is empty too (no pixel with ``p > 0.5``, the threshold of S); NaN without such
  frames. Higher is better.

Aggregation:

- ``dataset`` (default): J is the mean over every frame of the split, F the maximum of the
  mean F curve over every frame with an object, S over every pixel of the split. It does not
  depend on batch size or order.
- ``reference``: the reference code's numbers. Expressions are taken in update order (the
  metadata order) in batches of ``batch_clips`` (4 clips = 40 frames); each batch gets J (mean
  over its frames), F (maximum of its mean F curve; 0 when none of its frames has an object)
  and S (over its pixels), and the batch values are averaged. The empty share, which the
  reference does not compute, stays pooled over the whole set under both aggregations.

The accumulator keeps a few numbers per expression (sums, counts, a 255-long F sum), so
``compute_groups`` can score any subset (e.g. per cue type) without seeing the masks again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch

from refavs.metrics.frame_stats import (NUM_THRESHOLDS, count_per_frame, f_curves, f_thresholds, iou_per_frame,
                                        positive_pixels)

Aggregation = Literal["dataset", "reference"]
AGGREGATIONS: tuple[str, ...] = ("dataset", "reference")


@dataclass(frozen=True)
class MetricConfig:
    """The metrics' constants, as the reference sets them.

    Attributes:
        j_threshold: a pixel is foreground for J when its probability exceeds this.
        s_threshold: a pixel counts for S when its probability exceeds this.
        num_thresholds: thresholds of the F curve, evenly from 0 to 1 - 1e-10.
        beta2: the F-measure's beta squared (precision weighted more than recall).
        batch_clips: clips per batch under ``reference`` aggregation (the reference's eval batch).
        chunk_frames: frames processed at once by ``update`` (bounds temporary memory).
    """

    j_threshold: float = 0.4
    s_threshold: float = 0.5
    num_thresholds: int = NUM_THRESHOLDS
    beta2: float = 0.3
    batch_clips: int = 4
    chunk_frames: int = 64


@dataclass(frozen=True)
class MetricResult:
    """J, F and S over a set of expressions.

    Attributes:
        J: mean IoU in [0, 1] (higher is better).
        F: F-measure in [0, 1] (higher is better); 0 when no frame has an object.
        S: sqrt of the share of predicted pixels in [0, 1] (null split; lower is better).
        n_expressions: expressions scored.
        n_frames: frames scored.
        n_frames_with_object: frames whose ground truth is not empty (the frames F uses).
        aggregation: ``dataset`` or ``reference``.
        empty_share: among the frames whose ground truth is empty, the share predicted empty
            (no pixel with ``p > s_threshold``); NaN when there is no such frame (higher is
            better). Pooled over the frames under both aggregations.
        n_frames_without_object: frames whose ground truth is empty (the frames the empty share uses).
    """

    J: float
    F: float
    S: float
    n_expressions: int
    n_frames: int
    n_frames_with_object: int
    aggregation: str = "dataset"
    empty_share: float = math.nan
    n_frames_without_object: int = 0

    def to_dict(self) -> dict:
        """The numbers as a JSON-ready dict (an undefined empty share is ``None``)."""
        return {"J": self.J, "F": self.F, "S": self.S, "n_expressions": self.n_expressions,
                "n_frames": self.n_frames, "n_frames_with_object": self.n_frames_with_object,
                "empty_share": None if math.isnan(self.empty_share) else self.empty_share,
                "n_frames_without_object": self.n_frames_without_object}


class RefAVSMetrics:
    """Accumulates J, F and S over expressions (clips) of one split.

    Example::

        metrics = RefAVSMetrics()
        for batch in loader:
            metrics.update(model_logits, batch.masks)      # [B, T, 256, 256] each
        result = metrics.compute()                          # MetricResult(J=..., F=..., S=...)

    Args:
        aggregation: ``dataset`` (default) or ``reference`` (see the module docstring).
        config: thresholds and batch size; the defaults are the reference's.
    """

    def __init__(self, aggregation: Aggregation = "dataset", config: MetricConfig | None = None):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        self.aggregation = aggregation
        self.config = config or MetricConfig()
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._parts: list[dict[str, torch.Tensor]] = []

    def __len__(self) -> int:
        """Expressions accumulated so far."""
        return sum(int(p["frames"].shape[0]) for p in self._parts)

    @torch.no_grad()
    def update(self, preds: torch.Tensor, masks: torch.Tensor, logits: bool = True) -> None:
        """Add a batch of expressions.

        Args:
            preds: ``[B, T, H, W]`` mask logits (``logits=True``, sigmoid applied here) or
                probabilities in [0, 1] (``logits=False``); a ``[T, H, W]`` tensor is one expression.
            masks: ground truth of the same shape, bool or 0/1.
        """
        if preds.dim() == 3:
            preds, masks = preds[None], masks[None]
        if preds.dim() != 4 or preds.shape != masks.shape:
            raise ValueError(f"preds and masks must both be [B, T, H, W] of one shape, got "
                             f"{tuple(preds.shape)} and {tuple(masks.shape)}")
        cfg = self.config
        b, t = preds.shape[:2]
        probs = preds.float().sigmoid() if logits else preds.float()
        probs, gt = probs.reshape(b * t, *probs.shape[2:]), masks.reshape(b * t, *masks.shape[2:]).bool()
        thresholds = f_thresholds(cfg.num_thresholds, probs.device)
        j, pos, obj, f = [], [], [], []
        for start in range(0, b * t, cfg.chunk_frames):
            p, g = probs[start:start + cfg.chunk_frames], gt[start:start + cfg.chunk_frames]
            has_object = count_per_frame(g) > 0
            j.append(iou_per_frame(p, g, cfg.j_threshold))
            pos.append(positive_pixels(p, cfg.s_threshold))
            obj.append(has_object)
            curves = torch.zeros(p.shape[0], cfg.num_thresholds, dtype=torch.float64, device=p.device)
            if has_object.any():
                curves[has_object] = f_curves(p[has_object], g[has_object], thresholds, cfg.beta2)
            f.append(curves)
        per_frame = {"j": torch.cat(j), "pos": torch.cat(pos), "obj": torch.cat(obj), "f": torch.cat(f)}
        rejected = ~per_frame["obj"] & (per_frame["pos"] == 0)          # empty truth, empty prediction
        self._parts.append({
            "j": per_frame["j"].view(b, t).sum(1).cpu(),
            "frames": torch.full((b,), t, dtype=torch.int64),
            "f": per_frame["f"].view(b, t, -1).sum(1).cpu(),
            "obj": per_frame["obj"].view(b, t).sum(1).cpu(),
            "pos": per_frame["pos"].view(b, t).sum(1).cpu(),
            "pixels": torch.full((b,), t * probs[0].numel(), dtype=torch.int64),
            "rejected": rejected.view(b, t).sum(1).cpu(),
        })

    def _stats(self, indices: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        if not self._parts:
            raise ValueError("no expression was accumulated: call update() first")
        stats = {k: torch.cat([p[k] for p in self._parts]) for k in self._parts[0]}
        if indices is not None:
            index = torch.as_tensor(list(indices), dtype=torch.long)
            if index.numel() and (index.min() < 0 or index.max() >= stats["frames"].shape[0]):
                raise IndexError(f"expression index out of range 0..{stats['frames'].shape[0] - 1}")
            stats = {k: v[index] for k, v in stats.items()}
        return stats

    @staticmethod
    def _score(stats: Mapping[str, torch.Tensor]) -> tuple[float, float, float]:
        """J, F, S of one group of expressions pooled per frame."""
        frames, obj = int(stats["frames"].sum()), int(stats["obj"].sum())
        j = float(stats["j"].sum()) / frames
        f = float((stats["f"].sum(0) / obj).max()) if obj else 0.0
        s = math.sqrt(int(stats["pos"].sum()) / int(stats["pixels"].sum()))
        return j, f, s

    def _result(self, stats: Mapping[str, torch.Tensor]) -> MetricResult:
        n = int(stats["frames"].shape[0])
        if n == 0:
            raise ValueError("cannot score an empty set of expressions")
        n_frames, n_obj = int(stats["frames"].sum()), int(stats["obj"].sum())
        n_empty = n_frames - n_obj
        empty_share = int(stats["rejected"].sum()) / n_empty if n_empty else math.nan
        if self.aggregation == "dataset":
            j, f, s = self._score(stats)
        else:
            size = self.config.batch_clips
            batches = [self._score({k: v[i:i + size] for k, v in stats.items()}) for i in range(0, n, size)]
            j, f, s = (sum(values) / len(batches) for values in zip(*batches))
        return MetricResult(J=j, F=f, S=s, n_expressions=n, n_frames=n_frames, n_frames_with_object=n_obj,
                            aggregation=self.aggregation, empty_share=empty_share, n_frames_without_object=n_empty)

    def compute(self) -> MetricResult:
        """J, F, S and the empty share over everything accumulated."""
        return self._result(self._stats())

    def compute_groups(self, groups: Mapping[str, Sequence[int]]) -> dict[str, MetricResult]:
        """J, F, S and the empty share of subsets of expressions, given by their positions in update order.

        Empty groups are left out. Under ``reference`` aggregation each subset is batched on
        its own, in update order.
        """
        return {name: self._result(self._stats(idx)) for name, idx in groups.items() if len(idx)}
