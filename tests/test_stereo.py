"""Stereo: Ref-AVS Synth's panned tracks, the features that keep left and right, and the model on them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from refavs.data import DatasetLayout, read_metadata
from refavs.data.check import check_dataset
from refavs.features.audio.encoder import build_audio_featurizer
from refavs.features.cache.keys import audio_settings
from refavs.features.config import get_feature_config, stereo_bands
from refavs.synth import cli as synth_cli
from refavs.synth.audio import PAN_WIDTH, object_pan, pan_gains, second_span, synthesize
from refavs.synth.generate import generate, is_generation
from refavs.synth.layout import folder_records, read_scenes
from refavs.synth.null_tracks import CHANGED, MUTED, changed_sources, track_scene
from refavs.synth.presets import PRESETS
from refavs.synth.stats import dataset_stats, twin_ambiguous

PRESET = dataclasses.replace(PRESETS["small"], null_row_share=0.3, stereo=True).with_counts(
    train=10, val=3, test_s=4, test_u=3, test_n=6)


@pytest.fixture(scope="module")
def stereo_synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stereo") / "synth"
    generate(root, seed=3, preset=PRESET, workers=1)
    return root


@pytest.fixture(scope="module")
def mono_synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mono") / "synth"
    generate(root, seed=3, preset=dataclasses.replace(PRESET, stereo=False), workers=1)
    return root


def test_pan_gains_keep_the_mix_and_favour_the_near_side():
    for x in (0.0, 1 / 6, 0.5, 5 / 6, 1.0, -0.3, 1.7):
        left, right = pan_gains(x)
        assert (left + right) / 2 == pytest.approx(1.0)
    assert pan_gains(0.5) == (1.0, 1.0)
    left, right = pan_gains(1 / 6)
    assert left > right and 20 * np.log10(left / right) == pytest.approx(20 * np.log10((1 + 2 / 3) / (1 - 2 / 3)))
    assert pan_gains(5 / 6) == pytest.approx(pan_gains(1 / 6)[::-1])
    assert PAN_WIDTH <= 1.0  # no gain goes negative


def test_stereo_tracks_mix_to_the_mono_track_and_pan_by_column(stereo_synth, mono_synth):
    layout_s, layout_m = DatasetLayout(stereo_synth), DatasetLayout(mono_synth)
    records = read_scenes(stereo_synth)
    checked = 0
    for rec in records:
        if rec["track"] != "original":
            continue
        stereo, rate = sf.read(layout_s.audio(rec["folder"]), dtype="float32", always_2d=True)
        mono, _ = sf.read(layout_m.audio(rec["folder"]), dtype="float32")
        assert stereo.shape == (mono.shape[0], 2) and rate == 16_000
        # the mono mix of the stereo track is the mono track, to the 16-bit step
        assert np.abs(stereo.mean(1) - mono).max() <= 2.0 / 32768
        for obj in rec["objects"]:
            others_sound = {k for o in rec["objects"] if o is not obj for k in o["audio"]["seconds"]}
            column = obj["visual"]["column"]
            for k in obj["audio"]["seconds"]:
                if k in others_sound or column == "centre":
                    continue
                a, b = second_span(k)
                left, right = np.sqrt((stereo[a:b] ** 2).mean(0))
                db = 20 * np.log10(left / right)
                assert (db > 6) if column == "left" else (db < -6), (rec["vid"], obj["fid"], k, db)
                checked += 1
    assert checked >= 10


def test_muted_and_changed_tracks_stay_what_they_are_in_stereo(stereo_synth):
    layout = DatasetLayout(stereo_synth)
    by_folder = folder_records(read_scenes(stereo_synth))
    kinds = set()
    for folder, rec in by_folder.items():
        if not folder.startswith(("null_m-", "null_c-")):
            continue
        stereo, _ = sf.read(layout.audio(folder), dtype="float32", always_2d=True)
        assert stereo.shape[1] == 2
        if folder.startswith("null_m-"):  # the background noise alone, the same in both ears
            kinds.add(MUTED)
            assert np.array_equal(stereo[:, 0], stereo[:, 1])
            assert np.sqrt((stereo ** 2).mean()) < 0.01
        else:
            kinds.add(CHANGED)
            assert np.sqrt((stereo ** 2).mean()) > 0.01
    assert kinds == {MUTED, CHANGED}


def test_a_changed_track_sounds_where_the_clip_sounded():
    rng = np.random.default_rng(0)
    from refavs.synth.categories import seen_categories
    from refavs.synth.scene import sample_scene

    pool = seen_categories()
    for i in range(40):
        scene = sample_scene(rng, f"v{i}", "train", 128, pool, PRESETS["medium"].scene)
        sounding = [o for o in scene.objects if o.audio.sounds]
        if not sounding:
            continue
        heard = changed_sources(scene, pool, rng)
        placed = track_scene(scene, CHANGED, heard)
        for source, own in zip(placed.objects, sounding):
            assert source.visual.column == own.visual.column and source.audio.seconds == own.audio.seconds
        assert not {h.category for h in heard} & {o.visual.category for o in scene.objects}
        return
    pytest.fail("no scene with a sounding object in 40 draws")


def test_the_mono_dataset_is_unchanged_by_the_option(mono_synth, tmp_path):
    """A preset without ``stereo`` records nothing new, so earlier datasets are reused as they are."""
    info = json.loads((mono_synth / "synth.json").read_text())
    assert "stereo" not in info["preset"]
    assert is_generation(mono_synth, seed=3, preset=dataclasses.replace(PRESET, stereo=False))
    assert not is_generation(mono_synth, seed=3, preset=PRESET)
    tiny = tmp_path / "tiny"
    generate(tiny, seed=0, preset="tiny", workers=1)
    one, _ = sf.read(DatasetLayout(tiny).audio(read_scenes(tiny)[0]["folder"]), dtype="float32", always_2d=True)
    assert one.shape[1] == 1


def test_the_stereo_dataset_checks_clean_and_says_it_is_stereo(stereo_synth):
    info = json.loads((stereo_synth / "synth.json").read_text())
    assert info["preset"]["stereo"] is True
    assert is_generation(stereo_synth, seed=3, preset=PRESET)
    report = check_dataset(stereo_synth, workers=1)
    assert report.ok, report.problems[:3]
    assert len(read_metadata(stereo_synth / "metadata.csv")) > 0


def test_synth_cli_writes_stereo(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    synth_cli.register(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--stereo", "--no-progress"])
    assert args.func(args) == 0
    rec = read_scenes(tmp_path / "d")[0]
    data, _ = sf.read(DatasetLayout(tmp_path / "d").audio(rec["folder"]), always_2d=True)
    assert data.shape[1] == 2
    assert json.loads((tmp_path / "d" / "synth.json").read_text())["preset"]["stereo"] is True


def test_twins_in_other_columns_are_heard_apart_only_in_stereo():
    def obj(column, seconds, category="guitar"):
        return {"visual": {"category": category, "column": column, "area": [1] * 10}, "audio": {"seconds": seconds}}

    scene = {"objects": [obj("left", [0, 1, 2]), obj("right", [])]}
    expression = {"needs_audio": 1, "target": 0, "candidates_without_audio": [0, 1]}
    assert twin_ambiguous(scene, expression)
    assert not twin_ambiguous(scene, expression, stereo=True)
    scene["objects"][1]["visual"]["column"] = "left"  # above one another: the same side
    assert twin_ambiguous(scene, expression, stereo=True)


def test_stats_count_fewer_twin_rows_in_stereo(stereo_synth, mono_synth):
    stereo = dataset_stats(stereo_synth).splits
    mono = dataset_stats(mono_synth).splits
    assert sum(s.twin_ambiguous for s in stereo.values()) < sum(s.twin_ambiguous for s in mono.values())
    assert sum(s.needs_audio for s in stereo.values()) == sum(s.needs_audio for s in mono.values())


def test_stereo_features_keep_the_mono_ones_and_say_the_side(stereo_synth, mono_synth):
    mono_cfg, stereo_cfg = get_feature_config("lite").audio, get_feature_config("lite-stereo").audio
    assert stereo_cfg.dim == mono_cfg.dim + 64 and stereo_bands(stereo_cfg.dim) == 64
    with pytest.raises(ValueError, match="not stereo"):
        stereo_bands(mono_cfg.dim)
    # mono features keep their cache keys; the stereo ones get their own
    assert "stereo" not in audio_settings(mono_cfg) and audio_settings(stereo_cfg)["stereo"] is True
    mono_f, stereo_f = build_audio_featurizer(mono_cfg, "cpu"), build_audio_featurizer(stereo_cfg, "cpu")
    records = [r for r in read_scenes(stereo_synth) if r["track"] == "original"]
    paths_s = [DatasetLayout(stereo_synth).audio(r["folder"]) for r in records]
    paths_m = [DatasetLayout(mono_synth).audio(r["folder"]) for r in records]
    both = stereo_f.embed_files(paths_s)
    assert both.shape == (len(records), 10, stereo_cfg.dim)
    assert torch.equal(both[..., :mono_cfg.dim], mono_f.embed_files(paths_s))
    # a mono file has no side: the pan is zero, the rest is the mono features
    on_mono = stereo_f.embed_files(paths_m)
    assert torch.equal(on_mono[..., mono_cfg.dim:], torch.zeros_like(on_mono[..., mono_cfg.dim:]))
    assert torch.allclose(on_mono[..., :mono_cfg.dim], mono_f.embed_files(paths_m))
    # a lone object on the left: the pan leans left in that second, on the right: right
    signs = []
    for i, rec in enumerate(records):
        for k in range(10):
            loud = [o for o in rec["objects"] if k in o["audio"]["seconds"]]
            if len(loud) == 1 and loud[0]["visual"]["column"] != "centre":
                pan = both[i, k, mono_cfg.dim:]
                strongest = both[i, k, :64].argmax()  # the band of its sound
                signs.append((loud[0]["visual"]["column"] == "left") == bool(pan[strongest] > 0))
    assert len(signs) >= 10 and all(signs)


def test_object_pan_follows_the_object():
    centers = [None] * 10
    centers[3] = (10.0, 50.0)
    gains = object_pan(centers, [2, 3], size=120)
    a, b = second_span(3)
    assert gains[0, a] > gains[1, a]
    assert np.all(gains[:, a:b] == gains[:, a:a + 1])  # one pan over the second
    a2, b2 = second_span(2)  # not seen in second 2: both ears alike
    assert np.all(gains[:, a2:b2] == 1)


def test_mono_ablation_zeroes_only_the_pan():
    from refavs.data.batch import ClipBatch
    from refavs.training.evaluate import ablate_batch

    audio = torch.randn(2, 10, 192)
    batch = ClipBatch(pixel_values=None, audio=audio, text=torch.zeros(2, 3, 4), text_mask=torch.ones(2, 3, dtype=torch.bool),
                      masks=None, uids=["a_1", "b_1"], clips=["a", "b"])
    out = ablate_batch(batch, "mono").audio
    assert torch.equal(out[..., :128], audio[..., :128]) and not out[..., 128:].any()
    assert audio[..., 128:].any()  # the input was left as it was
    with pytest.raises(ValueError, match="not stereo"):
        ablate_batch(dataclasses.replace(batch, audio=torch.randn(2, 10, 128)), "mono")


def test_lite_stereo_trains_and_evaluates_on_stereo_synth(stereo_synth, tmp_path):
    """The named config eats the stereo features end to end: a few steps, then eval with --ablate mono."""
    from refavs.models.registry import get_model_config
    from refavs.training.config import get_train_config, recipe_for
    from refavs.training.evaluate import evaluate
    from refavs.training.trainer import prepare_features, train

    config = get_model_config("lite-stereo", ["head.dim=32", "head.fine_dim=16", "head.num_heads=2"])
    assert config.inputs.audio_dim == 192 and recipe_for("lite-stereo") == "lite"
    recipe = get_train_config("lite", ["max_steps=2", "epochs=1", "batch_size=2", "mixed_precision=no"])
    result = train(config, recipe, stereo_synth, tmp_path / "run", device="cpu", log=lambda m: None)
    from refavs.models.build import load_pretrained

    model = load_pretrained(result.best, device="cpu")
    assert model.config.feature_preset == "lite-stereo"
    assert model.config.head.sound_side and model.sound_side is not None
    features, store = prepare_features(stereo_synth, model.config, ["test_s"])
    plain = evaluate(model, stereo_synth, ["test_s"], store, features.image, batch_size=2)
    mono = evaluate(model, stereo_synth, ["test_s"], store, features.image, batch_size=2, ablate="mono")
    assert plain.splits["test_s"].result.n_expressions == mono.splits["test_s"].result.n_expressions > 0
    # the side reaches the masks: the same clips heard from both sides give other logits
    from refavs.data.dataset import RefAVSDataset, collate
    from refavs.training.evaluate import ablate_batch

    batch = collate([RefAVSDataset(stereo_synth, "test_s", store, image=features.image)[i] for i in range(2)])
    with torch.no_grad():
        a, b = model(batch).mask_logits, model(ablate_batch(batch, "mono")).mask_logits
    assert not torch.allclose(a, b)


def _stereo_video(path: Path, seconds: int = 10, fps: int = 4) -> Path:
    """A video whose left channel carries a loud 440 Hz tone and whose right channel a quiet one."""
    from refavs.data.video_writer import VideoStreamWriter

    rate = 16_000
    with VideoStreamWriter(path, fps, 64, 48, audio_rate=rate, audio_channels=2) as writer:
        for i in range(seconds * fps):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[10:20, 4 + i % 40:14 + i % 40] = 255
            writer.write_frame(frame)
        t = np.arange(seconds * rate) / rate
        tone = np.sin(2 * np.pi * 440 * t)
        writer.write_audio(np.stack([0.4 * tone, 0.05 * tone]).astype(np.float32))
    return path


def test_inference_keeps_left_and_right_for_a_stereo_model(tmp_path):
    from refavs.inference import RefAVSPipeline, VideoClip, decode_video
    from refavs.inference.pipeline import sampling_for
    from refavs.inference.video import SamplingConfig
    from refavs.models.build import build_model
    from refavs.models.registry import get_model_config

    video = _stereo_video(tmp_path / "stereo.mp4")
    mono = decode_video(video)
    both = decode_video(video, config=SamplingConfig(audio_channels=2))
    assert mono.waveform.ndim == 1 and both.waveform.shape == (2, mono.waveform.shape[0])
    left, right = np.sqrt((both.waveform ** 2).mean(1))
    assert left > 4 * right
    # the same sound: FFmpeg's mono downmix is the channels' sum up to its own gain
    assert np.corrcoef(both.waveform.sum(0), mono.waveform)[0, 1] > 0.999
    with pytest.raises(ValueError, match="audio_channels"):
        SamplingConfig(audio_channels=3)
    arrays = VideoClip.from_arrays(both.frames, both.waveform, 16_000, channels=2)
    assert arrays.waveform.shape[0] == 2
    assert VideoClip.from_arrays(both.frames, both.waveform, 16_000).waveform.ndim == 1

    stereo_config = get_model_config("lite-stereo", ["head.dim=32", "head.fine_dim=16", "head.num_heads=2"])
    assert sampling_for(stereo_config).audio_channels == 2
    assert sampling_for(get_model_config("lite")).audio_channels == 1
    torch.manual_seed(0)
    build_model(stereo_config).save_pretrained(tmp_path / "ckpt")
    pipe = RefAVSPipeline.from_pretrained(tmp_path / "ckpt")
    clip = decode_video(video, config=pipe.settings.sampling)
    audio = pipe.audio_featurizer.embed_waveforms([(clip.waveform, clip.sample_rate)])
    assert audio.shape == (1, 10, 192) and bool((audio[0, :, 128:].max(1).values > 0.5).all())  # heard on the left
    result = pipe(video, "the white square")
    assert result.probabilities.shape[0] == 10


STEREO_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "lite-stereo-synth-medium"


@pytest.fixture(scope="module")
def stereo_pipe():
    from refavs.inference import RefAVSPipeline

    return RefAVSPipeline.from_pretrained(STEREO_CHECKPOINT)


def _twin_squares_video(path: Path, left_gain: float, right_gain: float) -> Path:
    """Two identical red squares, one on each side, and one tone whose channels have the given gains."""
    from refavs.data.video_writer import VideoStreamWriter

    rate, fps, seconds = 16_000, 8, 10
    with VideoStreamWriter(path, fps, 96, 64, audio_rate=rate, audio_channels=2) as writer:
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[20:40, 5:25] = frame[20:40, 70:90] = (200, 50, 50)
        for _ in range(seconds * fps):
            writer.write_frame(frame)
        tone = np.sin(2 * np.pi * 440 * np.arange(seconds * rate) / rate)
        writer.write_audio(np.stack([left_gain * tone, right_gain * tone]).astype(np.float32))
    return path


@pytest.mark.parametrize("left_gain, right_gain, side", [(0.4, 0.05, "left"), (0.05, 0.4, "right"),
                                                         (0.2, 0.2, None)])
def test_the_shipped_stereo_checkpoint_marks_the_look_alike_it_hears(stereo_pipe, tmp_path, left_gain, right_gain,
                                                                      side):
    """Two look-alikes, one tone: "the sounding object" is the square on the side the tone comes
    from, and nothing when it comes from the middle, where neither stands."""
    video = _twin_squares_video(tmp_path / "twins.mp4", left_gain, right_gain)
    masks = stereo_pipe(video, "The sounding object").masks  # [10, 256, 256]
    half = masks.shape[-1] // 2
    left, right = masks[..., :half].sum((1, 2)), masks[..., half:].sum((1, 2))  # per frame
    if side is None:
        assert not left.any() and not right.any()
    else:
        heard, other = (left, right) if side == "left" else (right, left)
        assert (heard > 2_000).all() and not other.any()  # the square: about 4,200 of the mask's pixels
