"""Scoring several variants (None, audio zeroed, text zeroed) in one pass gives the numbers of
separate ``evaluate(..., ablate=...)`` calls, with the clip path run once for None and text."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refavs.data.batch import ClipBatch
from refavs.data.image import ImageConfig
from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.records import Expression
from refavs.data.writer import write_audio, write_frames, write_masks, write_metadata
from refavs.models.build import build_model
from refavs.models.registry import get_model_config
from refavs.training.evaluate import (PredictionWriter, evaluate, evaluate_variants, forward_groups, stack_variants,
                                      variant_plan)

SIZE = 32


class FakeFeatures:
    """Deterministic random features per media folder and expression string (no cache needed)."""

    has_visual_maps = True

    def __init__(self, config):
        self.config = config

    @staticmethod
    def _rng(key: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(key.encode()))

    def audio(self, folder):
        return self._rng("a" + folder).standard_normal((NUM_FRAMES, self.config.audio_dim)).astype(np.float32)

    def text_of(self, expression):
        rng = self._rng("t" + expression)
        mask = np.zeros(self.config.text_tokens, dtype=bool)
        mask[:3 + len(expression) % 7] = True
        return rng.standard_normal((self.config.text_tokens, self.config.text_dim)).astype(np.float32), mask

    def visual(self, folder):
        rng = self._rng("v" + folder)
        return {name: rng.standard_normal((NUM_FRAMES, *shape)).astype(np.float32)
                for name, shape in self.config.visual_maps.items()}


def _dataset(root: Path) -> Path:
    """test_s: 4 clips of 1 to 3 expressions; test_n: 2 null clips (empty targets)."""
    layout = DatasetLayout(root)
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i, n in enumerate((3, 1, 2, 3)):
        vid = f"clip{i}_0_10000"
        write_frames(layout, vid, rng.integers(0, 255, (NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
        write_audio(layout, vid, 0.1 * rng.standard_normal(16000).astype(np.float32))
        for fid in range(n):
            c = 6 + 8 * fid
            write_masks(layout, vid, fid, ((yy - c) ** 2 + (xx - c) ** 2 < 25)[None].repeat(NUM_FRAMES, 0))
            rows.append(Expression(vid, f"{vid}_obj_{fid}", "test_s", fid, f"the object number {fid} of clip {i}"))
    for i in range(2):
        vid = f"nclip{i}_0_10000"
        folder = f"null_c-{vid}"
        write_frames(layout, folder, rng.integers(0, 255, (NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
        write_audio(layout, folder, 0.1 * rng.standard_normal(16000).astype(np.float32))
        write_masks(layout, folder, 0, np.zeros((NUM_FRAMES, SIZE, SIZE), dtype=bool))
        rows.append(Expression(vid, f"{folder}_null_1", "test_n", 0, "the barking dog"))
    write_metadata(layout.metadata, rows)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    config = get_model_config("lite", ["head.dim=32", "head.fine_dim=16", "backbone.image_size=64"])
    model = build_model(config, load_pretrained=False).eval()
    return model, FakeFeatures(config), _dataset(tmp_path_factory.mktemp("variants") / "data")


def _assert_same(a, b, tol=1e-4):
    assert list(a.splits) == list(b.splits)
    for split, sa in a.splits.items():
        sb = b.splits[split]
        pairs = [(sa.result, sb.result)] + [(sa.cues[k], sb.cues[k]) for k in sa.cues]
        assert set(sa.cues) == set(sb.cues)
        for ra, rb in pairs:
            assert ra.n_expressions == rb.n_expressions and ra.n_frames == rb.n_frames
            for m in ("J", "F", "S"):
                x, y = getattr(ra, m), getattr(rb, m)
                assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol, (split, m, x, y)


@pytest.mark.parametrize("merge,forward_rows", [("clip", "auto"), ("clip", 2), ("all", None), ("none", 3)])
def test_one_pass_gives_the_numbers_of_separate_calls(setup, tmp_path, merge, forward_rows):
    model, features, data = setup
    image = ImageConfig(size=64)
    plan = {None: ["test_s", "test_n"], "audio": ["test_s", "test_n"], "text": ["test_s"]}
    kwargs = dict(batch_size=4, aggregation="reference")
    got = evaluate_variants(model, data, ["test_s", "test_n"], features, image, variants=plan, merge=merge,
                            forward_rows=forward_rows, save_pred=tmp_path / "new", **kwargs)
    assert set(got) == {None, "audio", "text"}
    for variant, splits in plan.items():
        want = evaluate(model, data, splits, features, image, ablate=variant, forward_rows=None, pred_workers=0,
                        save_pred=tmp_path / "old" if variant is None else None, **kwargs)
        _assert_same(got[variant], want)
    old = sorted(p.relative_to(tmp_path / "old") for p in (tmp_path / "old").rglob("*.png"))
    new = sorted(p.relative_to(tmp_path / "new") for p in (tmp_path / "new").rglob("*.png"))
    assert old == new and len(old) == 11 * NUM_FRAMES
    a = np.stack([np.asarray(Image.open(tmp_path / "old" / p), dtype=int) for p in old])
    b = np.stack([np.asarray(Image.open(tmp_path / "new" / p), dtype=int) for p in old])
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-4  # float rounding at a level boundary, at most


def test_the_clip_path_runs_once_for_none_and_text(setup, monkeypatch):
    model, features, data = setup
    image = ImageConfig(size=64)
    seen = []
    inner = type(model)._clip_features

    def counting(self, maps, sounds):
        seen.append(sounds.shape[0])
        return inner(self, maps, sounds)

    monkeypatch.setattr(type(model), "_clip_features", counting)
    counts = {}
    for merge in ("clip", "none"):
        seen.clear()
        evaluate_variants(model, data, ["test_s"], features, image, batch_size=4, merge=merge, forward_rows=None)
        counts[merge] = sum(seen)
    # batches of 4 expressions of clips (0,0,0,1), (2,2,3,3), (3,): 5 clip rows per variant
    assert counts == {"clip": 2 * 5, "none": 3 * 5}


def test_stacked_rows_keep_or_split_their_clips():
    b = 2
    batch = ClipBatch(
        pixel_values=None, audio=torch.ones(b, NUM_FRAMES, 4), text=torch.ones(b, 5, 3),
        text_mask=torch.ones(b, 5, dtype=torch.bool), masks=torch.ones(b, NUM_FRAMES, 8, 8), uids=["u0", "u1"],
        clips=["c0", "c0"], visual={"s8": torch.ones(b, NUM_FRAMES, 2, 2, 2)})
    stacked = stack_variants(batch, [None, "text", "audio"])
    assert stacked.masks is None and stacked.uids == ["u0", "u1"] * 3
    assert stacked.clips == ["c0", "c0", "c0", "c0", "c0|audio", "c0|audio"]
    assert stacked.text[:2].eq(1).all() and stacked.text[2:4].eq(0).all() and stacked.text[4:].eq(1).all()
    assert stacked.audio[:4].eq(1).all() and stacked.audio[4:].eq(0).all()
    assert stacked.text_mask.all()


def test_plans_and_groups():
    assert variant_plan([None, "text", None], ["a", "b"]) == {None: ["a", "b"], "text": ["a", "b"]}
    assert variant_plan({"audio": ["a"]}, ["a", "b"]) == {"audio": ["a"]}
    with pytest.raises(ValueError, match="variant"):
        variant_plan(["loud"], ["a"])
    assert forward_groups([None, "audio", "text", "visual"]) == [[None, "text"], ["audio"], ["visual"]]
    assert forward_groups([None, "audio"], "all") == [[None, "audio"]]
    assert forward_groups([None, "audio"], "none") == [[None], ["audio"]]


def test_save_pred_needs_the_unablated_variant(setup, tmp_path):
    model, features, data = setup
    with pytest.raises(ValueError, match="None variant"):
        evaluate_variants(model, data, ["test_s"], features, ImageConfig(size=64), variants=["audio"],
                          save_pred=tmp_path)


def test_prediction_writer_raises_a_write_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = PredictionWriter(blocker, workers=1)
    writer.write("uid", np.zeros((NUM_FRAMES, 8, 8), dtype=np.float32))
    with pytest.raises(OSError):
        writer.close()


def test_other_audio_gives_each_clip_the_next_clips_audio():
    import dataclasses as dc

    import torch

    from refavs.data.batch import ClipBatch
    from refavs.training.evaluate import ablate_batch, other_clip_rows

    clips = ["a", "a", "b", "c", "c"]
    assert other_clip_rows(clips, 5).tolist() == [2, 2, 3, 0, 0]
    assert other_clip_rows(["a", "a"], 2) is None and other_clip_rows(None, 2) is None
    audio = torch.arange(5.0)[:, None, None].expand(5, 10, 4).clone()
    batch = ClipBatch(pixel_values=None, audio=audio, text=torch.zeros(5, 3, 2), text_mask=None, masks=None,
                      uids=[f"u{i}" for i in range(5)], clips=clips)
    swapped = ablate_batch(batch, "other_audio")
    assert swapped.audio[:, 0, 0].tolist() == [2.0, 2.0, 3.0, 0.0, 0.0]
    assert torch.equal(swapped.text, batch.text)
    with pytest.raises(ValueError, match="at least two clips"):
        ablate_batch(dc.replace(batch, clips=["a"] * 5), "other_audio")


def test_other_audio_pairs_the_clips_of_the_whole_batch_whatever_the_forward_size(setup, tmp_path):
    """The ablation is made on the whole batch before it is cut into forwards: forwards of one row
    (each holding a single clip) give the numbers of one forward for the batch."""
    model, features, data = setup
    image = ImageConfig(size=64)
    kwargs = dict(batch_size=4, variants=[None, "other_audio"])
    one = evaluate_variants(model, data, ["test_s"], features, image, forward_rows=1, **kwargs)
    whole = evaluate_variants(model, data, ["test_s"], features, image, forward_rows=None, **kwargs)
    _assert_same(one["other_audio"], whole["other_audio"])
    assert abs(one["other_audio"].splits["test_s"].result.F - one[None].splits["test_s"].result.F) > 1e-6
    # an ablated variant's predictions can be the ones saved
    evaluate(model, data, ["test_s"], features, image, ablate="other_audio", batch_size=4, save_pred=tmp_path / "p")
    assert len(list((tmp_path / "p").rglob("*.png"))) == 9 * NUM_FRAMES
