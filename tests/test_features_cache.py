"""The feature cache: keys, extraction once, resumption after an interruption, invalidation,
memory-mapped reading, the media (frames + masks) cache, and damaged files (sizes and checksums
in the index, verification, extraction again). Encoders are stand-ins here
(deterministic and counted); the real ones run in test_features_cli.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from refavs.data.frames import load_clip_frames
from refavs.data.layout import DatasetLayout
from refavs.data.masks import MediaError, load_clip_masks
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.data.writer import write_metadata
from refavs.features.cache import (FeatureCacheError, FeatureStore, cache_paths, cache_root, chunks, extract_features,
                                   integrity, open_dataset, settings_key, verify_cache)
from refavs.features.cache.integrity import file_checksum
from refavs.features.config import AudioFeatureConfig, get_feature_config

TOKENS, DIM = 25, 6


def fake_audio_row(name: str) -> np.ndarray:
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal((10, 128)).astype(np.float32)


class FakeAudio:
    """Stands in for the audio featurizer: features from the media folder's name; counts calls."""

    def __init__(self, fail_after: int | None = None):
        self.clips, self.calls, self.fail_after = [], 0, fail_after

    def embed_files(self, paths):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        names = [p.parent.name for p in paths]
        self.clips += names
        return np.stack([fake_audio_row(n) for n in names])


class FakeText:
    def __init__(self):
        self.texts = []

    def encode(self, texts):
        self.texts += list(texts)
        feats = np.stack([np.full((TOKENS, DIM), len(t), np.float32) for t in texts])
        mask = np.zeros((len(texts), TOKENS), bool)
        for i, t in enumerate(texts):
            mask[i, :min(TOKENS, len(t.split()) + 2)] = True
        return feats, mask


class Refuse:
    def embed_files(self, paths):
        raise AssertionError("the audio encoder ran although everything was cached")

    def encode(self, texts):
        raise AssertionError("the text encoder ran although everything was cached")


@pytest.fixture()
def tiny():
    return get_feature_config("tiny")


def test_extracts_once_per_clip_and_expression_and_reads_back(toy_dataset, tiny):
    audio, text = FakeAudio(), FakeText()
    report = extract_features(toy_dataset, tiny, batch_size=2, progress=False, audio_source=audio, text_source=text)
    rows = read_metadata(toy_dataset)
    layout = DatasetLayout(toy_dataset)
    folders = {layout.resolve_folder(e.uid, e.vid) for e in rows}
    assert sorted(audio.clips) == sorted(folders) and len(folders) == 5  # once per clip, not per expression
    # text once per distinct expression of each split
    assert len(text.texts) == sum(len({e.exp for e in rows if e.split == s}) for s in {e.split for e in rows})
    assert report.clips_computed == 5 and report.texts_computed == len(text.texts)
    assert "null_c-clip4_0_10000" in folders  # the null subset's derived folder

    store = FeatureStore.open(toy_dataset, tiny)
    for e in rows:
        folder = layout.resolve_folder(e.uid, e.vid)
        np.testing.assert_array_equal(store.audio(folder), fake_audio_row(folder))
        feats, mask = store.text(e.uid)
        assert feats.shape == (TOKENS, DIM) and feats[0, 0] == len(e.exp)
        assert mask.dtype == bool and mask.sum() == len(e.exp.split()) + 2
        assert np.array_equal(store.text_of(e.exp)[0], feats)
    with pytest.raises(FeatureCacheError, match="no cached audio .* 'nope'.*refavs features"):
        store.audio("nope")
    with pytest.raises(FeatureCacheError, match="uid 'nope'"):
        store.text("nope")

    again = extract_features(toy_dataset, tiny, progress=False, audio_source=Refuse(), text_source=Refuse())
    assert again.clips_computed == 0 and again.texts_computed == 0


