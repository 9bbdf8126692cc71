"""Baselines scored in memory (``baseline_scores``, what ``refavs demo`` uses) give exactly the
numbers of ``refavs baseline`` + ``refavs score`` (PNGs written, then read back), with the
feature cache's masks or without them, on a generated Ref-AVS Synth dataset."""

from __future__ import annotations

import pytest
from conftest import copy_dataset
from test_features_cache import FakeAudio, FakeText

import refavs.baselines as baselines
from refavs.baselines import BASELINES, baseline_scores, write_baseline
from refavs.data.layout import DatasetLayout
from refavs.data.metadata import read_metadata
from refavs.features.cache import FeatureStore, extract_features
from refavs.features.config import get_feature_config
from refavs.scoring.score import score_predictions

TEST_SPLITS = ["test_s", "test_u", "test_n"]


@pytest.fixture(scope="module")
def synth(synth_factory, tmp_path_factory):
    """Ref-AVS Synth (tiny, 32 px) with its media cache (target masks), as the demo extracts it
    (into a copy of the shared dataset)."""
    root = copy_dataset(synth_factory("tiny", size=32), tmp_path_factory.mktemp("baselines") / "data")
    config = get_feature_config("tiny")
    extract_features(root, config, TEST_SPLITS, progress=False, media=True, audio_source=FakeAudio(),
                     text_source=FakeText())
    return root, FeatureStore.open(root, config)


def scored_from_pngs(name, root, out, **kwargs):
    write_baseline(name, root, TEST_SPLITS, out, workers=1)
    return score_predictions(root, TEST_SPLITS, out, workers=1, **kwargs).to_dict()


def test_every_object_in_memory_equals_pngs(synth, tmp_path, monkeypatch):
    root, store = synth
    layout = DatasetLayout(root)
    # the data exercise both sources of the union: objects in the mask cache and objects only on
    # disk (no expression refers to them; the real objects of a test_n clip, whose cached target is
    # the empty null mask)
    uncached = [(folder.name, fid.name) for folder in (root / "gt_mask").iterdir() for fid in folder.glob("fid_*")
                if not store.has_masks(folder.name, int(fid.name[4:]))]
    tn = read_metadata(root, ["test_n"])[0]
    assert layout.resolve_folder(tn.uid, tn.vid) != tn.vid and any(f == tn.vid for f, _ in uncached)
    expected = scored_from_pngs("every-object", root, tmp_path / "every")
    assert expected["splits"]["test_n"]["S"] > 0 and expected["splits"]["test_s"]["J"] > 0
    reads = []
    original = baselines.load_clip_masks
    monkeypatch.setattr(baselines, "load_clip_masks", lambda *a, **k: reads.append(a) or original(*a, **k))
    cached = baseline_scores("every-object", root, TEST_SPLITS, store, workers=1).to_dict()
    assert cached == expected  # every J, F, S and count, per split and per cue, to the last bit
    assert reads == []         # the targets came from the cache
    assert baseline_scores("every-object", root, TEST_SPLITS, workers=2).to_dict() == expected  # from gt_mask
    assert not (tmp_path / "every-object").exists()


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"every-object"}))
def test_other_baselines_in_memory_equal_pngs(synth, tmp_path, name):
    root, store = synth
    assert baseline_scores(name, root, TEST_SPLITS, store, workers=1).to_dict() == \
        scored_from_pngs(name, root, tmp_path / name)


def test_reference_aggregation_and_errors(synth, tmp_path):
    root, store = synth
    expected = scored_from_pngs("every-object", root, tmp_path / "every", aggregation="reference")
    assert baseline_scores("every-object", root, TEST_SPLITS, store, aggregation="reference",
                           workers=1).to_dict() == expected
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_scores("oracle", root, TEST_SPLITS)
    with pytest.raises(ValueError, match="unknown split"):
        baseline_scores("nothing", root, ["test_x"])


def test_a_repeated_uid_is_scored_with_the_one_prediction_written(toy_dataset, tmp_path):
    from refavs.data.records import Expression
    from refavs.data.writer import write_metadata

    # the real metadata repeats some uids; write_baseline writes one prediction per uid (from its
    # last row), which every row of that uid is scored with: here the test_s row's clip has two
    # objects, the repeat's (the null clip) none, so the test_s row is scored with an empty mask
    rows = read_metadata(toy_dataset)
    clip = next(e for e in rows if e.split == "test_s")
    null = next(e for e in rows if e.split == "test_n")
    rows += [Expression(clip.vid, "repeated_uid_1", "test_s", 0, "The drum on the left"),
             Expression(f"null_c-{null.vid}", "repeated_uid_1", "test_u", 0, "The bell")]
    write_metadata(DatasetLayout(toy_dataset).metadata, rows)
    splits = ["test_s", "test_u"]
    with pytest.warns(UserWarning, match="repeats"):
        write_baseline("every-object", toy_dataset, splits, tmp_path / "every", workers=1)
        expected = score_predictions(toy_dataset, splits, tmp_path / "every", workers=1).to_dict()
        assert baseline_scores("every-object", toy_dataset, splits, workers=1).to_dict() == expected
