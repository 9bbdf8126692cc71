"""Null training expressions of Ref-AVS Synth: exact negatives, empty targets, off elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from refavs.data.dataset import RefAVSDataset
from refavs.data.labels import TARGET_SECONDS, label_source_for
from refavs.data.layout import folder_from_uid
from refavs.data.metadata import read_metadata
from refavs.synth.negatives import null_negatives


@pytest.fixture(scope="module")
def synth(synth_tiny):
    """The shared Synth ``tiny`` (only read here)."""
    return synth_tiny


class ZeroFeatures:
    """A feature source of the right shapes (the negatives' labels do not depend on features)."""

    def audio(self, folder):
        return np.zeros((10, 8), np.float32)

    def text_of(self, expression):
        return np.zeros((4, 6), np.float32), np.ones(4, bool)


def test_every_negative_names_nothing_in_its_clip(synth):
    from refavs.synth.expressions import NOTHING, Meaning, resolve
    from refavs.synth.layout import read_scenes
    from refavs.synth.scene import Scene

    rows = read_metadata(synth, ["train"])
    negatives = null_negatives(synth, rows, 0.5, seed=0)
    assert 0.3 * len(rows) <= len(negatives) <= 0.7 * len(rows)
    records = {r["vid"]: r for r in read_scenes(synth)}
    meaning_of = {e["exp"]: Meaning.from_dict(e["meaning"]) for r in records.values() for e in r["expressions"]}
    own_texts = {}
    for e in rows:
        own_texts.setdefault(e.vid, set()).add(e.exp)
    for n in negatives:
        assert n.empty and n.split == "train" and folder_from_uid(n.uid) == n.vid
        assert n.exp not in own_texts[n.vid]   # another clip's sentence
        assert resolve(meaning_of[n.exp], Scene.from_dict(records[n.vid])) is NOTHING
    assert len({n.uid for n in negatives}) == len(negatives)
    # seeded: the same negatives again, others with another seed
    assert null_negatives(synth, rows, 0.5, seed=0) == negatives
    assert null_negatives(synth, rows, 0.5, seed=1) != negatives
    assert null_negatives(synth, rows, 0.0) == []


def test_present_negatives_name_an_object_of_their_clip(synth):
    from dataclasses import replace

    from refavs.synth.expressions import Meaning
    from refavs.synth.layout import read_scenes
    from refavs.synth.scene import Scene

    rows = read_metadata(synth, ["train"])
    records = {r["vid"]: r for r in read_scenes(synth)}
    meaning_of = {e["exp"]: Meaning.from_dict(e["meaning"]) for r in records.values() for e in r["expressions"]}

    def names_one(n) -> bool:
        head = replace(meaning_of[n.exp].head, column=None)
        return any(head.matches(o.visual) for o in Scene.from_dict(records[n.vid]).objects)

    every = null_negatives(synth, rows, 1.0, seed=0)
    present = null_negatives(synth, rows, 1.0, seed=0, present=True)
    assert present and all(names_one(n) for n in present)
    assert not all(names_one(n) for n in every)   # the plain draw also names absent looks


def test_a_negative_has_an_empty_target_that_never_sounds(synth):
    rows = read_metadata(synth, ["train"])
    negative = null_negatives(synth, rows, 1.0, seed=0)[0]
    positive = next(e for e in rows if e.vid == negative.vid)
    data = RefAVSDataset(synth, "train", ZeroFeatures(), expressions=[positive, negative], check_features=False,
                         use_media_cache=False, labels=label_source_for(synth))
    pos, neg = data[0], data[1]
    assert pos.masks.sum() > 0 and TARGET_SECONDS in pos.targets
    assert neg.masks.shape == pos.masks.shape and neg.masks.sum() == 0
    assert TARGET_SECONDS in neg.targets and neg.targets[TARGET_SECONDS].sum() == 0
    assert neg.clip == pos.clip   # same clip: it joins the clip's batch


def test_bad_share_and_other_datasets_are_refused(synth, toy_dataset):
    rows = read_metadata(synth, ["train"])
    with pytest.raises(ValueError, match="share must be >= 0"):
        null_negatives(synth, rows, -0.1)
    with pytest.raises(FileNotFoundError, match="scenes.jsonl"):
        null_negatives(toy_dataset, read_metadata(toy_dataset, ["train"]), 0.5)


def test_the_trainer_leaves_them_off_without_scenes(toy_dataset):
    from refavs.training.config import get_train_config
    from refavs.training.trainer import training_rows

    said = []
    rows = read_metadata(toy_dataset, ["train"])
    config = get_train_config("lite", ["null_negatives=0.3", "drop_twin_ambiguous=false"])
    assert label_source_for(toy_dataset) is None
    assert training_rows(toy_dataset, config, None, said.append) == rows
    assert "null_negatives=0.3 ignored" in said[0] and "no label source" in said[0]
