"""Ref-AVS Synth: official layout, tags, splits, exact masks, aligned audio, determinism, oracles, CLI."""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from refavs.data import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout, folder_from_uid, load_clip_masks, read_metadata
from refavs.data.check import check_dataset
from refavs.data.frames import load_clip_frames
from refavs.data.writer import write_metadata
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import expression_cues, score_predictions
from refavs.synth import cli as synth_cli
from refavs.synth.audio import second_span
from refavs.synth.categories import CATEGORIES, COLOURS, check_table, seen_categories, unseen_categories
from refavs.synth.expressions import CUE_TYPES, NOTHING, Meaning, resolve, silent_candidates
from refavs.synth.generate import GENERATOR_VERSION, OWNED_PATHS, generate, is_generation
from refavs.synth.layout import (SCENES_FILE, SOUNDING_DIR, SYNTH_FILE, folder_records, has_sounding, read_scenes,
                                 sounding_masks_dir)
from refavs.synth.presets import PRESETS, SynthPreset, check_size
from refavs.synth.render import shape_mask
from refavs.synth.scene import ObjectVisual, Scene
from refavs.synth.sounding import load_sounding_masks, target_sounding_seconds

TEST_PRESET = dataclasses.replace(PRESETS["small"], null_row_share=0.3).with_counts(
    train=16, val=10, test_s=10, test_u=10, test_n=8)
"""Big enough for the per-split shares and the oracles, small enough for seconds; more null rows
than the real share, so that train and val hold some."""
TEST_SIZE = 64
NON_NULL = ("train", "val", "test_s", "test_u")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, seed=0, preset=TEST_PRESET, size=TEST_SIZE, workers=1)
    return root


@pytest.fixture(scope="module")
def scenes(synth) -> dict[str, dict]:
    return {rec["vid"]: rec for rec in read_scenes(synth)}


@pytest.fixture(scope="module")
def heard(synth) -> dict[str, dict]:
    """Per media folder, the scene as heard there (replaced tracks: no visible object sounds)."""
    return folder_records(read_scenes(synth))


@pytest.fixture(scope="module")
def entries(heard) -> dict[str, dict]:
    """Every expression's scenes.jsonl entry, by uid."""
    return {e["uid"]: e for rec in heard.values() for e in rec["expressions"]}


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``refavs synth ARGV`` through its own registration; (exit status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="refavs")
    register_into = parser.add_subparsers(dest="command", required=True)
    synth_cli.register(register_into)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args(["synth", *argv])
            code = args.func(args)
        except SystemExit as exit_:
            code = exit_.code
    return int(code or 0), out.getvalue(), err.getvalue()


def reference_resize(mask: np.ndarray) -> np.ndarray:
    """A native-size bool mask brought to 256x256 as the reference loader does (bilinear, > 0)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((MASK_SIZE, MASK_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(img) > 0


def masks_from_scene(obj: dict, size: int) -> np.ndarray:
    """An object's masks rebuilt from the visual part of the scene description only."""
    v = obj["visual"]
    out = np.zeros((NUM_FRAMES, size, size), dtype=bool)
    for t, c in enumerate(v["centers"]):
        if c is not None:
            out[t] = shape_mask(v["shape"], c[0], c[1], v["radius"], size)
    return out


# --------------------------------------------------------------------------------------------
# layout


def test_layout_is_official_and_check_is_clean(synth, scenes):
    assert {p.name for p in synth.iterdir()} == {"metadata.csv", "media", "gt_mask", SOUNDING_DIR, SCENES_FILE,
                                                 SYNTH_FILE}
    report = check_dataset(synth)
    assert report.ok, [str(p) for p in report.problems[:5]]
    rows = read_metadata(synth)
    assert report.n_expressions == len(rows) > 0
    assert {e.split for e in rows} == set(SPLITS)
    layout = DatasetLayout(synth)
    for rec in scenes.values():
        assert sorted(p.name for p in (layout.media_dir(rec["folder"]) / "frames").iterdir()) == \
            sorted(f"{t}.jpg" for t in range(NUM_FRAMES))
        with Image.open(layout.frame(rec["folder"], 0)) as img:
            assert img.size == (TEST_SIZE, TEST_SIZE) and img.mode == "RGB"
        info = sf.info(str(layout.audio(rec["folder"])))
        assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 160_000)


def test_uids_and_folders_follow_the_benchmark(synth, scenes):
    layout = DatasetLayout(synth)
    for e in read_metadata(synth):
        rec = scenes[e.vid]
        if e.split == "test_n" or e.null_kind:
            assert re.fullmatch(rf"null_[cm]-{re.escape(e.vid)}_null_\d+", e.uid), e.uid
            assert e.folder in (f"null_c-{e.vid}", f"null_m-{e.vid}") and e.fid == 0
            if e.split == "test_n":
                assert e.folder == rec["folder"] and not layout.media_dir(e.vid).exists()
            else:
                assert e.folder in {x["folder"] for x in rec["null_folders"]} and rec["folder"] == e.vid
            assert layout.media_dir(e.folder).is_dir()
            assert not load_clip_masks(layout, e).any(), f"{e.uid}: a null expression's mask must be empty"
        else:
            category = rec["objects"][e.fid]["visual"]["category"]
            assert re.fullmatch(rf"{re.escape(e.vid)}_{category}_\d+", e.uid), e.uid
            assert folder_from_uid(e.uid) == e.vid == rec["folder"]
            assert load_clip_masks(layout, e).any(), f"{e.uid}: the referred object is never visible"
    assert len({e.uid for e in read_metadata(synth)}) == len(read_metadata(synth))


