"""J, F and S written straight from the definition: a loop over frames and thresholds.

Slow on purpose and kept beside the vectorised accumulator as its yardstick: the tests and
``benchmarks/metrics.py`` check both agree. Not used by the toolkit otherwise.
"""

from __future__ import annotations

import math

import torch

from refavs.metrics.accumulator import MetricConfig
from refavs.metrics.frame_stats import f_thresholds


def naive_scores(probs: torch.Tensor, masks: torch.Tensor, config: MetricConfig | None = None
                 ) -> tuple[float, float, float]:
    """Dataset-aggregated J, F, S of ``[N, H, W]`` probabilities and masks, one frame at a time."""
    cfg = config or MetricConfig()
    thresholds = f_thresholds(cfg.num_thresholds)
    j_total, f_total, n_obj, positive, pixels = 0.0, torch.zeros(cfg.num_thresholds, dtype=torch.float64), 0, 0, 0
    for p, g in zip(probs.float(), masks.bool()):
        pred = p > cfg.j_threshold
        if g.sum() == 0:
            j_total += float((~pred).sum()) / g.numel()
        else:
            j_total += float((pred & g).sum()) / float((pred | g).sum())
            curve = torch.zeros(cfg.num_thresholds, dtype=torch.float64)
            for k in range(cfg.num_thresholds):
                above = p >= thresholds[k]
                tp = float((above & g).sum())
                precision = tp / (float(above.sum()) + 1e-20)
                recall = tp / (float(g.sum()) + 1e-20)
                denominator = cfg.beta2 * precision + recall
                curve[k] = 0.0 if denominator == 0 else (1 + cfg.beta2) * precision * recall / denominator
            f_total += curve
            n_obj += 1
        positive += int((p > cfg.s_threshold).sum())
        pixels += p.numel()
    f = float((f_total / n_obj).max()) if n_obj else 0.0
    return j_total / len(probs), f, math.sqrt(positive / pixels)
