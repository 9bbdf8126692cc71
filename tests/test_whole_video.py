"""Whole videos: ``refavs predict --frames all`` and ``RefAVSPipeline.predict_video`` give a mask
for every frame of a video of any length (the windows, the frame times, the overlay with its
sound, masks as PNGs or COCO run-length encodings, an interrupted run, a phone-style video), and
on a Ref-AVS Synth test clip made into a 30 fps video each frame's mask is the 10-frame
prediction of its second. A tiny EEMC with random weights stands in for a trained checkpoint,
except for the Synth clip, which uses the shipped one."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from refavs.cli import main as refavs_main
from refavs.data.video_writer import VideoStreamWriter
from refavs.inference import InferenceError, RefAVSPipeline
from refavs.inference.overlay import OverlayStyle
from refavs.inference.rle import counts_to_string, decode_rle, encode_rle, rle_counts, string_to_counts
from refavs.inference.video import probe_video
from refavs.inference.whole_video import INCOMPLETE_FILE, VideoOverlay, plan_windows, save_video_prediction

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "lite-synth-medium"
EXPRESSION = "the square that moves"


def make_video(path: Path, seconds: float, fps: int = 30, size: tuple[int, int] = (96, 64),
               channels: int = 1, rate: int = 16_000, audio: bool = True, pix_fmt: str = "yuv420p") -> Path:
    """An H.264/AAC MP4 whose frame ``i`` has a yellow square moving right on a background whose
    red level is ``(i % 32) * 8``, with a tone (stereo: a different tone per channel)."""
    w, h = size
    with VideoStreamWriter(path, fps, w, h, audio_rate=rate if audio else None, audio_channels=channels,
                           pix_fmt=pix_fmt) as writer:
        n = int(round(seconds * fps))
        for i in range(n):
            if audio:
                a, b = int(round(i / fps * rate)), int(round((i + 1) / fps * rate))
                t = np.arange(a, b) / rate
                tones = [0.3 * np.sin(2 * np.pi * f * t) for f in (440, 660)[:channels]]
                writer.write_audio(np.stack(tones).astype(np.float32))
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i % 32) * 8
            x = (i * 2) % (w - 16)
            img[h // 4:h // 4 + 16, x:x + 16] = (255, 220, 0)
            writer.write_frame(img)
    return path


def set_rotation(path: Path, degrees: float = 90) -> None:
    """Write a display rotation into the MP4's video track header (as phones record portrait):
    ``degrees`` clockwise, the way a player turns the stored frames (FFmpeg reads -degrees)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    matrix = at + 8 + (32 if version == 1 else 20) + 8 + 8
    cos, sin = (int(round(f(math.radians(degrees)) * 65536)) for f in (math.cos, math.sin))
    data[matrix:matrix + 36] = struct.pack(">9i", cos, sin, 0, -sin, cos, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


MARK = 16


def make_marked_video(path: Path, seconds: float = 3, fps: int = 10, size: tuple[int, int] = (96, 64)) -> Path:
    """A dark H.264/AAC MP4 with a white square in the stored frames' top-left corner (a marker
    that shows which way a frame is turned) and a tone."""
    w, h = size
    rate = 16_000
    with VideoStreamWriter(path, fps, w, h, audio_rate=rate, audio_channels=1) as writer:
        img = np.full((h, w, 3), 20, np.uint8)
        img[:MARK, :MARK] = 255
        for i in range(int(round(seconds * fps))):
            t = np.arange(int(round(i / fps * rate)), int(round((i + 1) / fps * rate))) / rate
            writer.write_audio((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32))
            writer.write_frame(img)
    return path


def bright_corners(image: np.ndarray, inset: int = MARK // 2) -> set[str]:
    """The corners of ``image`` (``[H, W]`` or ``[H, W, 3]``) where the marker is."""
    grey = image.astype(np.float32).reshape(*image.shape[:2], -1).mean(axis=2)
    corners = {"top-left": grey[:inset, :inset], "top-right": grey[:inset, -inset:],
               "bottom-left": grey[-inset:, :inset], "bottom-right": grey[-inset:, -inset:]}
    return {name for name, c in corners.items() if float(np.median(c)) > 128}


def source_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = float(stream.start_time * stream.time_base)
        return [float(f.pts * stream.time_base) - origin for f in container.decode(stream)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch

    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    root = tmp_path_factory.mktemp("whole")
    torch.manual_seed(0)
    EEMC(get_model_config("tiny")).save_pretrained(root / "ckpt")
    return {"root": root, "ckpt": root / "ckpt", "video": make_video(root / "v23.mp4", 23.5),
            "short": make_video(root / "v4.mp4", 4.3, fps=25), "silent": make_video(root / "mute.mp4", 3, audio=False)}


@pytest.fixture(scope="module")
def pipe(files) -> RefAVSPipeline:
    return RefAVSPipeline.from_pretrained(files["ckpt"], device="cpu")


def predict(files, *args: str) -> int:
    return refavs_main(["predict", "--checkpoint", str(files["ckpt"]), "--device", "cpu", "--no-progress", *args])


@pytest.fixture(scope="module")
def cli_out(files) -> Path:
    out = files["root"] / "out"
    assert predict(files, "--video", str(files["video"]), "--expression", EXPRESSION, "--frames", "all",
                   "--out", str(out)) == 0
    return out


# ----------------------------------------------------------------------------------- the windows

def test_windows_cover_the_seconds():
    plan = plan_windows(23.5)  # 23 whole seconds: windows at 0, 10 and 13 (the last overlaps)
    assert plan.offsets == (0.0, 10.0, 13.0)
    assert plan.seconds[:10] == tuple((0, t) for t in range(10))
    assert plan.seconds[10:20] == tuple((1, t) for t in range(10))
    assert plan.seconds[20:] == ((2, 7), (2, 8), (2, 9))
    assert plan.source(23) == (2, 9)  # the last half second takes the last whole second's mask
    assert plan_windows(30.0).offsets == (0.0, 10.0, 20.0) and len(plan_windows(30.0).seconds) == 30
    assert plan_windows(10.4).offsets == (0.0,)
    short = plan_windows(4.3)  # looped: frames at 0.5 .. 3.5 s; the last 0.3 s take second 3's
    assert short.offsets == (0.0,) and short.seconds == ((0, 0), (0, 1), (0, 2), (0, 3), (0, 3))
    assert plan_windows(4.6).seconds[-1] == (0, 4)  # 4.5 s lies in the span
    with pytest.raises(InferenceError):
        plan_windows(0.5)


# ------------------------------------------------------------------------------- frames and times

def test_every_frame_gets_a_mask_at_its_own_time(cli_out, files):
    times = source_times(files["video"])
    assert len(times) == 705
    summary = json.loads((cli_out / "summary.json").read_text())
    assert summary["kind"] == "refavs-video-prediction" and summary["frame_count"] == len(times)
    assert summary["frame_times"] == pytest.approx(times, abs=1e-6)
    assert summary["fps"] == 30 and summary["audio"] == "track" and summary["size"] == [96, 64]
    assert len(summary["frame_areas"]) == len(summary["frame_present"]) == len(times)
    assert [w["start"] for w in summary["windows"]] == [0.0, 10.0, 13.0]
    assert [w["seconds"] for w in summary["windows"]] == [[0, 9], [10, 19], [20, 22]]
    assert all(isinstance(w["present"], bool) for w in summary["windows"])
    assert summary["present"] == any(summary["frame_present"])
    names = sorted(p.name for p in (cli_out / "masks").iterdir())
    assert names == [f"{i:06d}.png" for i in range(len(times))]
    with Image.open(cli_out / "masks" / "000000.png") as img:
        assert img.mode == "L" and img.size == (256, 256)
    probs = np.stack([np.asarray(Image.open(cli_out / "masks" / f"{i:06d}.png")) for i in (0, 300, 704)])
    areas = (probs.astype(np.float32) / 255 > 0.4).reshape(3, -1).mean(axis=1)
    assert [summary["frame_areas"][i] for i in (0, 300, 704)] == pytest.approx(areas)
    assert not (cli_out / INCOMPLETE_FILE).exists()
    assert not [p for p in cli_out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_the_overlay_has_every_frame_at_the_source_rate_and_the_sound(cli_out, files):
    with av.open(str(cli_out / "overlay.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert float(video.average_rate) == pytest.approx(30.0)
        assert audio.codec_context.sample_rate == 16_000
        frames = sum(1 for _ in container.decode(video))
    assert frames == 705
    with av.open(str(cli_out / "overlay.mp4")) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(sound) == pytest.approx(23.5 * 16_000, abs=2048) and 0.2 < np.abs(sound).max() < 0.4
    drawer = VideoOverlay(96, 64, EXPRESSION)
    with av.open(str(cli_out / "overlay.mp4")) as container:
        first = next(container.decode(video=0))
    assert (first.width, first.height) == drawer.size


def test_each_frame_has_the_mask_of_its_second_from_its_window(pipe, files):
    run = pipe.predict_video(files["video"], EXPRESSION)
    clips = {k: pipe(files["video"], EXPRESSION, start=s) for k, s in enumerate((0.0, 10.0, 13.0))}
    seen = 0
    for frame in run:
        window, t = run.plan.source(frame.second)
        assert frame.window == window
        assert np.array_equal(frame.mask, clips[window].masks[t])
        assert frame.second == min(int(frame.time + 1e-6), 23)
        seen += 1
    assert seen == 705 and len(run.windows) == 3
    assert [w["present"] for w in run.windows] == [clips[k].present for k in range(3)]


def test_span_and_fps(pipe, files):
    run = pipe.predict_video(files["video"], EXPRESSION, start=2.0, end=14.0, fps=5)
    frames = list(run)
    assert [f.time for f in frames] == pytest.approx([2.0 + k / 5 for k in range(60)])
    assert [round(f.image()[40, 90, 0] / 8) for f in frames[:3]] == [(2 * 30 + k * 6) % 32 for k in range(3)]
    assert run.plan.offsets == (0.0, 2.0) and len(run.windows) == 2  # 12 s: 0..10 and 2..12
    short = pipe.predict_video(files["short"], EXPRESSION)
    frames = list(short)
    assert len(frames) == len(source_times(files["short"])) and short.plan.offsets == (0.0,)
    clip = pipe(files["short"], EXPRESSION)  # the 10-frame clip, looped as a short video is
    assert np.array_equal(frames[0].mask, clip.masks[0]) and np.array_equal(frames[-1].mask, clip.masks[3])


def test_a_span_has_its_own_sound_and_a_progress_bar(pipe, files, tmp_path, capsys):
    run = pipe.predict_video(files["video"], EXPRESSION, start=2.0, end=9.5, fps=10)
    paths = save_video_prediction(run, tmp_path / "span", progress=True)
    assert "75/75" in capsys.readouterr().err  # tqdm's bar, shown when asked (the CLI: on a terminal)
    with av.open(str(paths["overlay"])) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(10.0)
        assert sum(1 for _ in container.decode(video=0)) == 75
    with av.open(str(paths["overlay"])) as container:
        sound = sum(f.samples for f in container.decode(audio=0))
    assert sound == pytest.approx(7.5 * 16_000, abs=2048)
    summary = json.loads(paths["summary"].read_text())
    assert summary["start"] == 2.0 and summary["end"] == 9.5 and summary["frame_count"] == 75


def test_odd_sizes_other_pixel_formats_and_silence(pipe, files, tmp_path):
    video = make_video(tmp_path / "odd.mp4", 2.5, size=(97, 65), pix_fmt="yuv444p", audio=False)
    paths = save_video_prediction(pipe.predict_video(video, EXPRESSION, allow_silent=True), tmp_path / "odd",
                                  masks="rle")
    summary = json.loads(paths["summary"].read_text())
    assert summary["frame_count"] == 75 and summary["audio"] == "silence" and summary["size"] == [97, 65]
    with gzip.open(paths["masks"], "rt") as f:
        assert json.loads(f.readline())["size"] == [65, 97]
    with av.open(str(paths["overlay"])) as container:
        assert not container.streams.audio and container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        first = next(container.decode(video=0))
    assert (first.width, first.height) == VideoOverlay(97, 65, EXPRESSION).size


def test_the_ten_frame_protocol_stays_an_option(files, tmp_path):
    out = tmp_path / "ten"
    assert predict(files, "--video", str(files["video"]), "--expression", EXPRESSION, "--frames", "10",
                   "--start", "1.3", "--out", str(out)) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(f"{t}.png" for t in range(10))
    assert json.loads((out / "summary.json").read_text())["frame_times"] == pytest.approx([1.8 + t for t in range(10)])


def test_bad_inputs(pipe, files, capsys):
    with pytest.raises(InferenceError, match="no audio track"):
        pipe.predict_video(files["silent"], EXPRESSION)
    assert len(list(pipe.predict_video(files["silent"], EXPRESSION, allow_silent=True))) == 90
    with pytest.raises(InferenceError, match="past the end"):
        pipe.predict_video(files["video"], EXPRESSION, start=30)
    with pytest.raises(InferenceError, match="after the start"):
        pipe.predict_video(files["video"], EXPRESSION, start=5, end=4)
    with pytest.raises(InferenceError, match="only 0.50 s"):
        pipe.predict_video(files["video"], EXPRESSION, start=5, end=5.5)
    with pytest.raises(InferenceError, match="fps"):
        pipe.predict_video(files["video"], EXPRESSION, fps=0)
    out = str(files["root"] / "bad")
    assert predict(files, "--video", str(files["video"]), "--expression", "x", "--fps", "5", "--frames", "10",
                   "--out", out) == 2
    assert "--fps goes with --video and --frames all" in capsys.readouterr().err
    assert predict(files, "--video", str(files["root"] / "nope.mp4"), "--expression", "x", "--frames", "all",
                   "--out", out) == 2
    assert "video file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- RLE

def test_rle_round_trips_and_is_pycocotools_format():
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) < 0.3, np.zeros((8, 6), bool), np.ones((8, 6), bool)]
    box = np.zeros((720, 1280), bool)
    box[100:600, 200:1000] = True
    masks.append(box)
    for mask in masks:
        rle = encode_rle(mask)
        assert rle["size"] == list(mask.shape)
        assert np.array_equal(decode_rle(rle), mask)
        assert string_to_counts(rle["counts"]) == rle_counts(mask)
    assert rle_counts(np.array([[0, 1], [1, 1]])) == [1, 3]  # column-major, zeros first
    assert rle_counts(np.array([[1, 0], [1, 0]])) == [0, 2, 2]
    assert encode_rle(np.zeros((4, 5)))["counts"] == "d0"  # pycocotools: {"size": [4, 5], "counts": b"d0"}
    assert counts_to_string([5, 2, 13]) == "52="  # below 16: one character, the count + 48
    assert string_to_counts(counts_to_string([0, 100, 3, 1000, 2])) == [0, 100, 3, 1000, 2]


def test_rle_matches_pycocotools_byte_for_byte():
    coco = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for k in range(60):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        mask = rng.random((h, w)) < (0.05, 0.5, 0.95)[k % 3]
        if k % 5 == 0:
            mask = np.zeros((h, w), bool)
            mask[h // 3:, w // 4: w // 2 + 1] = True
        ours = encode_rle(mask)
        theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours["counts"].encode("ascii") == theirs["counts"] and ours["size"] == theirs["size"]
        assert np.array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}).astype(bool),
                              mask)


def test_masks_as_one_rle_file(pipe, files, tmp_path):
    run = pipe.predict_video(files["video"], EXPRESSION, end=11.0, fps=3)
    paths = save_video_prediction(run, tmp_path / "rle", masks="rle", overlay=False)
    assert paths["masks"] == tmp_path / "rle" / "masks.rle.jsonl.gz" and paths["overlay"] is None
    assert sorted(p.name for p in (tmp_path / "rle").iterdir()) == ["masks.rle.jsonl.gz", "summary.json"]
    with gzip.open(paths["masks"], "rt") as f:
        lines = [json.loads(line) for line in f]
    summary = json.loads(paths["summary"].read_text())
    assert [r["frame"] for r in lines] == list(range(33)) == list(range(summary["frame_count"]))
    assert [r["time"] for r in lines] == pytest.approx(summary["frame_times"])
    frames = list(pipe.predict_video(files["video"], EXPRESSION, end=11.0, fps=3))
    for record, frame in zip(lines, frames):
        assert record["size"] == [64, 96]
        mask = decode_rle(record)
        prob = Image.fromarray(frame.probabilities.astype(np.float32) / 255).resize((96, 64), Image.Resampling.BILINEAR)
        assert np.array_equal(mask, np.asarray(prob) > 0.4)


# ------------------------------------------------------------------------------- interrupted runs

def test_an_interrupted_run_leaves_no_partial_file_and_says_so(pipe, files, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = save_video_prediction(pipe.predict_video(files["video"], EXPRESSION, end=12, fps=2), out)
    assert first["summary"].is_file()
    calls = {"n": 0}
    original = VideoOverlay.render

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoOverlay, "render", failing)
    with pytest.raises(KeyboardInterrupt):
        save_video_prediction(pipe.predict_video(files["video"], EXPRESSION), out)
    marker = json.loads((out / INCOMPLETE_FILE).read_text())
    assert marker["state"] == "incomplete" and marker["reason"] == "interrupted" and marker["frames_done"] == 39
    assert not (out / "summary.json").exists()  # the older run's summary is gone: the folder is incomplete
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # temporary files removed
    with av.open(str(out / "overlay.mp4")) as container:  # what is under a final name is whole (the older run's)
        assert sum(1 for _ in container.decode(video=0)) == 24
    monkeypatch.setattr(VideoOverlay, "render", original)
    save_video_prediction(pipe.predict_video(files["video"], EXPRESSION, end=12, fps=2), out)  # run again
    assert (out / "summary.json").is_file() and not (out / INCOMPLETE_FILE).exists()


def test_a_killed_run_leaves_the_folder_marked_incomplete(files, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys; from refavs.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "predict", "--checkpoint", str(files["ckpt"]), "--device", "cpu",
           "--video", str(files["video"]), "--expression", EXPRESSION, "--frames", "all", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it once some masks are written
            partial = [p for p in out.glob(".masks.*") if p.is_dir()] if out.exists() else []
            if partial and len(list(partial[0].iterdir())) > 50:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the run wrote no masks in 120 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert (out / INCOMPLETE_FILE).is_file()
    assert json.loads((out / INCOMPLETE_FILE).read_text())["state"] == "running"
    finals = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert finals == {INCOMPLETE_FILE}  # no masks/, overlay.mp4 or summary.json under their final names


# ---------------------------------------------------------------------------------- a phone video

def test_a_phone_style_video(files, tmp_path):
    """45 s at 30 fps, stereo AAC at 44.1 kHz, a rotation tag: 1,350 masks and an overlay with sound."""
    video = make_video(tmp_path / "phone.mp4", 45, size=(64, 112), channels=2, rate=44_100)
    set_rotation(video, 90)
    info = probe_video(video)
    assert info.rotation in (90, -90, 270) and info.audio_channels == 2 and info.audio_rate == 44_100
    out = tmp_path / "out"
    assert predict(files, "--video", str(video), "--expression", EXPRESSION, "--out", str(out), "--frames", "all") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_count"] == 1350 == len(list((out / "masks").iterdir()))
    assert summary["frame_times"] == pytest.approx([i / 30 for i in range(1350)], abs=1e-6)
    assert len(summary["windows"]) == 5 and summary["rotation"] == info.rotation
    with av.open(str(out / "overlay.mp4")) as container:
        assert container.streams.audio[0].codec_context.channels == 2
        assert container.streams.audio[0].codec_context.sample_rate == 44_100
        assert sum(1 for _ in container.decode(video=0)) == 1350


@pytest.mark.parametrize("degrees, corner", [(90, "top-right"), (180, "bottom-right"), (270, "bottom-left")])
def test_a_rotated_video_is_turned_upright(pipe, tmp_path, degrees, corner):
    """A rotation tag (a phone's portrait video): the frames, the masks and the overlay are
    upright, as a player shows them; summary.json gives the tag and the upright size."""
    video = make_marked_video(tmp_path / "rotated.mp4")  # stored 96x64, the marker top-left
    set_rotation(video, degrees)
    info = probe_video(video)
    upright = (96, 64) if degrees == 180 else (64, 96)
    assert info.rotation % 360 == -degrees % 360 and (info.width, info.height) == upright
    frames = list(pipe.predict_video(video, EXPRESSION))
    assert len(frames) == 30
    for f in frames[::7]:
        image = f.image()
        assert image.shape == (upright[1], upright[0], 3) and bright_corners(image) == {corner}
    out = tmp_path / "out"
    style = OverlayStyle(threshold=1.0)  # no mask drawn: the marker stays as it is
    save_video_prediction(pipe.predict_video(video, EXPRESSION), out, masks="rle", style=style)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == list(upright) and summary["rotation"] == info.rotation
    with gzip.open(out / "masks.rle.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 30 and {tuple(r["size"]) for r in records} == {(upright[1], upright[0])}
    w, h = style.display_size(*upright)
    with av.open(str(out / "overlay.mp4")) as container:
        shown = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(shown) == 30 and shown[0].shape == (style.caption_height + h, w, 3)
    assert bright_corners(shown[0][style.caption_height:], inset=MARK * w // upright[0] // 2) == {corner}


def test_a_rotation_that_is_not_a_quarter_turn_is_ignored_with_a_warning(pipe, tmp_path):
    video = make_marked_video(tmp_path / "tilted.mp4", seconds=2)
    set_rotation(video, 45)
    with pytest.warns(UserWarning, match="not a multiple of 90"):
        info = probe_video(video)
    assert info.rotation % 90 and info.turns == 0 and (info.width, info.height) == (96, 64)
    with pytest.warns(UserWarning, match="not a multiple of 90"):
        frames = list(pipe.predict_video(video, EXPRESSION))
    assert len(frames) == 20 and bright_corners(frames[0].image()) == {"top-left"}


# ------------------------------------------------------------------ the shipped model on a Synth clip

def test_a_synth_clip_at_30_fps_has_the_masks_of_the_ten_frame_prediction(tmp_path):
    from refavs.data.layout import DatasetLayout
    from refavs.data.masks import load_clip_masks
    from refavs.data.records import Expression
    from refavs.synth.generate import generate
    from refavs.synth.layout import read_scenes
    from refavs.synth.presets import get_preset
    from refavs.synth.video import clip_video

    root = tmp_path / "synth"
    generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=1, test_u=0, test_n=0),
             workers=1, force=True)
    rec = next(iter(read_scenes(root)))
    video = clip_video(root, rec["folder"], tmp_path / "clip30.mp4", 30)
    pipe = RefAVSPipeline.from_pretrained(CHECKPOINT)
    for e in rec["expressions"][:2]:
        truth = load_clip_masks(DatasetLayout(root), Expression(rec["vid"], e["uid"], "test_s", int(e["target"]),
                                                                e["exp"])).astype(bool)
        ref = pipe(video, e["exp"])
        frames = list(pipe.predict_video(video, e["exp"]))
        assert len(frames) == 300
        assert all(np.array_equal(f.mask, ref.masks[f.second]) for f in frames)

        def jaccard(pred, gt):
            union = (pred | gt).sum()
            return 1.0 if union == 0 else float((pred & gt).sum() / union)

        per_frame = np.mean([jaccard(f.mask, truth[f.second]) for f in frames])
        ten = np.mean([jaccard(ref.masks[t], truth[t]) for t in range(10)])
        assert abs(per_frame - ten) <= 0.02


# ---------------------------------------------------------------------------------- bounded memory

PEAK_SNIPPET = """
import resource, sys
from refavs.inference import RefAVSPipeline
from refavs.inference.whole_video import save_video_prediction
pipe = RefAVSPipeline.from_pretrained(sys.argv[1])
save_video_prediction(pipe.predict_video(sys.argv[2], "the square"), sys.argv[3])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_length(files, tmp_path):
    peaks = {}
    for minutes in (1, 6):
        video = make_video(tmp_path / f"{minutes}.mp4", 60 * minutes, fps=10, size=(64, 48))
        run = subprocess.run([sys.executable, "-c", PEAK_SNIPPET, str(files["ckpt"]), str(video),
                              str(tmp_path / f"out{minutes}")], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
        peaks[minutes] = int(run.stdout.strip().splitlines()[-1])
    assert peaks[6] <= 1.2 * peaks[1], peaks


# ------------------------------------------------------------------------------------- the web demo

def test_the_web_demo_runs_a_whole_video_within_its_limit(pipe, files, tmp_path):
    from refavs.app import AppConfig, predict as app_predict

    config = AppConfig(max_video_seconds=30)
    result = app_predict(pipe, str(files["video"]), EXPRESSION, 0.0, config, tmp_path, whole=True)
    assert not result["error"], result["status"]
    with av.open(str(result["overlay"])) as container:
        assert container.streams.audio and sum(1 for _ in container.decode(video=0)) == 705
    assert len(result["masks"]) == 24  # one per second, the last half second included
    assert "of 705 frames" in result["status"] and "| 2 | 20-22 |" in result["status"]
    refused = app_predict(pipe, str(files["video"]), EXPRESSION, 0.0, AppConfig(max_video_seconds=20), tmp_path,
                          whole=True)
    assert refused["error"] and "limited to 20 s" in refused["status"] and refused["overlay"] is None
    later = app_predict(pipe, str(files["video"]), EXPRESSION, 5.0, AppConfig(max_video_seconds=20), tmp_path,
                        whole=True)
    assert not later["error"] and "of 555 frames" in later["status"]


# -------------------------------------------------------------------------------------- the benchmark

def test_the_benchmark_reports_its_figures(capsys, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_predict_video", ROOT / "benchmarks" / "predict_video.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert bench.main(["--seconds", "3", "--size", "96x64", "--fps", "10", "--masks", "rle"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["video_s"] == pytest.approx(3.0) and result["frames"] == 30 and result["windows"] == 1
    assert result["realtime_factor"] == pytest.approx(3.0 / result["work_s"], rel=0.01)
    assert result["peak_rss_mb"] > 50 and result["video"]["size"] == [96, 64]