def test_extra_columns_cue_and_needs_audio(synth, scenes):
    with open(synth / "metadata.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["vid", "uid", "split", "fid", "exp", "cue", "needs_audio", "clause", "null_kind"]
    written = {e["uid"]: e for rec in scenes.values()
               for e in [*rec["expressions"], *(e for x in rec["null_folders"] for e in x["expressions"])]}
    for e in read_metadata(synth):
        tags = e.extra["cue"].split(";")
        assert tags and set(tags) <= set(CUE_TYPES) and tags == [c for c in CUE_TYPES if c in tags]
        assert e.extra["needs_audio"] in ("0", "1")
        assert ("null" in tags) == (e.null_kind is not None) == (e.split == "test_n" or e.folder != e.vid)
        assert expression_cues(e) == tuple(tags)          # the scorer groups by this column
        meaning = Meaning.from_dict(written[e.uid]["meaning"])
        assert e.clause == meaning.kind                    # the scorer's per-clause groups
        if e.extra["needs_audio"] == "1" and e.null_kind is None:
            assert "audio" in tags, f"{e.uid}: needs audio but has no audio cue"
        assert written[e.uid]["exp"] == e.exp and written[e.uid]["fid"] == e.fid


def test_needs_audio_and_temporal_shares_per_split(synth):
    rows = read_metadata(synth)
    for split in NON_NULL:
        part = [e for e in rows if e.split == split]
        audio = sum(e.extra["needs_audio"] == "1" for e in part) / len(part)
        temporal = sum("temporal" in e.extra["cue"].split(";") for e in part) / len(part)
        print(f"{split}: {len(part)} expressions, needs_audio {audio:.0%}, temporal {temporal:.0%}")
        assert audio >= 0.30, f"{split}: only {audio:.0%} of expressions need audio"
        assert temporal >= 0.10, f"{split}: only {temporal:.0%} of expressions use the order of events"
    cues = {c for e in rows for c in e.extra["cue"].split(";")}
    assert cues == set(CUE_TYPES)


def test_test_u_categories_are_unseen_and_unnamed(synth, scenes):
    by_split: dict[str, set[str]] = {}
    for rec in scenes.values():
        by_split.setdefault(rec["split"], set()).update(o["visual"]["category"] for o in rec["objects"])
    seen_names = {c.name for c in seen_categories()}
    assert by_split["test_u"] and by_split["test_u"] <= {c.name for c in unseen_categories()}
    assert not by_split["test_u"] & (by_split["train"] | by_split["val"])
    for split in ("train", "val", "test_s", "test_n"):
        assert by_split[split] <= seen_names
    names = {c.name for c in CATEGORIES}
    for e in read_metadata(synth, ["test_u"]):
        words = set(re.findall(r"[a-z]+", e.exp.lower()))
        assert not words & names, f"{e.uid}: test_u expression names a category: {e.exp!r}"
    # the check above can fail: seen splits do name categories
    assert any(set(re.findall(r"[a-z]+", e.exp.lower())) & names for e in read_metadata(synth, ["train"]))
    info = json.loads((synth / SYNTH_FILE).read_text())
    table = {c["name"]: c for c in info["categories"]}
    assert len(table) >= 12 and all(table[n]["splits"] == ["test_u"] for n in by_split["test_u"])
    assert all("test_u" not in table[n]["splits"] for n in seen_names)


def test_category_table_rules():
    check_table()
    assert len(seen_categories()) >= 12 and len(unseen_categories()) >= 1
    looks = {(c.look.shape, c.look.colour, c.look.texture) for c in CATEGORIES}
    sounds = {(c.sound.pitch_hz, c.sound.timbre, c.sound.rhythm) for c in CATEGORIES}
    assert len(looks) == len(sounds) == len(CATEGORIES)
    seen_pitches = sorted(c.sound.pitch_hz for c in seen_categories())
    assert min(b / a for a, b in zip(seen_pitches, seen_pitches[1:])) > 2 ** (3 / 12)   # >= 3 semitones apart


# --------------------------------------------------------------------------------------------
# pixels and samples


def test_masks_are_exactly_the_drawn_objects(synth, scenes):
    layout = DatasetLayout(synth)
    for rec in scenes.values():
        size = rec["size"]
        rebuilt = [masks_from_scene(o, size) for o in rec["objects"]]
        assert not (np.sum(rebuilt, axis=0) > 1).any(), f"{rec['vid']}: objects overlap"
        for obj, mine in zip(rec["objects"], rebuilt):
            # objects' masks live under the vid (for test_n too, beside the null folder's empty fid_0)
            stored = np.stack([np.asarray(Image.open(layout.mask(rec["vid"], obj["fid"], t))) > 0
                               for t in range(NUM_FRAMES)])
            assert np.array_equal(stored, mine), f"{rec['vid']} fid {obj['fid']}: mask differs from the scene"
            assert [int(m.sum()) for m in stored] == obj["visual"]["area"]
            v = obj["visual"]
            if v["texture"] == "solid" and stored[0].any():
                frame = np.asarray(Image.open(layout.frame(rec["folder"], 0)), dtype=np.float64)
                inner = stored[0] & np.roll(stored[0], 1, 0) & np.roll(stored[0], -1, 0) \
                    & np.roll(stored[0], 1, 1) & np.roll(stored[0], -1, 1)
                mean = frame[inner].mean(axis=0)
                assert np.abs(mean - COLOURS[v["colour"]]).max() < 25, f"{rec['vid']}: pixels under the mask"


def test_audio_events_fill_whole_seconds_inside_their_window(synth, heard):
    layout = DatasetLayout(synth)
    checked = 0
    for rec in heard.values():   # every media folder, replaced tracks too (their sources are off screen)
        wave, rate = sf.read(str(layout.audio(rec["folder"])), dtype="float64")
        sounding = {s for o in [*rec["objects"], *rec.get("heard", [])] for s in o["audio"]["seconds"]}
        noise = rec["noise_rms"]
        for k in range(NUM_FRAMES):
            start, end = second_span(k, rate)
            body = np.sqrt(np.mean(wave[start:end] ** 2))
            # the quietest object (-16 dB, short pulses) still doubles the RMS of the background noise
            if k in sounding:
                assert body > 1.5 * noise, f"{rec['vid']} second {k}: an object should sound"
                checked += 1
            else:
                assert body < 1.15 * noise + 1e-4, f"{rec['vid']} second {k}: nothing should sound"
            # outside the part of second k that log-mel window k covers, only the background noise
            gap = wave[end:(k + 1) * rate]
            if gap.size > rate // 10:
                assert np.sqrt(np.mean(gap ** 2)) < 1.15 * noise + 1e-4, f"{rec['vid']}: sound leaks past {end}"
    assert checked > 50


# --------------------------------------------------------------------------------------------
# meanings and oracles


def test_stored_meanings_resolve_to_their_targets(heard):
    for rec in heard.values():   # each on the scene as heard in its folder
        scene = Scene.from_dict(rec)
        visuals = [ObjectVisual.from_dict(o["visual"]) for o in rec["objects"]]
        for e in rec["expressions"]:
            meaning = Meaning.from_dict(e["meaning"])
            result = resolve(meaning, scene)
            assert result == (NOTHING if e["target"] is None else e["target"]), e["uid"]
            candidates = silent_candidates(meaning, visuals)
            assert list(candidates) == e["candidates_without_audio"]
            expected = len(candidates) > (0 if e["target"] is None else 1)
            assert e["needs_audio"] == int(expected), e["uid"]


def test_each_clause_is_defined_once_and_completely():
    from refavs.synth.expressions import CLAUSES, Filter, Superlative

    # enumeration goes through the clauses in this order: reordering them changes the generated data
    assert list(CLAUSES) == ["none", "sounding", "silent", "keeps_sounding", "stops_sounding", "starts_sounding",
                             "appears", "leaves", "loudest", "quietest", "lowest_pitch", "highest_pitch",
                             "first_sound", "last_sound"]
    for name, clause in CLAUSES.items():
        assert clause.name == name
        assert set(clause.cues) <= set(CUE_TYPES) and clause.uses_audio == ("audio" in clause.cues)
        assert len(clause.templates) > 1 and all("{np}" in t and "{pos}" in t for t in clause.templates)
        assert isinstance(clause.rule, Superlative if clause.superlative else Filter)
    assert {n for n, c in CLAUSES.items() if c.superlative} == {
        "loudest", "quietest", "lowest_pitch", "highest_pitch", "first_sound", "last_sound"}
    assert {n for n, c in CLAUSES.items() if c.anchor} == {
        "none", "sounding", "silent", "loudest", "first_sound", "keeps_sounding", "stops_sounding"}


# The no-audio oracle: written here, independently of the generator, from the visual part of the
# scene and the meaning. Audio clauses keep every object that could fit them given when it is on screen.
MIN_RUN = 2


def _frames(v: dict) -> tuple[int, int]:
    on = [t for t, c in enumerate(v["centers"]) if c is not None]
    return on[0], on[-1] + 1


VISUAL_RULES = {
    "none": lambda first, end: True,
    "appears": lambda first, end: first >= MIN_RUN,
    "leaves": lambda first, end: end <= NUM_FRAMES - MIN_RUN,
    "keeps_sounding": lambda first, end: first == 0 and end == NUM_FRAMES,
    "stops_sounding": lambda first, end: min(end, NUM_FRAMES - MIN_RUN) - first >= MIN_RUN,
    "starts_sounding": lambda first, end: end - max(first, MIN_RUN) >= MIN_RUN,
}
"""What must be seen for a clause to be possible; clauses absent here are possible for any object."""


def oracle_candidates(meaning: dict, visuals: list[dict]) -> list[int]:
    head = meaning["head"]
    scope = [i for i, v in enumerate(visuals) if all(x is None or v[k] == x for k, x in head.items())]
    if meaning["anchor"] is None:
        rule = VISUAL_RULES.get(meaning["clause"], lambda first, end: True)
        return [i for i in scope if rule(*_frames(visuals[i]))]
    order = ("left", "centre", "right")
    found = set()
    for a in oracle_candidates(meaning["anchor"], visuals):
        ca = order.index(visuals[a]["column"])
        side = [i for i in scope if i != a and ((order.index(visuals[i]["column"]) < ca)
                                                if meaning["relation"] == "left_of"
                                                else (order.index(visuals[i]["column"]) > ca))]
        if len(side) == 1:
            found.add(side[0])
    return sorted(found)


def frame_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """The reference's per-frame J: background accuracy on an empty ground truth, else IoU."""
    if not truth.any():
        return float((~pred).mean())
    return float((pred & truth).sum() / (pred | truth).sum())


def test_oracles_through_the_real_scorer(synth, scenes, entries, tmp_path):
    rows = read_metadata(synth)
    full, blind = tmp_path / "scene_oracle", tmp_path / "no_audio_oracle"
    layout = DatasetLayout(synth)
    empty = np.zeros((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=bool)
    resized: dict[str, dict[int, np.ndarray]] = {}     # per clip, per fid: masks rebuilt from the scene, at 256
    chance_means, chance_vars, mismatched = [], [], []
    for e in rows:
        rec = scenes[e.vid]
        if e.vid not in resized:
            resized[e.vid] = {o["fid"]: np.stack([reference_resize(m) for m in masks_from_scene(o, rec["size"])])
                              for o in rec["objects"]}
        masks = resized[e.vid]
        info = entries[e.uid]
        # oracle 1: reads the generator's scene description (target + geometry)
        write_prediction(full, e.uid, (empty if info["target"] is None else masks[info["target"]]).astype(np.float32))
        # oracle 2: everything but the audio; uniform pick among the visually consistent objects
        if e.null_kind:
            write_prediction(blind, e.uid, empty.astype(np.float32))   # it knows null rows refer to nothing
            continue
        candidates = oracle_candidates(info["meaning"], [o["visual"] for o in rec["objects"]])
        assert info["target"] in candidates
        if (len(candidates) > 1) != (e.extra["needs_audio"] == "1"):
            mismatched.append(e.uid)
        pick = candidates[zlib.crc32(e.uid.encode()) % len(candidates)]
        write_prediction(blind, e.uid, masks[pick].astype(np.float32))
        if e.extra["needs_audio"] == "1":    # J of each possible pick: mean and variance of a uniform pick
            gt = load_clip_masks(layout, e)
            per_pick = [np.mean([frame_iou(masks[c][t], gt[t]) for t in range(NUM_FRAMES)]) for c in candidates]
            chance_means.append(np.mean(per_pick))
            chance_vars.append(np.var(per_pick))
    assert not mismatched, f"needs_audio disagrees with the visual oracle for {mismatched[:5]}"

    scene_oracle = score_predictions(synth, SPLITS, full)
    for split in SPLITS:
        print(f"scene oracle {split}: J = {scene_oracle.splits[split].result.J:.4f}")
        assert scene_oracle.splits[split].result.J == pytest.approx(1.0, abs=1e-9)   # every frame at 1
    assert scene_oracle.splits["test_n"].result.S == 0.0

    # the no-audio oracle on the rows that need audio and, as a check, on those that do not
    for flag in ("1", "0"):
        view = tmp_path / f"needs_audio_{flag}"    # the same dataset, restricted to these rows
        view.mkdir()
        for name in ("media", "gt_mask"):
            os.symlink(synth / name, view / name)
        subset = [e for e in rows if not e.null_kind and e.extra["needs_audio"] == flag]
        write_metadata(view / "metadata.csv", subset, ("cue", "needs_audio"))
        splits = sorted({e.split for e in subset}, key=SPLITS.index)
        report = score_predictions(view, splits, blind)
        n = {s: sum(e.split == s for e in subset) for s in splits}
        blind_j = sum(report.splits[s].result.J * n[s] for s in splits) / sum(n.values())
        for s in splits:
            print(f"needs_audio={flag} {s}: {n[s]} rows, no-audio oracle J = {report.splits[s].result.J:.3f}")
        if flag == "0":
            assert blind_j == pytest.approx(1.0, abs=1e-9), "rows not needing audio must be solvable by sight"
        else:
            rows_n = len(chance_means)
            chance, spread = float(np.mean(chance_means)), float(np.sqrt(np.sum(chance_vars))) / rows_n
            print(f"needs_audio rows: no-audio oracle J = {blind_j:.3f}, chance = {chance:.3f} +- {spread:.3f} "
                  f"(scene oracle: 1)")
            assert rows_n == sum(n.values()) >= 30
            assert chance < 0.65 and blind_j < 0.75
            assert abs(blind_j - chance) <= 3 * spread, "the no-audio oracle does better than chance"


# --------------------------------------------------------------------------------------------
# determinism, presets, CLI


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    preset = PRESETS["tiny"]
    generate(tmp_path / "a", seed=3, preset=preset, workers=1)
    generate(tmp_path / "b", seed=3, preset=preset, workers=2)
    generate(tmp_path / "c", seed=4, preset=preset, workers=1)
    a, b, c = (tree_hashes(tmp_path / x) for x in "abc")
    assert len(a) > 100 and a == b
    assert sum(k.startswith(SOUNDING_DIR + "/") for k in a) == NUM_FRAMES * sum(preset.clips.values())
    assert a["metadata.csv"] != c["metadata.csv"] and a["synth.json"] != c["synth.json"]
    info = json.loads((tmp_path / "a" / SYNTH_FILE).read_text())
    assert info["seed"] == 3 and info["preset"]["name"] == "tiny" and info["version"]
    assert {s: v["clips"] for s, v in info["counts"].items()} == dict(preset.clips)
    assert sum(v["expressions"] for v in info["counts"].values()) == len(read_metadata(tmp_path / "a"))


def test_more_train_expressions_leave_the_other_splits_as_they_were(tmp_path):
    preset = PRESETS["tiny"].with_counts(train=3, val=2, test_s=2, test_u=0, test_n=2)
    more = dataclasses.replace(preset, train_expressions_per_clip=4)
    assert more.expressions_for("train") == 4 and more.expressions_for("val") == preset.expressions_per_clip
    generate(tmp_path / "a", seed=5, preset=preset, workers=1)
    generate(tmp_path / "b", seed=5, preset=more, workers=1)
    a, b = read_metadata(tmp_path / "a"), read_metadata(tmp_path / "b")
    train_a = [e for e in a if e.split == "train"]
    train_b = [e for e in b if e.split == "train"]
    assert len(train_b) > len(train_a) and len(train_b) <= 4 * 3
    assert [(e.uid, e.exp) for e in a if e.split != "train"] == [(e.uid, e.exp) for e in b if e.split != "train"]
    for folder in ("media", "gt_mask"):
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / folder).rglob("*") if p.is_file())
        assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    # same name, other counts: not the same generation (the main job regenerates rather than reuse it)
    assert is_generation(tmp_path / "b", seed=5, preset=more) and not is_generation(tmp_path / "b", seed=5, preset=preset)
    with pytest.raises(ValueError, match="train_expressions_per_clip"):
        dataclasses.replace(preset, train_expressions_per_clip=0)
    with pytest.raises(ValueError, match="train_needs_audio_share"):
        dataclasses.replace(preset, train_needs_audio_share=1.5)


