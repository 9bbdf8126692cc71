"""The shipped ``lite`` checkpoint (the main job's model) refers: on a clip of Ref-AVS Synth's
test_s split, as a video file through ``refavs predict``'s pipeline and the web demo's predict,
a sentence naming one object segments that object, and a sentence naming another segments the
other one.

The clip is chosen by what the data holds (the first test_s clip with two objects of different
categories in view in every frame), never by how the model does on it. Synth clips are seeded by
(seed, split, index), so these are the same clips as in the main job's test_s split.
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


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video path, {sentence: target masks [10, 256, 256]}) for the chosen test_s clip."""
    from refavs.synth.generate import generate, read_scenes
    from refavs.synth.presets import get_preset
    from refavs.synth.video import clip_video

    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=8, test_u=0, test_n=0),
             workers=1, force=True)
    layout = DatasetLayout(root)
    for rec in read_scenes(root):
        objects = [o for o in rec["objects"] if all(a > 0 for a in o["visual"]["area"])]
        categories = [o["visual"]["category"] for o in objects]
        pairs = [(a, b) for i, a in enumerate(objects) for b in objects[i + 1:]
                 if categories.count(a["visual"]["category"]) == 1 and categories.count(b["visual"]["category"]) == 1]
        if pairs:
            break
    else:
        pytest.fail("no test_s clip of the first 8 has two objects of different categories always in view")
    targets = {}
    for obj in pairs[0]:
        row = Expression(rec["vid"], f"{rec['vid']}_x_1", "test_s", int(obj["fid"]), "")
        targets[f"The {obj['visual']['category']}"] = load_clip_masks(layout, row).astype(bool)
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
    # the named object, not the other one
    assert iou(a, target_a) > 0.5 and iou(a, target_a) > 3 * iou(a, target_b)
    assert iou(b, target_b) > 0.5 and iou(b, target_b) > 3 * iou(b, target_a)
    assert iou(a, b) < 0.3


def test_the_web_demo_gives_the_same_masks(pipe, clip, tmp_path):
    from refavs.app import AppConfig, predict

    video, targets = clip
    sentence = next(iter(targets))
    result = predict(pipe, str(video), sentence, 0.0, AppConfig(checkpoint=str(CHECKPOINT)), tmp_path)
    assert not result["error"], result["status"]
    assert len(result["masks"]) == 10
    assert np.array_equal(pipe(video, sentence).masks, np.stack(
        [np.asarray(Image.open(png)) > 0 for png, _ in result["masks"]]))
