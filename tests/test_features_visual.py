"""The backbone-map cache of the ``lite`` preset: what the model would compute itself, 8-bit,
keyed by the backbone's weights and the frame settings, resumable; and Synth's sounding masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import copy_dataset

from refavs.data.frames import load_clip_frames, normalize_frames
from refavs.data.labels import SOUNDING, TARGET_SECONDS, label_source_for
from refavs.data.layout import DatasetLayout
from refavs.features.cache import FeatureStore, cache_paths, extract_features
from refavs.features.config import VisualFeatureConfig, get_feature_config
from refavs.features.visual import dequantize, quantize


@pytest.fixture(scope="module")
def synth(synth_tiny, tmp_path_factory):
    """A copy of the shared Synth ``tiny``: the feature cache is written into it."""
    return copy_dataset(synth_tiny, tmp_path_factory.mktemp("synth") / "data")


@pytest.fixture(scope="module")
def lite_store(synth):
    config = get_feature_config("lite")
    report = extract_features(synth, config, splits=["val", "test_n"], progress=False, media=True)
    return config, report, FeatureStore.open(synth, config)


def test_quantisation_error_is_at_most_half_a_level():
    x = np.random.default_rng(0).normal(size=(3, 10, 4, 5, 5)).astype(np.float32) * 3 + 1
    x[0, 0, 0] = 2.5  # a constant channel comes back exactly
    levels, lo, step = quantize(x)
    assert levels.dtype == np.uint8 and lo.shape == step.shape == (3, 10, 4)
    back = dequantize(levels, lo, step)
    assert np.all(np.abs(back - x) <= step.astype(np.float32)[..., None, None] / 2 + 1e-6)
    assert np.allclose(back[0, 0, 0], np.float16(2.5))


def test_cached_maps_are_what_the_model_computes(synth, lite_store):
    from refavs.models.build import build_model
    from refavs.models.registry import get_model_config

    config, report, store = lite_store
    assert report.splits["val"]["visual_computed"] == report.splits["val"]["clips"] > 0
    model = build_model(get_model_config("lite"))
    folder = sorted(p.name for p in (synth / "media").iterdir() if "va" in p.name)[0]
    frames = load_clip_frames(DatasetLayout(synth), folder, config.image.size)
    ours = model.backbone_maps(normalize_frames(frames, config.image.mean, config.image.std))
    cached = store.visual(folder)
    assert set(cached) == set(ours) == {"s8", "s16", "rgb4"}
    for name in ours:
        assert cached[name].shape == tuple(ours[name].shape)
        span = ours[name].amax((2, 3)) - ours[name].amin((2, 3))  # per frame and channel
        error = (torch.from_numpy(cached[name]) - ours[name]).abs().amax((2, 3))
        assert torch.all(error <= span / 255 + 1e-3)


def test_the_key_follows_the_weights_and_settings(synth):
    config = get_feature_config("lite")
    base = cache_paths(synth, config)
    assert base.settings["visual"]["weights_sha256"].startswith("57934424")
    other = cache_paths(synth, config.replace(visual=dataclasses.replace(config.visual, dtype="float16")))
    assert other.visual != base.visual and other.audio == base.audio
    bigger = cache_paths(synth, config.replace(image=dataclasses.replace(config.image, size=192)))
    assert bigger.visual != base.visual
    batch = cache_paths(synth, config.replace(visual=dataclasses.replace(config.visual, batch_size=3)))
    assert batch.visual == base.visual  # how it is computed does not change what is stored
    assert cache_paths(synth, get_feature_config("tiny")).visual is None


def test_a_second_run_computes_nothing_and_an_interrupted_one_resumes(synth, lite_store):
    config, _, _ = lite_store
    again = extract_features(synth, config, splits=["val", "test_n"], progress=False, media=True)
    assert again.clips_computed == 0 and all(s.get("visual_computed", 0) == 0 for s in again.splits.values())

    calls = []
    from refavs.features import visual as visual_module

    original = visual_module.BackboneMaps.of_clips

    def failing(self, clips):
        calls.append(len(clips))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, clips)

    visual_module.BackboneMaps.of_clips = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            extract_features(synth, config, splits=["test_s"], progress=False)
    finally:
        visual_module.BackboneMaps.of_clips = original
    resumed = extract_features(synth, config, splits=["test_s"], progress=False)
    n = resumed.splits["test_s"]["clips"]
    assert resumed.splits["test_s"]["visual_computed"] == n - calls[0]  # the first chunk was kept


def test_sounding_masks_are_cached_for_synth_data(synth, lite_store):
    from refavs.synth.labels import SOUNDING_SIZE
    from refavs.synth.sounding import load_sounding_masks

    _, report, store = lite_store
    folder = sorted(p.name for p in (synth / "media").iterdir() if p.name.startswith("null_c-"))[0]
    assert report.splits["test_n"]["sounding_computed"] > 0
    assert np.array_equal(store.cached(SOUNDING, folder), load_sounding_masks(synth, folder, SOUNDING_SIZE))
    assert store.cached(SOUNDING, "no-such-folder") is None


def test_dataset_gives_maps_labels_and_no_frames(synth, lite_store):
    from refavs.data.dataset import RefAVSDataset, collate
    from refavs.synth.labels import SOUNDING_SIZE

    config, _, store = lite_store
    data = RefAVSDataset(synth, "val", store, image=config.image, labels=label_source_for(synth))
    batch = collate([data[0], data[1]])
    assert batch.pixel_values is None
    assert batch.visual["s8"].shape[:3] == (2, 10, 40) and batch.visual["s16"].shape[:3] == (2, 10, 112)
    assert batch.visual["rgb4"].shape == (2, 10, 3, config.image.size // 4, config.image.size // 4)
    assert batch.targets[SOUNDING].shape == (2, 10, SOUNDING_SIZE, SOUNDING_SIZE)
    assert batch.targets[TARGET_SECONDS].shape == (2, 10)
    without = RefAVSDataset(synth, "val", store, image=config.image)[0]
    assert without.targets == {}


def test_visual_settings_are_checked():
    with pytest.raises(ValueError, match="visual maps"):
        VisualFeatureConfig(maps=("s32",))
    with pytest.raises(ValueError, match="visual dtype"):
        VisualFeatureConfig(dtype="int4")