def test_reads_are_memory_mapped_and_the_store_pickles(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    store = FeatureStore.open(toy_dataset, tiny)
    store.audio("clip0_0_10000")
    arrays, _ = store._rows["audio"]["clip0_0_10000"]
    assert isinstance(arrays.get("features"), np.memmap)
    copy = pickle.loads(pickle.dumps(store))  # what a DataLoader worker receives
    np.testing.assert_array_equal(copy.audio("clip0_0_10000"), store.audio("clip0_0_10000"))
    out = store.audio("clip0_0_10000")
    out[:] = 0  # callers get copies
    assert store.audio("clip0_0_10000").any()


def test_an_interrupted_extraction_resumes_where_it_stopped(toy_dataset, tmp_path, tiny):
    one_split = ["test_s", "train", "val", "test_u", "test_n"]
    # reference result, uninterrupted, in another cache folder
    extract_features(toy_dataset, tiny, cache_dir=tmp_path / "ref", batch_size=1, progress=False,
                     audio_source=FakeAudio(), text_source=FakeText())
    flaky = FakeAudio(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        extract_features(toy_dataset, tiny, one_split, batch_size=1, progress=False, audio_source=flaky,
                         text_source=FakeText())
    assert flaky.calls == 3
    resumed = FakeAudio()
    report = extract_features(toy_dataset, tiny, batch_size=1, progress=False, audio_source=resumed,
                              text_source=FakeText())
    assert len(resumed.clips) == 5 - 3 and report.clips_computed == 2
    assert not set(resumed.clips) & set(flaky.clips)
    ref, got = FeatureStore.open(toy_dataset, tiny, tmp_path / "ref"), FeatureStore.open(toy_dataset, tiny)
    for e in read_metadata(toy_dataset):
        folder = DatasetLayout(toy_dataset).resolve_folder(e.uid, e.vid)
        np.testing.assert_array_equal(got.audio(folder), ref.audio(folder))
    assert not list(cache_paths(toy_dataset, tiny).audio.glob("*/parts-*"))  # chunks cleaned up


def test_keys_follow_every_setting_that_changes_the_output(toy_dataset, tiny):
    base = cache_paths(toy_dataset, tiny)
    assert cache_paths(toy_dataset, get_feature_config("tiny")) == base  # stable
    changed_audio = tiny.replace(audio=dataclasses.replace(tiny.audio, pad_mode="zeros"))
    changed_text = tiny.replace(text=dataclasses.replace(tiny.text, max_tokens=20))
    assert cache_paths(toy_dataset, changed_audio).audio != base.audio
    assert cache_paths(toy_dataset, changed_audio).text == base.text  # text features are still good
    assert cache_paths(toy_dataset, changed_text).text != base.text
    assert cache_paths(toy_dataset, changed_text).audio == base.audio
    # settings that do not reach the log-mel encoder do not change its key
    ignored = tiny.replace(audio=dataclasses.replace(tiny.audio, vggish_weights="elsewhere.pth"))
    assert cache_paths(toy_dataset, ignored).audio == base.audio
    assert cache_paths(toy_dataset, tiny.replace(text=dataclasses.replace(tiny.text, batch_size=3))) == base
    vggish = AudioFeatureConfig(encoder="vggish", vggish_weights="https://x/a.pth", postprocess=False)
    assert settings_key("audio", {"a": 1}) != settings_key("text", {"a": 1})
    assert cache_paths(toy_dataset, tiny.replace(audio=vggish)).audio != base.audio
    # a changed setting reads nothing stale: the new folder is empty
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    assert not FeatureStore.open(toy_dataset, changed_text).has_text("cat")
    assert len(FeatureStore.open(toy_dataset, changed_text)) == 0
    assert len(FeatureStore.open(toy_dataset, tiny)) > 0
    # the manifest records what the key stands for
    manifest = FeatureStore.open(toy_dataset, tiny).manifests["text"]
    assert manifest["settings"]["max_tokens"] == 25 and manifest["key"] in str(base.text)


def test_changed_metadata_reextracts_only_that_split(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    rows = read_metadata(toy_dataset)
    rows.append(Expression("clip0_0_10000", "clip0_0_10000_cat_1", "train", 1, "the quiet cat"))
    write_metadata(DatasetLayout(toy_dataset).metadata, rows)
    text = FakeText()
    extract_features(toy_dataset, tiny, progress=False, audio_source=Refuse(), text_source=text)
    assert "the quiet cat" in text.texts
    assert set(text.texts) == {e.exp for e in rows if e.split == "train"}
    assert FeatureStore.open(toy_dataset, tiny).text("clip0_0_10000_cat_1")[0][0, 0] == len("the quiet cat")


def test_cache_dir_outside_the_dataset(toy_dataset, tmp_path, tiny):
    root = cache_root(toy_dataset, tmp_path / "elsewhere")
    assert root.parent == tmp_path / "elsewhere" and root.name.startswith("toy-")
    extract_features(toy_dataset, tiny, ["val"], cache_dir=tmp_path / "elsewhere", progress=False,
                     audio_source=FakeAudio(), text_source=FakeText())
    assert not (toy_dataset / ".refavs_cache").exists()
    store = FeatureStore.open(toy_dataset, tiny, tmp_path / "elsewhere")
    assert store.has_audio("clip1_0_10000") and not store.has_audio("clip0_0_10000")


def test_media_cache_matches_decoding(toy_dataset, tiny):
    layout = DatasetLayout(toy_dataset)
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    without_media = FeatureStore.open(toy_dataset, tiny)
    assert without_media.missing(layout, read_metadata(toy_dataset)) == ([], [])
    folders, uids = without_media.missing(layout, read_metadata(toy_dataset), media=True)
    assert folders == sorted({layout.resolve_folder(e.uid, e.vid) for e in read_metadata(toy_dataset)}) and not uids
    extract_features(toy_dataset, tiny, progress=False, media=True, audio_source=FakeAudio(),
                     text_source=FakeText())
    store = FeatureStore.open(toy_dataset, tiny)
    assert store.missing(layout, read_metadata(toy_dataset), media=True) == ([], [])
    for e in read_metadata(toy_dataset):
        folder = layout.resolve_folder(e.uid, e.vid)
        np.testing.assert_array_equal(store.frames(folder), load_clip_frames(layout, folder, tiny.image.size))
        np.testing.assert_array_equal(store.masks(folder, e.fid), load_clip_masks(layout, e))
    assert store.masks("clip0_0_10000", 0).any() and not store.masks("null_c-clip4_0_10000", 0).any()
    nearest = FeatureStore.open(toy_dataset, tiny, mask_resize="nearest")
    assert not nearest.has_masks("clip0_0_10000", 0)  # another resize rule, another key


def test_unreadable_audio_stops_with_the_file_name_and_keeps_finished_chunks(toy_dataset, tiny):
    from refavs.features.audio.encoder import build_audio_featurizer

    (toy_dataset / "media" / "clip2_0_10000" / "audio.wav").write_bytes(b"garbage")
    with pytest.raises(MediaError, match="clip2_0_10000/audio.wav"):
        extract_features(toy_dataset, tiny, batch_size=1, progress=False,
                         audio_source=build_audio_featurizer(tiny.audio), text_source=FakeText())
    store = FeatureStore.open(toy_dataset, tiny)
    assert store.has_audio("clip0_0_10000") and not store.has_audio("clip2_0_10000")


def _split_file(dataset, config, kind: str, split: str, name: str):
    return cache_paths(dataset, config).folder(kind) / split / f"{name}.npy"


def _overwrite_middle(path, count: int = 64) -> None:
    """Overwrite ``count`` bytes in the middle of ``path`` (its size unchanged)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        old = f.read(count)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in old))
    assert path.stat().st_size == size


def _train_folders(dataset):
    layout = DatasetLayout(dataset)
    return sorted({layout.resolve_folder(e.uid, e.vid) for e in read_metadata(dataset) if e.split == "train"})


def test_the_index_records_each_array_files_size_and_checksum(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    split = cache_paths(toy_dataset, tiny).text / "train"
    info = json.loads((split / "index.json").read_text())
    assert sorted(info["files"]) == sorted(info["arrays"]) == ["features", "mask"]
    for name, record in info["files"].items():
        assert record == {"bytes": (split / f"{name}.npy").stat().st_size,
                          "blake2b": file_checksum(split / f"{name}.npy")}


def test_a_truncated_array_is_named_and_extracted_again(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    path = _split_file(toy_dataset, tiny, "audio", "train", "features")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    for opening in (lambda: FeatureStore.open(toy_dataset, tiny), lambda: open_dataset(toy_dataset, "train", tiny)):
        with pytest.raises(FeatureCacheError) as err:
            opening()
        message = str(err.value)
        assert message.startswith(f"damaged feature cache: {path} (kind audio, split train): "
                                  f"{size // 2} bytes, the index records {size} (truncated); ")
        assert f"refavs features --data-dir {toy_dataset} --config tiny --splits train --verify" in message
        assert f"delete {path.parent}" in message and "\n" not in message
    audio = FakeAudio()
    report = extract_features(toy_dataset, tiny, progress=False, audio_source=audio, text_source=Refuse())
    assert [(d.file, d.kind, d.split) for d in report.damaged] == [(path, "audio", "train")]
    _assert_train_audio_extracted_again(toy_dataset, tiny, audio)


def _assert_train_audio_extracted_again(root, config, audio) -> None:
    """The train split alone was extracted again by ``audio``, and the store reads its fresh rows."""
    assert sorted(audio.clips) == _train_folders(root)
    store = FeatureStore.open(root, config)
    for folder in _train_folders(root):
        np.testing.assert_array_equal(store.audio(folder), fake_audio_row(folder))


def test_altered_bytes_are_named_by_verification_and_extracted_again(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, media=True, audio_source=FakeAudio(),
                     text_source=FakeText())
    path = _split_file(toy_dataset, tiny, "audio", "train", "features")
    _overwrite_middle(path)
    clean = verify_cache(toy_dataset, tiny, ["val"])
    assert not clean.damaged and clean.files > 0 and clean.bytes > 0
    check = verify_cache(toy_dataset, tiny)
    assert [(d.file, d.kind, d.split) for d in check.damaged] == [(path, "audio", "train")]
    assert "checksum differs" in check.damaged[0].problem and not check.unverified
    # without verification only the sizes are compared: extraction leaves it
    assert extract_features(toy_dataset, tiny, progress=False, audio_source=Refuse(),
                            text_source=Refuse()).damaged == []
    audio = FakeAudio()
    report = extract_features(toy_dataset, tiny, progress=False, audio_source=audio, text_source=Refuse(),
                              verify=True)
    assert [d.file for d in report.damaged] == [path] and not report.removed
    assert not verify_cache(toy_dataset, tiny).damaged
    _assert_train_audio_extracted_again(toy_dataset, tiny, audio)


def test_a_damaged_kind_that_the_run_does_not_extract_is_removed_and_needs_media(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, media=True, audio_source=FakeAudio(),
                     text_source=FakeText())
    path = _split_file(toy_dataset, tiny, "masks", "val", "packed")
    _overwrite_middle(path, count=8)
    report = extract_features(toy_dataset, tiny, progress=False, audio_source=Refuse(), text_source=Refuse(),
                              verify=True)
    assert [d.file for d in report.removed] == [path]
    assert not (path.parent / "index.json").exists()  # nothing reads it any more
    layout = DatasetLayout(toy_dataset)
    val = [e for e in read_metadata(toy_dataset) if e.split == "val"]
    assert FeatureStore.open(toy_dataset, tiny).missing(layout, val, media=True)[0]
    with open(path, "r+b") as f:
        f.truncate(1)
    (path.parent / "index.json").write_text(json.dumps({**json.loads(
        (_split_file(toy_dataset, tiny, "masks", "train", "packed").parent / "index.json").read_text()),
        "arrays": ["packed"], "files": {"packed": {"bytes": 2, "blake2b": ""}}}))
    with pytest.raises(FeatureCacheError, match=r"--splits val --media --verify"):
        FeatureStore.open(toy_dataset, tiny)


def test_a_clean_cache_opens_without_reading_the_arrays(toy_dataset, tiny, monkeypatch):
    extract_features(toy_dataset, tiny, progress=False, media=True, audio_source=FakeAudio(),
                     text_source=FakeText())
    checksums, loads = [], []
    monkeypatch.setattr(integrity, "file_checksum", lambda path: checksums.append(path) or "")
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    store = FeatureStore.open(toy_dataset, tiny)
    again = extract_features(toy_dataset, tiny, progress=False, media=True, audio_source=Refuse(),
                             text_source=Refuse())
    assert checksums == [] and loads == [] and again.damaged == []
    store.audio("clip0_0_10000")  # arrays are opened on first use
    assert loads and checksums == []


def test_after_an_unclean_stop_the_split_is_verified_on_open(toy_dataset, tiny, monkeypatch):
    def stop(split_dir):
        raise KeyboardInterrupt("stopped after the index, before removing the chunks")

    monkeypatch.setattr(chunks, "_remove_parts", stop)
    with pytest.raises(KeyboardInterrupt):
        extract_features(toy_dataset, tiny, ["train"], progress=False, audio_source=FakeAudio(),
                         text_source=FakeText())
    monkeypatch.undo()
    split = cache_paths(toy_dataset, tiny).audio / "train"
    assert (split / "index.json").is_file() and list(split.glob("parts-*"))
    checked = []
    real_checksum = integrity.file_checksum
    monkeypatch.setattr(integrity, "file_checksum", lambda path: checked.append(path) or real_checksum(path))
    FeatureStore.open(toy_dataset, tiny)  # intact: the checksums of that split are compared
    assert [Path(p) for p in checked] == [split / "features.npy"]
    _overwrite_middle(split / "features.npy")
    with pytest.raises(FeatureCacheError, match=r"features\.npy \(kind audio, split train\): its checksum differs"):
        FeatureStore.open(toy_dataset, tiny)
    audio = FakeAudio()
    report = extract_features(toy_dataset, tiny, ["train"], progress=False, audio_source=audio,
                              text_source=FakeText())  # the stop came before the text was extracted
    assert [d.file for d in report.damaged] == [split / "features.npy"]
    assert audio.clips == []  # joined again from its intact chunks
    assert not list(split.glob("parts-*"))  # which are then removed
    checked.clear()
    store = FeatureStore.open(toy_dataset, tiny)
    assert checked == []
    for folder in _train_folders(toy_dataset):
        np.testing.assert_array_equal(store.audio(folder), fake_audio_row(folder))


def test_an_index_without_sizes_and_checksums_is_read_unverified(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    index = cache_paths(toy_dataset, tiny).audio / "train" / "index.json"
    info = json.loads(index.read_text())
    del info["files"]
    index.write_text(json.dumps(info))
    store = FeatureStore.open(toy_dataset, tiny)
    folder = _train_folders(toy_dataset)[0]
    np.testing.assert_array_equal(store.audio(folder), fake_audio_row(folder))
    assert verify_cache(toy_dataset, tiny).unverified == [index.parent]
    assert extract_features(toy_dataset, tiny, progress=False, audio_source=Refuse(),
                            text_source=Refuse()).clips_computed == 0


def test_an_unreadable_array_is_a_cache_error(toy_dataset, tiny):
    extract_features(toy_dataset, tiny, progress=False, audio_source=FakeAudio(), text_source=FakeText())
    index = cache_paths(toy_dataset, tiny).audio / "train" / "index.json"
    info = json.loads(index.read_text())
    del info["files"]  # unverified: only reading can tell
    index.write_text(json.dumps(info))
    path = index.parent / "features.npy"
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    store = FeatureStore.open(toy_dataset, tiny)
    with pytest.raises(FeatureCacheError, match=rf"{path} \(kind audio, split train\): unreadable .*--verify"):
        store.audio(_train_folders(toy_dataset)[0])
