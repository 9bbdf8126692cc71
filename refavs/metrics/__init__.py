"""The official Ref-AVS metrics J, F and S (``RefAVSMetrics``), vectorised, on CPU or GPU."""

from refavs.metrics.accumulator import AGGREGATIONS, MetricConfig, MetricResult, RefAVSMetrics
from refavs.metrics.frame_stats import f_curves, f_thresholds, iou_per_frame, threshold_counts

__all__ = ["AGGREGATIONS", "MetricConfig", "MetricResult", "RefAVSMetrics", "f_curves", "f_thresholds",
           "iou_per_frame", "threshold_counts"]