def test_the_name_slot_adds_a_plain_name_to_train_clips_only(tmp_path):
    from refavs.synth.expressions import Meaning

    preset = PRESETS["tiny"].with_counts(train=4, val=2, test_s=2, test_u=0, test_n=0)
    named = dataclasses.replace(preset, train_name_slot=True)
    generate(tmp_path / "a", seed=3, preset=preset, workers=1)
    generate(tmp_path / "b", seed=3, preset=named, workers=1)
    a, b = read_metadata(tmp_path / "a"), read_metadata(tmp_path / "b")
    assert [(e.uid, e.exp) for e in a if e.split != "train"] == [(e.uid, e.exp) for e in b if e.split != "train"]
    for scenes_of, names_wanted in ((tmp_path / "a", False), (tmp_path / "b", True)):
        for rec in read_scenes(scenes_of):
            if rec["split"] != "train":
                continue
            meanings = [Meaning.from_dict(e["meaning"]) for e in rec["expressions"]]
            names = [(m, e) for m, e in zip(meanings, rec["expressions"]) if m.is_name]
            once = [c for c in {o["visual"]["category"] for o in rec["objects"]}
                    if [o["visual"]["category"] for o in rec["objects"]].count(c) == 1]
            if names_wanted and once:
                assert names, f"{rec['vid']}: no name-only sentence though {once} is there once"
            for m, e in names:   # "The guitar": its one guitar
                assert e["exp"].lower().startswith(f"the {m.head.category}") and m.head.category in once
                assert rec["objects"][e["target"]]["visual"]["category"] == m.head.category
    assert len([e for e in b if e.split == "train"]) > len([e for e in a if e.split == "train"])
    assert is_generation(tmp_path / "b", seed=3, preset=named) and not is_generation(tmp_path / "b", seed=3, preset=preset)


