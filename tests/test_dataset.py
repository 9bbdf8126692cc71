"""RefAVSDataset: samples from the cache (no encoder in __getitem__), collate, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_features_cache import FakeAudio, FakeText, fake_audio_row

from refavs.data.batch import ClipBatch
from refavs.data.dataset import RefAVSDataset, collate
from refavs.data.frames import load_clip_frames
from refavs.data.layout import DatasetLayout
from refavs.data.masks import MediaError, load_clip_masks
from refavs.features.audio.encoder import AudioFeaturizer
from refavs.features.cache import FeatureCacheError, FeatureStore, extract_features, open_dataset
from refavs.features.config import IMAGENET_MEAN, IMAGENET_STD, ImageConfig, TextFeatureConfig, get_feature_config
from refavs.features.text import TextEncoder


@pytest.fixture()
def cached(toy_dataset):
    config = get_feature_config("tiny")
    extract_features(toy_dataset, config, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    return toy_dataset, config


def test_sample_and_batch_shapes_and_values(cached, monkeypatch):
    root, config = cached
    # no encoder may run while the dataset is read
    monkeypatch.setattr(AudioFeaturizer, "embed_files", lambda *a, **k: pytest.fail("audio encoder ran"))
    monkeypatch.setattr(TextEncoder, "encode", lambda *a, **k: pytest.fail("text encoder ran"))
    monkeypatch.setattr(TextEncoder, "__init__", lambda *a, **k: pytest.fail("text encoder loaded"))
    image = ImageConfig(size=32)
    ds = RefAVSDataset(root, ["train", "test_n"], FeatureStore.open(root, config), image=image)
    assert len(ds) == 3
    s = ds[2]  # the null expression
    assert s.uid == "null_c-clip4_0_10000_null_1"
    assert s.pixel_values.shape == (10, 3, 32, 32) and s.pixel_values.dtype == torch.float32
    assert s.audio.shape == (10, 128) and s.text.shape == (25, 6) and s.text_mask.dtype == torch.bool
    assert s.masks.shape == (10, 256, 256) and s.masks.dtype == torch.float32 and s.masks.sum() == 0
    np.testing.assert_array_equal(s.audio.numpy(), fake_audio_row("null_c-clip4_0_10000"))
    layout = DatasetLayout(root)
    frames = load_clip_frames(layout, "null_c-clip4_0_10000", 32).astype(np.float32) / 255.0
    expected = (frames - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(s.pixel_values.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)
    first = ds[0]
    np.testing.assert_array_equal(first.masks.numpy() > 0, load_clip_masks(layout, ds.expressions[0]))

    batch = collate([ds[i] for i in range(3)])
    assert isinstance(batch, ClipBatch) and len(batch) == 3
    assert batch.pixel_values.shape == (3, 10, 3, 32, 32) and batch.audio.shape == (3, 10, 128)
    assert batch.text.shape == (3, 25, 6) and batch.text_mask.shape == (3, 25) and batch.masks.shape == (3, 10, 256, 256)
    assert batch.uids == [e.uid for e in ds.expressions]
    assert batch.clips == ds.clips == [layout.resolve_folder(e.uid, e.vid) for e in ds.expressions]
    moved = batch.to("cpu")
    assert torch.equal(moved.text, batch.text) and moved.uids == batch.uids and moved.clips == batch.clips


def test_without_masks_and_through_a_dataloader(cached):
    root, config = cached
    ds = RefAVSDataset(root, "val", FeatureStore.open(root, config), image=ImageConfig(size=16), with_masks=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    (batch,) = list(loader)
    assert batch.masks is None and batch.pixel_values.shape == (2, 10, 3, 16, 16)
    assert batch.to("cpu").masks is None


def test_media_cache_gives_the_same_samples(cached):
    root, config = cached
    extract_features(root, config, progress=False, media=True)  # audio/text already cached: no encoder
    store = FeatureStore.open(root, config)
    fast = RefAVSDataset(root, "train", store, image=config.image)
    slow = RefAVSDataset(root, "train", store, image=config.image, use_media_cache=False)
    assert store.has_frames("clip0_0_10000")
    for i in range(len(fast)):
        a, b = fast[i], slow[i]
        assert torch.equal(a.pixel_values, b.pixel_values) and torch.equal(a.masks, b.masks)
    # a dataset at another image size ignores the cached frames and decodes
    other = RefAVSDataset(root, "train", store, image=ImageConfig(size=24))
    assert other[0].pixel_values.shape == (10, 3, 24, 24)


def test_missing_features_and_media_errors_are_clear(cached):
    root, config = cached
    other = config.replace(text=TextFeatureConfig(max_tokens=12))
    with pytest.raises(FeatureCacheError, match="features missing for 0 media folder.* 2 expression.*refavs features"):
        open_dataset(root, "train", other)
    ds = open_dataset(root, "train", config)
    (root / "media" / "clip0_0_10000" / "frames" / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MediaError, match="clip0_0_10000/frames/3.jpg: unreadable frame"):
        ds[0]
    (root / "media" / "clip0_0_10000" / "frames" / "3.jpg").unlink()
    with pytest.raises(MediaError, match="3.jpg: frame not found"):
        ds[0]
