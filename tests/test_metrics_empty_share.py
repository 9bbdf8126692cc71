"""The empty share (null rejection): hand-made predictions with a known answer, the threshold edge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refavs.metrics import MetricResult, RefAVSMetrics

H = W = 8


def metrics_of(probs, masks, aggregation="dataset") -> RefAVSMetrics:
    m = RefAVSMetrics(aggregation)
    m.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(masks), logits=False)
    return m


def test_two_of_three_null_frames_rejected():
    probs, masks = np.zeros((1, 5, H, W), np.float32), np.zeros((1, 5, H, W), bool)
    masks[0, 3:, 2:5, 2:5] = True               # frames 3, 4 have an object; 0, 1, 2 are empty
    probs[0, 1, 0, 0] = 0.9                      # frame 1: one positive pixel, not rejected
    probs[0, 0] = 0.3                            # frame 0: below S's threshold everywhere: rejected
    probs[0, 3:] = 1.0                           # frames with an object do not count
    r = metrics_of(probs, masks).compute()
    assert r.n_frames_without_object == 3 and r.n_frames_with_object == 2
    assert r.empty_share == pytest.approx(2 / 3)
    assert r.to_dict()["empty_share"] == pytest.approx(2 / 3) and r.to_dict()["n_frames_without_object"] == 3


def test_probability_exactly_at_threshold_is_not_positive():
    probs, masks = np.full((1, 2, H, W), 0.5, np.float32), np.zeros((1, 2, H, W), bool)
    probs[0, 1, 4, 4] = np.nextafter(np.float32(0.5), np.float32(1))
    r = metrics_of(probs, masks).compute()
    assert r.empty_share == pytest.approx(0.5) and r.S == pytest.approx(math.sqrt(1 / (2 * H * W)))


def test_no_null_frame_gives_nan_and_json_none():
    probs, masks = np.zeros((1, 2, H, W), np.float32), np.ones((1, 2, H, W), bool)
    r = metrics_of(probs, masks).compute()
    assert math.isnan(r.empty_share) and r.n_frames_without_object == 0
    assert r.to_dict()["empty_share"] is None


def test_old_constructor_still_works():
    r = MetricResult(J=1.0, F=0.5, S=0.0, n_expressions=1, n_frames=10, n_frames_with_object=10)
    assert math.isnan(r.empty_share) and r.n_frames_without_object == 0 and r.aggregation == "dataset"


def test_groups_and_reference_aggregation_pool_the_empty_share():
    # 5 expressions of 2 frames, all null; expression i has i frames rejected (capped at 2)
    probs, masks = np.ones((5, 2, H, W), np.float32), np.zeros((5, 2, H, W), bool)
    for i, rejected in enumerate([0, 1, 2, 2, 1]):
        probs[i, :rejected] = 0.0
    whole = metrics_of(probs, masks)
    assert whole.compute().empty_share == pytest.approx(6 / 10)
    groups = whole.compute_groups({"a": [0, 1], "b": [2, 3, 4]})
    assert groups["a"].empty_share == pytest.approx(1 / 4) and groups["b"].empty_share == pytest.approx(5 / 6)
    assert groups["b"].n_frames_without_object == 6
    # reference aggregation (batches of 4 clips): pooled too, not the mean of the batches' shares
    ref = metrics_of(probs, masks, "reference").compute()
    assert ref.empty_share == pytest.approx(6 / 10) and ref.aggregation == "reference"