def test_recolouring_changes_train_colours_only_and_the_sentences_follow(tmp_path):
    from refavs.synth.categories import get_category
    from refavs.synth.expressions import Meaning

    preset = PRESETS["tiny"].with_counts(train=8, val=2, test_s=2, test_u=0, test_n=0)
    recoloured = dataclasses.replace(preset, train_recolour=0.6)
    assert recoloured.recolour_for("train") == 0.6 and recoloured.recolour_for("val") == 0.0
    generate(tmp_path / "a", seed=4, preset=preset, workers=1)
    generate(tmp_path / "b", seed=4, preset=recoloured, workers=1)
    a, b = read_metadata(tmp_path / "a"), read_metadata(tmp_path / "b")
    assert [(e.uid, e.exp) for e in a if e.split != "train"] == [(e.uid, e.exp) for e in b if e.split != "train"]
    for f in sorted((tmp_path / "a" / "media").rglob("*")):   # val and test_s media, byte for byte
        if f.is_file() and "syn-tr" not in str(f):
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    changed = 0
    for rec in read_scenes(tmp_path / "b"):
        for obj in rec["objects"]:
            v = obj["visual"]
            own = get_category(v["category"]).look
            assert (v["shape"], v["texture"]) == (own.shape, own.texture)
            if v["colour"] != own.colour:
                assert rec["split"] == "train", f"{rec['vid']}: a {rec['split']} object was recoloured"
                changed += 1
        if rec["split"] != "train":
            continue
        frames = load_clip_frames(DatasetLayout(tmp_path / "b"), rec["folder"], rec["size"])   # the recorded colour
        for obj in rec["objects"]:
            t = next(k for k, box in enumerate(obj["visual"]["boxes"]) if box is not None)
            x0, y0, x1, y1 = obj["visual"]["boxes"][t]
            patch = frames[t][int(y0):int(y1) + 1, int(x0):int(x1) + 1].reshape(-1, 3).astype(float)
            target = np.array(COLOURS[obj["visual"]["colour"]], dtype=float)
            assert np.linalg.norm(patch - target, axis=1).min() < 40, f"{rec['vid']} object {obj['fid']}"
        for e in rec["expressions"]:   # a colour word names the colour its target has
            meaning = Meaning.from_dict(e["meaning"])
            if meaning.head.colour is not None and e["target"] is not None and meaning.anchor is None:
                assert rec["objects"][e["target"]]["visual"]["colour"] == meaning.head.colour
    assert changed >= 3
    assert is_generation(tmp_path / "b", seed=4, preset=recoloured) and not is_generation(tmp_path / "b", seed=4, preset=preset)
    with pytest.raises(ValueError, match="train_recolour"):
        dataclasses.replace(preset, train_recolour=1.5)


