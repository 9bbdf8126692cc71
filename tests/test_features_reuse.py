"""Folders whose frame files are byte-identical (Ref-AVS's null folders repeat ``<vid>``'s frames
with another audio track) get the backbone maps, or the decoded frames, computed once."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from conftest import build_toy_dataset

from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.metadata import read_metadata
from refavs.data.writer import write_audio, write_metadata
from refavs.features.cache import FeatureStore, extract_features
from refavs.features.cache.extract import RowReuse
from refavs.features.cache.kinds import frames_digest
from refavs.features.config import get_feature_config
from refavs.features.visual import BackboneMaps


class FakeAudio:
    def embed_files(self, paths):
        return torch.stack([torch.full((NUM_FRAMES, 128), float(len(str(p)))) for p in paths])


class FakeText:
    def encode(self, texts):
        return torch.ones(len(texts), 25, 384), torch.ones(len(texts), 25, dtype=torch.bool)


def _with_null_copies(root):
    """The toy dataset plus ``null_m-<vid>`` copies of the test_s and test_u clips (frames copied,
    audio replaced), each with a row in its clip's split."""
    rows = build_toy_dataset(root)
    layout = DatasetLayout(root)
    extra = []
    for e in rows:
        if e.split in ("test_s", "test_u") and e.fid == 0:
            folder = f"null_m-{e.vid}"
            shutil.copytree(root / "media" / e.vid, root / "media" / folder)
            write_audio(layout, folder, np.zeros(16_000, dtype=np.float32))
            shutil.copytree(root / "gt_mask" / e.vid, root / "gt_mask" / folder)
            extra.append(dataclasses.replace(e, uid=f"{folder}_null_1", exp="The muted drum"))
    write_metadata(layout.metadata, rows + extra)
    return [e.vid for e in extra]


@pytest.fixture()
def counted(monkeypatch):
    frames = []
    inner = BackboneMaps.of_frames

    def of_frames(self, batch):
        frames.append(len(batch))
        return inner(self, batch)

    monkeypatch.setattr(BackboneMaps, "of_frames", of_frames)
    return frames


def test_copied_folders_run_the_backbone_once(tmp_path, counted):
    root = tmp_path / "data"
    vids = _with_null_copies(root)
    config = get_feature_config("lite")
    config = dataclasses.replace(config, visual=dataclasses.replace(config.visual, batch_size=20))  # 2 clips a chunk
    report = extract_features(root, config, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    clips = {s: c["clips"] for s, c in report.splits.items()}
    assert clips == {"train": 1, "val": 1, "test_s": 2, "test_u": 2, "test_n": 1}
    assert sum(counted) == NUM_FRAMES * 5  # the two copies are not run
    assert report.splits["test_s"]["visual_reused"] == report.splits["test_u"]["visual_reused"] == 1
    assert report.splits["train"]["visual_computed"] == 1 and report.splits["train"]["visual_reused"] == 0
    store = FeatureStore.open(root, config)
    for vid in vids:
        ours, copy = store.visual(vid), store.visual(f"null_m-{vid}")
        assert set(ours) == set(copy) == {"s8", "s16", "rgb4"}
        for name in ours:
            assert np.array_equal(ours[name], copy[name])
        assert not np.array_equal(store.audio(vid), store.audio(f"null_m-{vid}"))  # audio stays per folder


def test_frames_digest_follows_the_bytes(tmp_path):
    root = tmp_path / "data"
    vids = _with_null_copies(root)
    layout = DatasetLayout(root)
    a, b = frames_digest(layout, vids[0]), frames_digest(layout, f"null_m-{vids[0]}")
    assert a == b and a is not None and a != frames_digest(layout, vids[1])
    frame = layout.frame(f"null_m-{vids[0]}", 3)
    frame.write_bytes(frame.read_bytes() + b"\0")
    assert frames_digest(layout, f"null_m-{vids[0]}") != a
    frame.unlink()
    assert frames_digest(layout, f"null_m-{vids[0]}") is None


def test_row_reuse_computes_each_content_once_and_frees_it():
    calls = []

    def compute(items):
        calls.append(list(items))
        return {"x": np.array([[ord(i[0])] for i in items])}

    digests = {"a": "1", "a2": "1", "b": "2", "c": None, "a3": "1"}
    reuse = RowReuse(compute, digests)
    out = reuse(["a", "b", "a2"])
    assert calls == [["a", "b"]] and out["x"][:, 0].tolist() == [97, 98, 97]
    assert set(reuse.kept) == {"1"}  # a3 is still to come
    out = reuse(["c", "a3"])
    assert calls[-1] == ["c"] and out["x"][:, 0].tolist() == [99, 97]
    assert reuse.reused == 2 and reuse.kept == {}


def test_frames_kind_reuses_too(tmp_path):
    root = tmp_path / "data"
    vids = _with_null_copies(root)
    config = get_feature_config("tiny")
    report = extract_features(root, config, splits=["test_s"], progress=False, media=True,
                              audio_source=FakeAudio(), text_source=FakeText())
    assert report.splits["test_s"]["frames_computed"] == 2 and report.splits["test_s"]["frames_reused"] == 1
    store = FeatureStore.open(root, config)
    assert np.array_equal(store.frames(vids[0]), store.frames(f"null_m-{vids[0]}"))
    assert len(read_metadata(root, ["test_s"])) == 3
