from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refavs.data import DatasetLayout, MediaError, load_clip_masks, load_mask, read_metadata


def save(path, array, mode=None):
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path)
    return path


def test_reference_rule_grows_thin_masks_nearest_keeps_them(tmp_path):
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[50, :] = 255  # a one-pixel line
    path = save(tmp_path / "m.png", mask)
    ref = load_mask(path, size=256, resize="reference")
    near = load_mask(path, size=256, resize="nearest")
    assert ref.shape == near.shape == (256, 256) and ref.dtype == bool
    assert ref.sum() > near.sum() > 0
    # nearest neighbour of a 100 -> 256 upscale repeats rows 2 or 3 times
    assert near.any(axis=1).sum() in (2, 3)


def test_any_nonzero_is_foreground_and_256_unchanged(tmp_path):
    mask = np.zeros((256, 256), dtype=np.uint8)
    mask[10:20, 10:20] = 1
    out = load_mask(save(tmp_path / "m.png", mask))
    assert out.sum() == 100 and out[10:20, 10:20].all()
    rgb = np.zeros((256, 256, 3), dtype=np.uint8)
    rgb[0:5, 0:5] = (0, 0, 128)
    assert load_mask(save(tmp_path / "rgb.png", rgb)).sum() == 25


def test_missing_and_corrupt_masks_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="m.png: mask not found"):
        load_mask(tmp_path / "m.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MediaError, match="bad.png: unreadable"):
        load_mask(bad)
    with pytest.raises(ValueError, match="resize"):
        load_mask(bad, resize="bicubic")


def test_clip_masks(toy_dataset):
    rows = read_metadata(toy_dataset)
    layout = DatasetLayout(toy_dataset)
    masks = load_clip_masks(layout, rows[0])
    assert masks.shape == (10, 256, 256) and masks.dtype == bool and masks.any()
    null = [r for r in rows if r.split == "test_n"][0]
    assert not load_clip_masks(layout, null).any()