def test_preset_and_size_validation():
    with pytest.raises(ValueError, match="unknown split"):
        SynthPreset("x", {"training": 3})
    with pytest.raises(ValueError, match="size must be"):
        check_size(8)
    with pytest.raises(ValueError, match="unknown preset"):
        generate("/nonexistent/never", preset="huge")
    with pytest.raises(ValueError, match="seed"):
        generate("/nonexistent/never", preset="tiny", seed=-1)
    assert set(PRESETS) >= {"small", "medium", "large"}
    small = PRESETS["small"]
    assert small.size == 96 and small.clips["train"] * small.expressions_per_clip <= 400
    assert PRESETS["large"].clips["train"] > PRESETS["medium"].clips["train"] > small.clips["train"]


def test_stats_command(synth):
    code, out, err = run_cli(["--stats", str(synth)])
    assert code == 0, err
    for word in ("needs_audio", "objects/clip", "target area", *SPLITS, *CUE_TYPES):
        assert word in out
    code, out, err = run_cli(["--stats", str(synth), "--json"])
    assert code == 0, err
    stats = json.loads(out)
    rows = read_metadata(synth)
    for split in SPLITS:
        s = stats["splits"][split]
        part = [e for e in rows if e.split == split]
        assert s["expressions"] == len(part)
        assert s["needs_audio"] == sum(e.extra["needs_audio"] == "1" for e in part)
        assert sum(s["objects_per_clip"].values()) == s["clips"] == TEST_PRESET.clips[split]
        assert sum(s["categories"].values()) == len(part)
    assert stats["splits"]["test_n"]["categories"] == {"null": TEST_PRESET.clips["test_n"] * 2}
    assert 0 < stats["splits"]["train"]["mask_area"]["p50"] < 20
    assert "twin-ambiguous" in run_cli(["--stats", str(synth)])[1]
    for split in SPLITS:
        assert 0 <= stats["splits"][split]["twin_ambiguous"] <= stats["splits"][split]["needs_audio"]
    assert stats["splits"]["test_n"]["twin_ambiguous"] == 0


