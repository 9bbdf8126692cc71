"""Ref-AVS Synth's labels as a plug-in: found for Synth only, and equal to what scenes.jsonl says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refavs.data.dataset import RefAVSDataset
from refavs.data.labels import SOUND_LEVELS, SOUND_RANKS, SOUNDING, TARGET_SECONDS, label_source_for
from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.masks import load_mask
from refavs.data.metadata import read_metadata
from refavs.features.cache import cache_kinds
from refavs.features.cache.extract import wanted_kinds
from refavs.features.config import get_feature_config
from refavs.synth.labels import SynthLabels
from refavs.synth.layout import folder_records, read_scenes
from refavs.synth.sound_ranks import IGNORE, RANK_SIZE
from refavs.synth.sounding import load_sounding_masks


class NoCache:
    """A feature source that caches nothing (the labels that need no cache still come)."""

    def cached(self, kind, key):
        return None


class ZeroFeatures(NoCache):
    def audio(self, folder):
        return np.zeros((NUM_FRAMES, 128), dtype=np.float32)

    def text_of(self, expression):
        return np.zeros((25, 8), dtype=np.float32), np.ones(25, dtype=bool)


def test_the_plug_in_is_found_for_synth_and_only_for_it(synth_tiny, toy_dataset):
    assert isinstance(label_source_for(synth_tiny), SynthLabels)
    assert label_source_for(toy_dataset) is None
    assert SOUNDING in [k.name for k in cache_kinds()]
    lite = get_feature_config("lite")
    assert SOUNDING in [k.name for k in wanted_kinds(synth_tiny, lite, media=True)]
    assert SOUNDING not in [k.name for k in wanted_kinds(synth_tiny, lite, media=False)]
    assert SOUNDING not in [k.name for k in wanted_kinds(toy_dataset, lite, media=True)]


def test_the_real_layout_yields_no_labels(toy_dataset):
    data = RefAVSDataset(toy_dataset, ["train", "test_n"], ZeroFeatures(), check_features=False,
                         use_media_cache=False, labels=label_source_for(toy_dataset))
    assert len(data) > 0 and all(data[i].targets == {} for i in range(len(data)))


def test_target_seconds_are_the_seconds_scenes_jsonl_gives_the_target(synth_tiny):
    labels = label_source_for(synth_tiny)
    scenes = {rec["vid"]: rec for rec in read_scenes(synth_tiny)}
    layout = DatasetLayout(synth_tiny)
    checked = nulls = 0
    for e in read_metadata(synth_tiny):
        folder = layout.resolve_folder(e.uid, e.vid)
        seconds = labels.targets(e, folder, NoCache())[TARGET_SECONDS]
        if e.split == "test_n":
            assert not seconds.any()   # a null row's target never sounds
            nulls += 1
            continue
        obj = next(o for o in scenes[e.vid]["objects"] if o["fid"] == e.fid)
        assert np.flatnonzero(seconds).tolist() == sorted(obj["audio"]["seconds"]), e.uid
        checked += 1
    assert checked >= 10 and nulls > 0


def test_sound_ranks_order_the_sounding_objects_by_level_and_pitch(synth_tiny):
    labels = label_source_for(synth_tiny)
    compared = 0
    for rec in folder_records(read_scenes(synth_tiny)).values():   # as heard in each media folder
        e = next(e for e in read_metadata(synth_tiny, [rec["split"]]) if e.folder == rec["folder"])
        ranks = labels.targets(e, rec["folder"], NoCache())[SOUND_RANKS]
        assert ranks.shape == (NUM_FRAMES, 2, RANK_SIZE, RANK_SIZE)
        scale = RANK_SIZE / rec["size"]
        clip_sounding = [o for o in rec["objects"] if o["audio"]["seconds"]]   # ranked among the clip's
        for t in range(NUM_FRAMES):
            sounding = [o for o in rec["objects"] if t in o["audio"]["seconds"] and o["visual"]["boxes"][t]]
            if not sounding:
                assert (ranks[t] == IGNORE).all()
                continue
            for channel, key in enumerate(("level_db", "pitch_hz")):
                values = sorted({o["audio"][key] for o in clip_sounding})
                for o in sounding:
                    x0, y0, x1, y1 = o["visual"]["boxes"][t]
                    cy, cx = int((y0 + y1) / 2 * scale), int((x0 + x1) / 2 * scale)
                    others = [p for p in sounding if p is not o]
                    if any(_inside(p["visual"]["boxes"][t], (cx + 0.5) / scale, (cy + 0.5) / scale) for p in others):
                        continue   # overlapping boxes: the pixel belongs to whichever was painted last
                    expected = 0.5 if len(values) < 2 else values.index(o["audio"][key]) / (len(values) - 1)
                    assert ranks[t, channel, cy, cx] == pytest.approx(expected), (rec["vid"], t, key)
                    compared += 1
    assert compared > 50


def _inside(box, x, y) -> bool:
    return box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_sounding_masks_are_the_union_of_the_objects_that_sound(synth_tiny):
    layout = DatasetLayout(synth_tiny)
    for rec in read_scenes(synth_tiny)[:12]:
        size = rec["size"]
        got = load_sounding_masks(synth_tiny, rec["folder"], size, "nearest")
        expected = np.zeros((NUM_FRAMES, size, size), dtype=bool)
        for o in rec["objects"]:
            for t in o["audio"]["seconds"]:
                expected[t] |= load_mask(layout.mask(rec["vid"], o["fid"], t), size, "nearest")
        assert np.array_equal(got, expected), rec["vid"]


def test_cached_sounding_masks_reach_the_sample_as_a_target(synth_tiny):
    """With a cache that holds the sounding masks, the sample carries them (float 0/1)."""
    rec = read_scenes(synth_tiny)[0]
    e = next(e for e in read_metadata(synth_tiny, [rec["split"]]) if e.vid == rec["vid"])
    masks = load_sounding_masks(synth_tiny, rec["folder"], 48)

    class OneCached(ZeroFeatures):
        def cached(self, kind, key):
            return masks if (kind, key) == (SOUNDING, rec["folder"]) else None

    data = RefAVSDataset(synth_tiny, rec["split"], OneCached(), expressions=[e], check_features=False,
                         use_media_cache=False, labels=label_source_for(synth_tiny))
    sample = data[0]
    assert sample.targets[SOUNDING].dtype.is_floating_point
    assert np.array_equal(sample.targets[SOUNDING].numpy().astype(bool), masks)
    assert set(sample.targets) == {SOUNDING, TARGET_SECONDS, SOUND_RANKS, SOUND_LEVELS}


def test_plugins_come_from_entry_points_then_registration():
    from refavs.data.plugins import Plugins
    from refavs.features.cache.kinds import register_cache_kind

    kinds = Plugins("refavs.cache_kinds")
    assert [k.name for k in kinds] == [SOUNDING]           # declared in pyproject.toml
    kinds.register("extra")
    kinds.register("extra")
    assert [getattr(k, "name", k) for k in kinds] == [SOUNDING, "extra"]
    assert list(Plugins("refavs.no_such_group")) == []
    with pytest.raises(ValueError, match="named 'audio' exists"):
        register_cache_kind(dataclasses.replace(cache_kinds()[1], name="audio"))   # text's, renamed
