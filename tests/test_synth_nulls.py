"""Ref-AVS Synth's null rows: replaced-track folders in every split, and test_n's four kinds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from refavs.data import NUM_FRAMES, DatasetLayout, load_clip_masks, read_metadata
from refavs.synth.expressions import NOTHING, REAL_NULL_TEMPLATES, Descriptor, Meaning, resolve, sentence
from refavs.synth.generate import generate
from refavs.synth.layout import folder_records, read_scenes
from refavs.synth.null_tracks import NULL_KINDS, silenced
from refavs.synth.presets import PRESETS, SynthPreset
from refavs.synth.scene import Scene
from refavs.synth.stats import dataset_stats, format_stats

PRESET = dataclasses.replace(PRESETS["small"], null_row_share=0.3).with_counts(
    train=24, val=8, test_s=0, test_u=0, test_n=30)
"""Many null folders in train and val (a larger share than the real one), and enough test_n clips
for each of its kinds."""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_nulls") / "data"
    generate(root, seed=3, preset=PRESET, size=48, workers=1)
    return root


@pytest.fixture(scope="module")
def records(data) -> list[dict]:
    return read_scenes(data)


def test_train_and_val_get_replaced_track_folders_of_the_clip(data, records):
    layout = DatasetLayout(data)
    rows = read_metadata(data)
    by_folder: dict[str, list] = {}
    for e in rows:
        by_folder.setdefault(e.folder, []).append(e)
    seen = {"train": set(), "val": set()}
    for rec in records:
        for extra in rec["null_folders"]:
            assert rec["split"] in ("train", "val")
            folder, track = extra["folder"], extra["track"]
            assert folder == {"muted": "null_m-", "changed": "null_c-"}[track] + rec["vid"]
            seen[rec["split"]].add(track)
            mine = by_folder[folder]
            assert len(mine) == PRESET.null_rows_per_folder
            assert {e.null_kind for e in mine} == {track} and {e.vid for e in mine} == {rec["vid"]}
            assert all(not load_clip_masks(layout, e).any() for e in mine)          # empty targets
            for t in range(NUM_FRAMES):   # the very frames of the clip
                assert layout.frame(folder, t).read_bytes() == layout.frame(rec["vid"], t).read_bytes()
            assert layout.audio(folder).read_bytes() != layout.audio(rec["vid"]).read_bytes()
            sounding = data / "gt_sounding" / folder
            assert len(list(sounding.iterdir())) == NUM_FRAMES
    assert seen["train"] == {"muted", "changed"} and seen["val"]


def test_a_muted_track_is_the_background_noise_and_a_changed_one_is_heard_off_screen(data, records):
    layout = DatasetLayout(data)
    checked = set()
    for rec in records:
        folders = [(x["folder"], x["track"], x.get("heard", [])) for x in rec["null_folders"]]
        if rec["track"] != "original":
            folders.append((rec["folder"], rec["track"], rec.get("heard", [])))
        for folder, track, heard in folders:
            wave, _ = sf.read(str(layout.audio(folder)), dtype="float64")
            rms = float(np.sqrt(np.mean(wave ** 2)))
            if track == "muted":
                assert rms < 1.2 * rec["noise_rms"], folder
            else:
                assert rms > 2 * rec["noise_rms"], folder
                shown = {o["visual"]["category"] for o in rec["objects"]}
                sounds = {(o["audio"]["pitch_hz"], o["audio"]["timbre"]) for o in rec["objects"]}
                assert heard and not {h["category"] for h in heard} & shown
                assert not {(h["audio"]["pitch_hz"], h["audio"]["timbre"]) for h in heard} & sounds
            checked.add(track)
    assert checked == {"muted", "changed"}


def test_null_sentences_fail_only_by_the_sound(data, records):
    """Each refers to nothing on the clip as heard in its folder, and the own ones name a target
    (or several) on the clip with its own track: only the audio tells them apart."""
    rows = {e.uid: e for e in read_metadata(data)}
    own = templates = 0
    for rec in records:
        clip = Scene.from_dict(rec)
        texts = {e["exp"]: e for e in rec["expressions"]}
        for extra in rec["null_folders"]:
            for e in extra["expressions"]:
                meaning = Meaning.from_dict(e["meaning"])
                assert resolve(meaning, silenced(clip)) is NOTHING, e["uid"]
                assert "audio" in rows[e["uid"]].extra["cue"].split(";")
                if e["source"] == "own":
                    own += 1
                    assert e["exp"] in texts and texts[e["exp"]]["target"] is not None
                    assert resolve(meaning, clip) == texts[e["exp"]]["target"]
                if e["source"] == "template":
                    templates += 1
                    assert e["exp"] in REAL_NULL_TEMPLATES.values()
    assert own >= 3 and templates > 5


def test_test_n_has_every_kind_and_says_which(data):
    rows = [e for e in read_metadata(data) if e.split == "test_n"]
    kinds = {e.null_kind for e in rows}
    assert kinds == set(NULL_KINDS)
    for e in rows:
        prefix = {"muted": "null_m-", "changed": "null_c-", "condition": "null_c-", "absent": "null_c-"}[e.null_kind]
        assert e.folder == prefix + e.vid
    heard = folder_records(read_scenes(data))
    for e in rows:
        rec = heard[e.folder]
        entry = next(x for x in rec["expressions"] if x["uid"] == e.uid)
        meaning = Meaning.from_dict(entry["meaning"])
        assert resolve(meaning, Scene.from_dict(rec)) is NOTHING, e.uid
        head = dataclasses.replace(meaning.head, column=None)
        names_one = any(head.matches(o.visual) for o in Scene.from_dict(rec).objects)
        if e.null_kind == "absent":
            assert not names_one, e.uid
        if e.null_kind == "condition":
            assert names_one, e.uid


def test_real_templates_also_have_targets_in_ordinary_clips():
    """"The sounding object" is one wording of its meaning wherever it has a target, so its words
    alone never mean "nothing"."""
    rng = np.random.default_rng(0)
    for clause, template in REAL_NULL_TEMPLATES.items():
        said = {sentence(Meaning(Descriptor(), clause), rng) for _ in range(60)}
        assert template in said and len(said) > 1, clause
    # a look in the head keeps Synth's own wordings only
    said = {sentence(Meaning(Descriptor(colour="red"), "sounding"), rng) for _ in range(60)}
    assert not said & set(REAL_NULL_TEMPLATES.values())


def test_the_real_share_of_null_rows_and_bad_settings():
    medium = PRESETS["medium"]
    for split in ("train", "val"):
        rows = medium.expressions_for(split)
        chance = medium.null_clip_chance(split)
        share = chance * medium.null_rows_per_folder / (rows + chance * medium.null_rows_per_folder)
        assert share == pytest.approx(medium.null_row_share)
    assert medium.null_clip_chance("test_s") == 0.0
    for bad in (dict(null_row_share=1.0), dict(null_row_share=-0.1), dict(null_rows_per_folder=0),
                dict(test_n_tracks=(0.0, 0.0, 0.0)), dict(test_n_tracks=(1.0, 1.0))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SynthPreset("bad", {"train": 1}, **bad)


def test_stats_count_null_rows_per_kind(data):
    stats = dataset_stats(data)
    assert set(stats.splits["test_n"].null_kinds) == set(NULL_KINDS)
    assert set(stats.splits["train"].null_kinds) == {"muted", "changed"}
    rows = read_metadata(data)
    assert stats.splits["train"].expressions == sum(e.split == "train" for e in rows)
    assert "null rows per kind" in format_stats(stats)


def test_labels_of_a_replaced_track_row(data):
    from refavs.data.labels import SOUND_RANKS, TARGET_SECONDS
    from refavs.synth.labels import SynthLabels
    from refavs.synth.sound_ranks import IGNORE

    labels = SynthLabels(data)
    row = next(e for e in read_metadata(data, ["train"]) if e.null_kind)
    targets = labels.targets(row, row.folder, features=None)
    assert not targets[TARGET_SECONDS].any()
    assert (targets[SOUND_RANKS] == IGNORE).all()          # no visible object sounds there
    clip_row = next(e for e in read_metadata(data, ["train"]) if e.vid == row.vid and not e.null_kind)
    assert (labels.targets(clip_row, clip_row.folder, features=None)[SOUND_RANKS] != IGNORE).any() or \
        not any(o["audio"]["seconds"] for r in read_scenes(data) if r["vid"] == row.vid for o in r["objects"])