def test_twin_ambiguous_on_hand_made_scenes():
    from refavs.synth.stats import twin_ambiguous

    def obj(category, seconds, area):
        return {"visual": {"category": category, "area": area}, "audio": {"seconds": seconds}}

    on, off_late = [5] * 10, [5] * 5 + [0] * 5
    expression = {"needs_audio": 1, "target": 0, "candidates_without_audio": [0, 1]}
    # two bells, the target sounds while its twin is on screen: hearing a bell does not say which
    assert twin_ambiguous({"objects": [obj("bell", [1, 2], on), obj("bell", [], on)]}, expression)
    # the target is the silent twin: just as ambiguous
    assert twin_ambiguous({"objects": [obj("bell", [], on), obj("bell", [3], on)]}, expression)
    # the twin has left before the target sounds: the sound can only be the target's
    assert not twin_ambiguous({"objects": [obj("bell", [7, 8], on), obj("bell", [], off_late)]}, expression)
    # the other candidate is another category: its sound differs
    assert not twin_ambiguous({"objects": [obj("bell", [1], on), obj("drum", [], on)]}, expression)
    # rows that do not need audio, or a twin the expression already rules out, never count
    assert not twin_ambiguous({"objects": [obj("bell", [1], on), obj("bell", [], on)]},
                              {**expression, "needs_audio": 0})
    assert not twin_ambiguous({"objects": [obj("bell", [1], on), obj("bell", [], on)]},
                              {**expression, "candidates_without_audio": [0]})


