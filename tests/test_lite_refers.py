"""The shipped ``lite`` checkpoint (the main job's model) refers: on a clip of Ref-AVS Synth's
test_s split, as a video file through ``refavs predict``'s pipeline and the web demo's predict,
a sentence naming one object segments that object, and a sentence naming another segments the
other one.

The clip and the sentences are the benchmark's own, chosen by what the data holds (the first
test_s clip with two of its sentences about two different objects that are in view in every
frame, neither about one of two look-alikes that mono audio cannot tell apart), never by how the
model does on them. Synth clips are seeded by (seed, split, index), so these are the same clips
and sentences as in the main job's test_s split. (Until 2026-11-29 the sentences were the bare
category names, "The guitar" and "The trumpet"; Synth's training split holds almost no such
sentence, and the 6-epoch checkpoint leaves "The trumpet" empty: docs/experiments.md.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refavs.data.layout import DatasetLayout
from refavs.data.masks import load_clip_masks
from refavs.data.records import Expression

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "lite-synth-medium"

OWN_IOU = 0.85
"""Least IoU of each sentence's masks with the object it names (the README's figures are about 0.9)."""
OTHER_IOU = 0.05
"""Most IoU of each sentence's masks with the other object, and of the two sentences' masks (about 0)."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video path, {sentence: target masks [10, 256, 256]}) for the chosen test_s clip."""
    from refavs.synth.generate import generate
    from refavs.synth.layout import read_scenes
    from refavs.synth.presets import get_preset
    from refavs.synth.stats import twin_ambiguous
    from refavs.synth.video import clip_video

    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=8, test_u=0, test_n=0),
             workers=1, force=True)
    layout = DatasetLayout(root)
    for rec in read_scenes(root):
        in_view = {o["fid"] for o in rec["objects"] if all(a > 0 for a in o["visual"]["area"])}
        rows = [e for e in rec["expressions"] if e["target"] in in_view and not twin_ambiguous(rec, e)]
        pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:] if a["target"] != b["target"]]
        if pairs:
            break
    else:
        pytest.fail("no test_s clip of the first 8 has two sentences about two objects always in view")
    targets = {}
    for e in pairs[0]:
        row = Expression(rec["vid"], e["uid"], "test_s", int(e["target"]), e["exp"])
        targets[e["exp"]] = load_clip_masks(layout, row).astype(bool)
    video = clip_video(root, rec["folder"], root / "clip.mp4")
    return video, targets


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def pipe():
    from refavs.inference import RefAVSPipeline

    return RefAVSPipeline.from_pretrained(CHECKPOINT)


def test_the_shipped_checkpoint_is_the_lite_config():
    config = json.loads((CHECKPOINT / "config.json").read_text())["config"]
    assert config["architecture"] == "lite"


def test_each_sentence_segments_the_object_it_names(pipe, clip):
    video, targets = clip
    (first, target_a), (second, target_b) = targets.items()
    masks = {sentence: pipe(video, sentence).masks for sentence in targets}
    a, b = masks[first], masks[second]
    ious = {"first/own": iou(a, target_a), "first/other": iou(a, target_b),
            "second/own": iou(b, target_b), "second/other": iou(b, target_a), "first/second": iou(a, b)}
    # the named object, nearly as well as the README reports (about 0.9), and not the other one
    assert ious["first/own"] >= OWN_IOU and ious["second/own"] >= OWN_IOU, ious
    assert ious["first/other"] <= OTHER_IOU and ious["second/other"] <= OTHER_IOU, ious
    assert ious["first/second"] <= OTHER_IOU, ious


def test_the_web_demo_gives_the_same_masks(pipe, clip, tmp_path):
    from refavs.app import AppConfig, predict

    video, targets = clip
    sentence = next(iter(targets))
    result = predict(pipe, str(video), sentence, 0.0, AppConfig(checkpoint=str(CHECKPOINT)), tmp_path)
    assert not result["error"], result["status"]
    assert len(result["masks"]) == 10
    assert np.array_equal(pipe(video, sentence).masks, np.stack(
        [np.asarray(Image.open(png)) > 0 for png, _ in result["masks"]]))


@pytest.fixture(scope="module")
def muted_clip(tmp_path_factory):
    """(video path, sentences) of the first muted folder of Synth's test_n (``null_m-<vid>``: the
    clip's frames with the background noise alone) and its rows written with the real benchmark's
    null templates; chosen by what the data holds, never by how the model does on them."""
    from refavs.data.metadata import read_metadata
    from refavs.synth.expressions import REAL_NULL_TEMPLATES
    from refavs.synth.generate import generate
    from refavs.synth.presets import get_preset
    from refavs.synth.video import clip_video

    root = tmp_path_factory.mktemp("synth_n")
    generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=0, test_u=0, test_n=6),
             workers=1, force=True)
    rows = [e for e in read_metadata(root, ["test_n"]) if e.null_kind == "muted"]
    folder = rows[0].folder
    sentences = [e.exp for e in rows if e.folder == folder and e.exp in REAL_NULL_TEMPLATES.values()]
    if not sentences:
        pytest.fail(f"{folder}: no row written with a real null template")
    return clip_video(root, folder, root / "muted.mp4"), sentences


def test_a_sentence_about_a_sound_finds_nothing_on_a_muted_track(pipe, clip, muted_clip):
    """The benchmark's null rows: on a muted track "The sounding object" (or another real null
    template) segments nothing in any frame, while on a clip whose objects sound it does mark one."""
    video, sentences = muted_clip
    for sentence in sentences:
        result = pipe(video, sentence)
        assert not result.masks.any(axis=(1, 2)).any(), (sentence, result.frame_areas)
    heard = pipe(clip[0], "The sounding object")
    assert heard.present and heard.masks.any(axis=(1, 2)).sum() >= 5, heard.frame_areas
