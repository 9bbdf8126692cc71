"""The official metrics: hand-computed cases, reference aggregation, properties, loop agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refavs.metrics import MetricConfig, RefAVSMetrics, f_thresholds, threshold_counts
from refavs.metrics.naive import naive_scores

H = W = 8


def score(probs, masks, aggregation="dataset"):
    m = RefAVSMetrics(aggregation)
    m.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(masks), logits=False)
    return m.compute()


def frames(n=1):
    return np.zeros((1, n, H, W), dtype=np.float32), np.zeros((1, n, H, W), dtype=bool)


def test_empty_truth_empty_prediction():
    p, g = frames()
    r = score(p, g)
    assert (r.J, r.F, r.S) == (1.0, 0.0, 0.0)
    assert r.n_frames_with_object == 0 and r.n_frames == 1


def test_empty_truth_partial_prediction():
    p, g = frames()
    p[0, 0, :4, :4] = 1.0   # a quarter of the frame
    r = score(p, g)
    assert r.J == pytest.approx(0.75) and r.S == pytest.approx(0.5) and r.F == 0.0


def test_full_prediction_on_half_object():
    p, g = frames()
    p[:] = 1.0
    g[0, 0, :, :4] = True
    r = score(p, g)
    assert r.J == pytest.approx(0.5)
    # every threshold keeps every pixel: P = 0.5, R = 1
    assert r.F == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1.0))
    assert r.S == pytest.approx(1.0)


def test_known_iou_and_f():
    p, g = frames()
    g[0, 0, 2:6, 0:4] = True
    p[0, 0, 2:6, 2:6] = 1.0          # overlap 8 px, union 24 px
    r = score(p, g)
    assert r.J == pytest.approx(8 / 24)
    # threshold 0 keeps all 64 px (P = 16/64, R = 1); every other threshold the box (P = R = 0.5)
    f_at_zero = 1.3 * 0.25 / (0.3 * 0.25 + 1.0)
    f_box = 1.3 * 0.25 / (0.3 * 0.5 + 0.5)
    assert r.F == pytest.approx(max(f_at_zero, f_box))
    assert r.S == pytest.approx(math.sqrt(16 / 64))


def test_empty_prediction_on_an_object():
    p, g = frames()
    g[0, 0, :2, :] = True             # 16 of 64 px
    r = score(p, g)
    assert r.J == 0.0
    # only threshold 0 selects pixels (p >= 0): P = 1/4, R = 1
    assert r.F == pytest.approx(1.3 * 0.25 / (0.3 * 0.25 + 1.0))


def test_thresholds_are_strict_and_logits_pass_through_sigmoid():
    p, g = frames()
    p[:] = 0.4                        # J needs p > 0.4
    assert score(p, g).J == 1.0
    p[:] = 0.5                        # S needs p > 0.5
    r = score(p, g)
    assert r.J == 0.0 and r.S == 0.0
    m = RefAVSMetrics()
    m.update(torch.zeros(1, 1, H, W), torch.zeros(1, 1, H, W, dtype=torch.bool))   # logit 0 -> p = 0.5
    r = m.compute()
    assert r.J == 0.0 and r.S == 0.0


def test_reference_aggregation_batches_of_four_clips():
    # 5 clips of 2 frames: batches [0..3] and [4]; clip 4 has no object, so its batch's F is 0
    rng = np.random.default_rng(0)
    probs = rng.random((5, 2, H, W)).astype(np.float32)
    masks = np.zeros((5, 2, H, W), dtype=bool)
    masks[:4, :, 2:6, 2:6] = True
    ref = score(probs, masks, "reference")
    first, second = score(probs[:4], masks[:4]), score(probs[4:], masks[4:])
    assert second.F == 0.0
    assert ref.J == pytest.approx((first.J + second.J) / 2)
    assert ref.F == pytest.approx((first.F + 0.0) / 2)
    assert ref.S == pytest.approx((first.S + second.S) / 2)
    dataset = score(probs, masks)
    assert dataset.F == pytest.approx(first.F)       # frames without object do not count
    assert ref.F < dataset.F


def test_compute_groups_and_incremental_updates():
    rng = np.random.default_rng(1)
    probs = rng.random((6, 3, H, W)).astype(np.float32)
    masks = rng.random((6, 3, H, W)) > 0.6
    whole = RefAVSMetrics()
    for i in range(0, 6, 2):
        whole.update(torch.from_numpy(probs[i:i + 2]), torch.from_numpy(masks[i:i + 2]), logits=False)
    assert len(whole) == 6
    assert whole.compute() == score(probs, masks)
    groups = whole.compute_groups({"odd": [1, 3, 5], "none": []})
    assert set(groups) == {"odd"}
    assert groups["odd"] == score(probs[1::2], masks[1::2])


def test_bad_input():
    with pytest.raises(ValueError, match="aggregation"):
        RefAVSMetrics("batch")
    with pytest.raises(ValueError, match="one shape"):
        RefAVSMetrics().update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match="update"):
        RefAVSMetrics().compute()


def test_counts_match_the_threshold_loop_on_grid_values():
    """Probabilities exactly on (or next to) the threshold grid, and 8-bit PNG values."""
    thresholds = f_thresholds()
    grid = thresholds.repeat(4)
    neighbours = torch.cat([torch.nextafter(thresholds, torch.tensor(2.0)),
                            torch.nextafter(thresholds, torch.tensor(-1.0)).clamp(min=0)])
    png = torch.arange(256, dtype=torch.float32) / 255
    probs = torch.stack([grid[:1020], neighbours[:510].repeat(2), png.repeat(4)[:1020]])
    gt = torch.rand(probs.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    predicted, tp = threshold_counts(probs, gt, thresholds)
    for k in range(0, 255, 7):
        above = probs >= thresholds[k]
        assert torch.equal(predicted[:, k], above.sum(1))
        assert torch.equal(tp[:, k], (above & gt).sum(1))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), coarse=st.booleans())
def test_properties_against_the_loop(seed, n, coarse):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 1, H, W)).astype(np.float32)
    if coarse:  # 8-bit PNG probabilities, many ties on and near the grid
        probs = np.round(probs * 255) / 255
    masks = rng.random((n, 1, H, W)) < rng.random()
    masks[rng.random(n) < 0.3] = False              # some frames without an object
    result = score(probs, masks)
    assert 0.0 <= result.J <= 1.0 and 0.0 <= result.F <= 1.0 and 0.0 <= result.S <= 1.0
    j, f, s = naive_scores(torch.from_numpy(probs[:, 0]), torch.from_numpy(masks[:, 0]))
    assert result.J == pytest.approx(j, abs=1e-9)
    assert result.F == pytest.approx(f, abs=1e-9)
    assert result.S == pytest.approx(s, abs=1e-12)
    order = rng.permutation(n)
    shuffled = score(probs[order], masks[order])
    assert (shuffled.J, shuffled.F, shuffled.S) == pytest.approx((result.J, result.F, result.S), abs=1e-12)
    if n <= MetricConfig().batch_clips:  # one reference batch equals the dataset aggregation
        ref = score(probs, masks, "reference")
        assert (ref.J, ref.F, ref.S) == pytest.approx((result.J, result.F, result.S), abs=1e-12)