def test_cli_generates_and_refuses_to_overwrite(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = run_cli(["--out", str(foreign), "--preset", "tiny"])
    assert code == 2 and "--force" in err and "not empty" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "ds"
    code, stdout, err = run_cli(["--out", str(out), "--preset", "tiny", "--seed", "1", "--workers", "1"])
    assert code == 0, err
    assert "wrote" in stdout and check_dataset(out).ok
    code, _, err = run_cli(["--out", str(out), "--preset", "tiny"])
    assert code == 2 and "already holds a Ref-AVS Synth dataset" in err
    code, stdout, err = run_cli(["--out", str(out), "--preset", "tiny", "--seed", "2", "--size", "48",
                                 "--force", "--json", "--workers", "1"])
    assert code == 0, err
    assert json.loads(stdout)["seed"] == 2 and json.loads((out / SYNTH_FILE).read_text())["size"] == 48
    with Image.open(out / "media" / "syn-tr00000_0_10000" / "frames" / "0.jpg") as img:
        assert img.size == (48, 48)
    assert check_dataset(out).ok

    code, _, err = run_cli(["--out", str(foreign), "--preset", "tiny", "--force", "--workers", "1"])
    assert code == 0 and (foreign / "notes.txt").read_text() == "keep me" and (foreign / SYNTH_FILE).is_file()


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/x", "--size", "8"], "--size"),
    (["--out", "{tmp}/x", "--size", "5000"], "--size"),
    (["--out", "{tmp}/x", "--size", "big"], "invalid int value"),
    (["--out", "{tmp}/x", "--seed", "-3"], "--seed"),
    (["--out", "{tmp}/x", "--workers", "0"], "--workers"),
    (["--out", "{tmp}/x", "--preset", "huge"], "invalid choice"),
    (["--stats", "{tmp}"], "synth.json"),
    (["--stats", "{tmp}/missing"], "not a folder"),
    (["--figure", "{tmp}", "{tmp}/f.jpg"], ".png"),
    (["--out", "{tmp}/x", "--stats", "{tmp}"], "not allowed with"),
    ([], "one of the arguments"),
])
def test_cli_bad_arguments(tmp_path, argv, message):
    code, out, err = run_cli([a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and message in err, err
    assert not (tmp_path / "x").exists()


def test_figure_command(synth, tmp_path):
    out = tmp_path / "fig.png"
    code, stdout, err = run_cli(["--figure", str(synth), str(out)])
    assert code == 0, err
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 10 * TEST_SIZE and img.height > 300
    code, _, err = run_cli(["--figure", str(synth), str(out), "--clips", "no-such-clip"])
    assert code == 2 and "no-such-clip" in err


def test_registered_in_the_refavs_command(synth):
    from refavs.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["synth", "--stats", str(synth), "--json"]) == 0
    assert json.loads(out.getvalue())["splits"]["train"]["clips"] == TEST_PRESET.clips["train"]


# --------------------------------------------------------------------------------------------
# sounding-object ground truth (gt_sounding/, Synth only)


def read_png_mask(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L", f"{path}: {img.mode}"
        return np.asarray(img) > 0


def test_sounding_masks_exist_for_every_media_folder(synth, heard):
    media = {p.name for p in (synth / "media").iterdir()}
    assert {p.name for p in (synth / SOUNDING_DIR).iterdir()} == media == set(heard)
    for folder in media:
        directory = sounding_masks_dir(synth, folder)
        assert sorted(p.name for p in directory.iterdir()) == [f"{t:05d}.png" for t in range(NUM_FRAMES)]
        with Image.open(directory / "00000.png") as img:
            assert img.size == (TEST_SIZE, TEST_SIZE) and img.format == "PNG"
    assert has_sounding(synth)
    assert not (synth / ".staging").exists()


def test_sounding_mask_is_the_union_of_the_sounding_objects(synth, heard):
    """Recomputed here from scenes.jsonl (who sounds when, in each media folder) and the gt_mask PNGs (where)."""
    silent = loud = 0
    for rec in heard.values():
        for t in range(NUM_FRAMES):
            expected = np.zeros((TEST_SIZE, TEST_SIZE), dtype=bool)
            for obj in rec["objects"]:
                if t in obj["audio"]["seconds"]:
                    expected |= read_png_mask(synth / "gt_mask" / rec["vid"] / f"fid_{obj['fid']}" / f"{t:05d}.png")
            stored = read_png_mask(synth / SOUNDING_DIR / rec["folder"] / f"{t:05d}.png")
            assert np.array_equal(stored, expected), f"{rec['folder']} second {t}"
            if not any(t in o["audio"]["seconds"] for o in rec["objects"]):
                assert not stored.any(), f"{rec['folder']} second {t}: nothing sounds, the mask must be empty"
                silent += 1
            else:
                loud += stored.any()
        loaded = load_sounding_masks(synth, rec["folder"], TEST_SIZE, resize="nearest")
        assert loaded.shape == (NUM_FRAMES, TEST_SIZE, TEST_SIZE) and loaded.dtype == bool
        assert np.array_equal(loaded, np.stack([read_png_mask(synth / SOUNDING_DIR / rec["folder"] / f"{t:05d}.png")
                                                for t in range(NUM_FRAMES)]))
    assert silent > 20 and loud > 100      # both kinds of seconds occur, so both checks bite
    at_256 = load_sounding_masks(synth, next(iter(heard.values()))["folder"])   # reference rule, 256 px
    assert at_256.shape == (NUM_FRAMES, MASK_SIZE, MASK_SIZE)


def test_target_sounding_seconds_mirror_gt_mask(synth, scenes, entries):
    seconds = target_sounding_seconds(synth)
    on_disk = {(d.name, int(f.name[len("fid_"):])) for d in (synth / "gt_mask").iterdir() for f in d.iterdir()}
    assert set(seconds) == on_disk
    for rec in scenes.values():
        for obj in rec["objects"]:
            got = seconds[(rec["vid"], obj["fid"])]
            assert got.dtype == bool and got.shape == (NUM_FRAMES,)
            assert np.flatnonzero(got).tolist() == obj["audio"]["seconds"]
        for folder in (rec["folder"], *(x["folder"] for x in rec["null_folders"])):
            if folder != rec["vid"]:
                assert not seconds[(folder, 0)].any()     # the null target never sounds
    # every expression's (folder, fid) has its target's seconds
    for e in read_metadata(synth):
        key = (DatasetLayout(synth).resolve_folder(e.uid, e.vid), e.fid)
        target = entries[e.uid]["target"]
        expected = [] if target is None else scenes[e.vid]["objects"][target]["audio"]["seconds"]
        assert np.flatnonzero(seconds[key]).tolist() == expected, e.uid
    assert any(v.any() for v in seconds.values()) and any(not v.any() for v in seconds.values())


def test_sounding_is_absent_outside_synth_and_errors_name_the_file(synth, tmp_path):
    from conftest import build_toy_dataset

    from refavs.data.masks import MediaError

    toy = tmp_path / "toy"
    build_toy_dataset(toy)
    assert not has_sounding(toy) and check_dataset(toy).ok
    with pytest.raises(MediaError, match="only Ref-AVS Synth"):
        load_sounding_masks(toy, "clip0_0_10000")
    with pytest.raises(FileNotFoundError, match=SCENES_FILE):
        target_sounding_seconds(toy)

    broken = tmp_path / "broken"
    folder = next(p.name for p in (synth / SOUNDING_DIR).iterdir())
    import shutil

    shutil.copytree(sounding_masks_dir(synth, folder), sounding_masks_dir(broken, folder))
    (broken / SYNTH_FILE).write_text("{}")
    assert has_sounding(broken)
    (sounding_masks_dir(broken, folder) / "00003.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="00003.png"):
        load_sounding_masks(broken, folder, 32)
    (sounding_masks_dir(broken, folder) / "00003.png").unlink()
    with pytest.raises(MediaError, match="00003.png.*not found"):
        load_sounding_masks(broken, folder, 32)
    with pytest.raises(MediaError, match="no-such-folder"):
        load_sounding_masks(broken, "no-such-folder", 32)


def test_official_reader_and_data_check_ignore_gt_sounding(synth, tmp_path):
    from refavs.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["data", "check", str(synth)]) == 0
    assert "no problems" in out.getvalue()
    # the same dataset without gt_sounding reads and checks the same
    view = tmp_path / "view"
    view.mkdir()
    for name in ("media", "gt_mask", "metadata.csv"):
        os.symlink(synth / name, view / name)
    a, b = check_dataset(synth), check_dataset(view)
    assert (a.ok, a.n_expressions, a.n_clips, a.n_mask_folders) == (b.ok, b.n_expressions, b.n_clips, b.n_mask_folders)
    assert read_metadata(view) == read_metadata(synth)


def test_files_are_the_official_writers_bytes(synth, scenes, tmp_path):
    """The staged writer of refavs.synth.files gives what refavs.data.writer would have written."""
    from refavs.data.writer import write_audio, write_frames, write_masks
    from refavs.synth.audio import synthesize
    from refavs.synth.render import render_clip

    for rec in list(scenes.values())[:: max(1, len(scenes) // 6)]:
        scene = Scene.from_dict(rec)
        clip = render_clip(scene)
        layout = DatasetLayout(tmp_path / rec["vid"])
        write_frames(layout, rec["folder"], clip.frames)
        write_audio(layout, rec["folder"], synthesize(scene, TEST_PRESET.scene.reference_rms))
        for obj in rec["objects"]:
            write_masks(layout, rec["vid"], obj["fid"], clip.masks[obj["fid"]])
        official = tree_hashes(layout.root)
        mine = tree_hashes(synth)
        assert len(official) == 11 + NUM_FRAMES * len(rec["objects"])
        assert {k: mine[k] for k in official} == official, rec["vid"]


def test_staged_commit_merges_into_an_existing_folder(tmp_path):
    from refavs.synth.files import STAGING_DIR, ClipFiles, remove_staging

    root = tmp_path / "ds"
    (root / "media" / "x").mkdir(parents=True)
    (root / "media" / "x" / "keep.txt").write_text("keep")
    (root / "media" / "x" / "audio.wav").write_bytes(b"old")
    files = ClipFiles()
    files.add_audio("x", np.zeros(16_000, dtype=np.float32))
    files.add_masks("y", 2, np.zeros((NUM_FRAMES, 8, 8), dtype=bool))
    files.commit(root)
    assert (root / "media" / "x" / "keep.txt").read_text() == "keep"
    assert sf.info(str(root / "media" / "x" / "audio.wav")).frames == 16_000
    assert sorted(p.name for p in (root / "gt_mask" / "y" / "fid_2").iterdir()) == \
        [f"{t:05d}.png" for t in range(NUM_FRAMES)]
    assert not any((root / STAGING_DIR).iterdir())
    remove_staging(root)
    assert not (root / STAGING_DIR).exists()


def test_windowed_shapes_equal_full_frame_shapes():
    """render draws each object in a window around it: the pixels are those of a full-frame evaluation."""
    from refavs.synth import render

    rng = np.random.default_rng(0)
    for _ in range(400):
        size = int(rng.choice([32, 64, 97, 128]))
        shape = str(rng.choice(["circle", "square", "diamond", "triangle", "cross", "hexagon", "star"]))
        texture = str(rng.choice(["solid", "striped", "checkered", "dotted"]))
        radius = round(float(rng.uniform(0.05, 0.3)) * size, 2)
        cx, cy = (round(float(v) * size, 2) for v in rng.uniform(-0.1, 1.1, size=2))
        xs, ys = render._pixel_grid(size)
        full = render._shape_in(shape, cx, cy, radius, xs, ys)
        assert np.array_equal(shape_mask(shape, cx, cy, radius, size), full)
        y0, y1, x0, x1 = render.object_window(cx, cy, radius, size)
        assert not full[:y0].any() and not full[y1:].any() and not full[:, :x0].any() and not full[:, x1:].any()
        shade = render._texture_in(texture, cx, cy, radius, *render._grid_window(size, (y0, y1, x0, x1)))
        assert np.array_equal(shade, render.texture_dark(texture, cx, cy, radius, size)[y0:y1, x0:x1])


def test_force_replaces_an_older_generation(tmp_path):
    out = tmp_path / "old"
    generate(out, seed=5, preset=PRESETS["tiny"], workers=1)
    assert SOUNDING_DIR in OWNED_PATHS and GENERATOR_VERSION == "1.2"
    assert is_generation(out, seed=5, preset="tiny")
    # make it look like a run of generator 1.0: no gt_sounding, version 1.0
    import shutil

    shutil.rmtree(out / SOUNDING_DIR)
    info = json.loads((out / SYNTH_FILE).read_text())
    (out / SYNTH_FILE).write_text(json.dumps({**info, "version": "1.0"}))
    assert not is_generation(out, seed=5, preset="tiny") and not has_sounding(out)
    code, _, err = run_cli(["--out", str(out), "--preset", "tiny", "--seed", "5"])
    assert code == 2 and "generator version 1.0, this is 1.2" in err and "--force" in err
    (out / SOUNDING_DIR / "stale").mkdir(parents=True)
    code, _, err = run_cli(["--out", str(out), "--preset", "tiny", "--seed", "5", "--force", "--workers", "1"])
    assert code == 0, err
    assert is_generation(out, seed=5, preset="tiny") and has_sounding(out)
    assert not (out / SOUNDING_DIR / "stale").exists()
    assert {p.name for p in (out / SOUNDING_DIR).iterdir()} == {p.name for p in (out / "media").iterdir()}
