"""Inference on video files: ``refavs predict`` (single and batch), the frame-time rule, the
errors for bad inputs, the Python pipeline on files and arrays, the GIF fallback and the
README example. A tiny EEMC with random weights stands in for a trained checkpoint."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from refavs.cli import main as refavs_main
from refavs.data.video_writer import write_video
from refavs.inference import InferenceError, RefAVSPipeline, VideoClip, decode_video
from refavs.inference.limits import MAX_EXPRESSION_CHARS
from refavs.inference.overlay import OverlayStyle
from refavs.scoring.predictions import load_prediction

README = Path(__file__).resolve().parents[1] / "README.md"
FPS = 8
SIZE = (64, 48)
RATE = 16_000
EXPRESSION = "the square that moves"
SUMMARY_KEYS = {"video", "expression", "start", "frame_times", "frame_areas", "frame_pixels",
                "frame_max_probability", "max_probability", "present", "checkpoint", "feature_preset",
                "refavs_version", "timings", "audio", "outputs"}


def make_video(path: Path, seconds: float, audio: bool = True) -> Path:
    """An MP4 at 8 fps whose frame ``i`` encodes ``i`` in its colour (red (i % 16) * 16, green
    (i // 16) * 40), with a blue square moving right and, optionally, a 440 Hz tone (AAC)."""
    w, h = SIZE
    frames = []
    for i in range(int(round(seconds * FPS))):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0], img[..., 1] = (i % 16) * 16, (i // 16) * 40
        x = (2 * i) % (w - 10)
        img[8:18, x:x + 10, 2] = 255
        frames.append(img)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    return write_video(path, frames, FPS, wave if audio else None, RATE)


def frame_index(frame: np.ndarray) -> int:
    """The source frame number encoded in a decoded frame's colour (below the square)."""
    region = frame[24:].reshape(-1, 3).astype(np.float64).mean(axis=0)
    return int(round(region[0] / 16)) + 16 * int(round(region[1] / 40))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch

    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    root = tmp_path_factory.mktemp("inference")
    torch.manual_seed(0)
    EEMC(get_model_config("tiny")).save_pretrained(root / "ckpt")
    (root / "not_a_ckpt").mkdir()
    (root / "not_a_ckpt" / "notes.txt").write_text("hello\n")
    (root / "wrong_format").mkdir()
    (root / "wrong_format" / "config.json").write_text('{"format": "something-else"}\n')
    (root / "text.mp4").write_text("this is a text file, not a video\n")
    return {
        "root": root, "ckpt": root / "ckpt", "clip": make_video(root / "clip.mp4", 12.0),
        "silent": make_video(root / "silent.mp4", 3.0, audio=False),
        "short": make_video(root / "short.mp4", 0.5), "text": root / "text.mp4",
        "not_a_ckpt": root / "not_a_ckpt", "wrong_format": root / "wrong_format",
    }


def predict(files, *args: str) -> int:
    return refavs_main(["predict", "--checkpoint", str(files["ckpt"]), "--device", "cpu", *args])


@pytest.fixture(scope="module")
def cli_out(files) -> Path:
    out = files["root"] / "single"
    assert predict(files, "--video", str(files["clip"]), "--frames", "10", "--expression", EXPRESSION, "--start", "1.3",
                   "--out", str(out)) == 0
    return out


@pytest.fixture(scope="module")
def pipe(files) -> RefAVSPipeline:
    return RefAVSPipeline.from_pretrained(files["ckpt"], device="cpu")


@pytest.fixture(scope="module")
def arrays_result(pipe, files):
    clip = decode_video(files["clip"], start=1.3)  # what the CLI run above decodes
    return pipe((clip.frames, clip.waveform, clip.sample_rate), EXPRESSION)


def test_predict_writes_masks_overlay_and_summary(cli_out, files):
    probs = load_prediction(cli_out, "masks")
    assert probs.shape == (10, 256, 256)
    for t in range(10):
        with Image.open(cli_out / "masks" / f"{t}.png") as img:
            assert img.mode == "L" and img.size == (256, 256)
    style = OverlayStyle()
    width, height = style.display_size(*SIZE)
    with av.open(str(cli_out / "overlay.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10
    assert frames[0].shape == (style.caption_height + height, width, 3)
    summary = json.loads((cli_out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["video"] == str(files["clip"]) and summary["expression"] == EXPRESSION
    assert summary["start"] == 1.3 and summary["audio"] == "track" and summary["feature_preset"] == "tiny"
    assert summary["frame_times"] == pytest.approx([1.8 + t for t in range(10)])
    assert summary["frame_pixels"] == [int(n) for n in (probs > 0.4).reshape(10, -1).sum(axis=1)]
    assert summary["frame_areas"] == pytest.approx((probs > 0.4).reshape(10, -1).mean(axis=1))
    assert summary["present"] == (max(summary["frame_areas"]) >= summary["presence_min_area"])
    assert summary["max_probability"] == pytest.approx(probs.max(), abs=1e-6)
    assert summary["outputs"] == {"masks": "masks", "overlay": "overlay.mp4"}


@pytest.mark.parametrize("start", [0.0, 1.3])
def test_frame_t_is_the_frame_shown_at_start_plus_t_plus_half(files, start):
    clip = decode_video(files["clip"], start=start)
    assert clip.frame_times == pytest.approx([start + t + 0.5 for t in range(10)])
    assert [frame_index(f) for f in clip.frames] == [int((start + t + 0.5) * FPS) for t in range(10)]
    assert clip.sample_rate == RATE and clip.waveform.shape == (10 * RATE,)
    assert 0.25 < np.abs(clip.waveform).max() < 0.35  # the tone's amplitude survives decoding


def test_a_window_shorter_than_ten_seconds_is_looped(files):
    clip = decode_video(files["clip"], start=8.0)  # 4 s left
    assert clip.window_seconds == pytest.approx(4.0)
    assert clip.frame_times == pytest.approx([8.0 + (t + 0.5) % 4 for t in range(10)])
    assert [frame_index(f) for f in clip.frames] == [int((8.0 + (t + 0.5) % 4) * FPS) for t in range(10)]
    assert clip.waveform.shape == (4 * RATE,)  # the featurizer tiles it to 10 s


MARK = 12


def make_rotated_video(path: Path, degrees: int, seconds: float = 3.0) -> Path:
    """A dark MP4 with a white square in the stored frames' top-left corner and a display
    rotation of ``degrees`` clockwise written into its track header, as a phone records portrait."""
    w, h = SIZE
    img = np.full((h, w, 3), 20, np.uint8)
    img[:MARK, :MARK] = 255
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    write_video(path, [img] * int(round(seconds * FPS)), FPS, wave, RATE)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    matrix = at + 8 + (32 if data[at + 4] == 1 else 20) + 8 + 8
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data[matrix:matrix + 36] = struct.pack(">9i", cos << 16, sin << 16, 0, -sin << 16, cos << 16, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def marked_corners(image: np.ndarray, inset: int = MARK // 2) -> set[str]:
    """The corners of an RGB image where the white marker is (by the green channel, which the
    overlay's magenta tint and outline leave dark)."""
    green = image[..., 1].astype(np.float32)
    corners = {"top-left": green[:inset, :inset], "top-right": green[:inset, -inset:],
               "bottom-left": green[-inset:, :inset], "bottom-right": green[-inset:, -inset:]}
    return {name for name, c in corners.items() if float(np.median(c)) > 100}


@pytest.mark.parametrize("degrees, corner", [(90, "top-right"), (180, "bottom-right"), (270, "bottom-left")])
def test_a_rotation_tag_turns_the_frames_upright(files, pipe, tmp_path, degrees, corner):
    """A phone's portrait video: the 10 frames, the overlay and summary.json are upright, as a
    player shows the video."""
    video = make_rotated_video(tmp_path / "phone.mp4", degrees)
    upright = SIZE if degrees == 180 else SIZE[::-1]  # (width, height)
    clip = decode_video(video)
    assert clip.rotation % 360 == -degrees % 360
    assert clip.frames.shape == (10, upright[1], upright[0], 3)
    assert all(marked_corners(f) == {corner} for f in clip.frames)
    result = pipe(video, EXPRESSION)
    assert result.summary()["size"] == list(upright) and result.summary()["rotation"] == clip.rotation
    style = OverlayStyle(threshold=1.0)  # no mask drawn
    width, height = style.display_size(*upright)
    shown = result.overlay_frames(style)[0][style.caption_height:]
    assert shown.shape == (height, width, 3) and marked_corners(shown, MARK * width // upright[0] // 2) == {corner}
    out = tmp_path / "out"
    assert predict(files, "--video", str(video), "--frames", "10", "--expression", EXPRESSION, "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == list(upright) and summary["rotation"] == clip.rotation
    default = OverlayStyle()
    width, height = default.display_size(*upright)
    with av.open(str(out / "overlay.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")[default.caption_height:]
    assert first.shape == (height, width, 3) and marked_corners(first, MARK * width // upright[0] // 2) == {corner}


def test_pipeline_on_arrays_matches_the_cli_on_the_video(cli_out, arrays_result, pipe, files):
    cli_probs = load_prediction(cli_out, "masks")
    assert arrays_result.probabilities.dtype == np.float32
    np.testing.assert_array_equal(arrays_result.probabilities, cli_probs)  # the stored 8-bit values, exactly
    assert arrays_result.masks.dtype == bool and arrays_result.masks.shape == (10, 256, 256)
    assert arrays_result.frame_areas == pytest.approx((cli_probs > 0.4).reshape(10, -1).mean(axis=1))
    summary = json.loads((cli_out / "summary.json").read_text())
    assert arrays_result.present == summary["present"]
    assert [frame_index(f) for f in arrays_result.frames] == [int((1.8 + t) * FPS) for t in range(10)]
    assert pipe.load(files["clip"], start=1.3).frame_times == tuple(summary["frame_times"])
    overlay = arrays_result.overlay_frames()
    assert len(overlay) == 10 and overlay[0].dtype == np.uint8


def test_gif_overlay_when_no_h264_encoder(arrays_result, tmp_path, monkeypatch):
    monkeypatch.setattr("refavs.inference.overlay.h264_available", lambda: False)
    with pytest.warns(UserWarning, match="no libx264"):
        paths = arrays_result.save(tmp_path / "out")
    assert paths["overlay"] == tmp_path / "out" / "overlay.gif"
    assert not (tmp_path / "out" / "overlay.mp4").exists()
    with Image.open(paths["overlay"]) as gif:
        assert gif.n_frames == 10
    assert json.loads(paths["summary"].read_text())["outputs"]["overlay"] == "overlay.gif"
    assert sorted(p.name for p in paths["masks"].iterdir()) == sorted(f"{t}.png" for t in range(10))


def test_batch_reports_a_bad_row_goes_on_and_resumes(files, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(files["clip"], data / "clip.mp4")
    (data / "rows.csv").write_text("video,expression,start\n"
                                   f"clip.mp4,{EXPRESSION},\n"
                                   "missing.mp4,the dog,\n"
                                   f"{files['silent']},the blue square,0.5\n")
    out = tmp_path / "out"
    assert predict(files, "--csv", str(data / "rows.csv"), "--out", str(out), "--allow-silent") == 1
    err = capsys.readouterr().err
    assert "row 2" in err and "missing.mp4" in err and "not found" in err and "Traceback" not in err
    for name in ("001-clip", "003-silent"):
        assert len(list((out / name / "masks").glob("*.png"))) == 10
        assert (out / name / "overlay.mp4").is_file()
    silent = json.loads((out / "003-silent" / "summary.json").read_text())  # --allow-silent: silence
    assert silent["start"] == 0.5 and silent["audio"] == "silence" and silent["window_seconds"] == pytest.approx(2.5)
    assert silent["frame_times"] == pytest.approx([0.5 + (t + 0.5) % 2.5 for t in range(10)])
    index = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in index["rows"]] == ["written", "failed", "written"]
    assert [e["row"] for e in index["errors"]] == [2]
    # a re-run skips the complete rows: the model is not even loaded
    monkeypatch.setattr(RefAVSPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: 1 / 0))
    assert predict(files, "--csv", str(data / "rows.csv"), "--out", str(out), "--allow-silent") == 1
    index = json.loads((out / "summary.json").read_text())
    assert index["counts"] == {"written": 0, "skipped": 2, "failed": 1}


BAD_INPUTS = {
    "no audio track": (lambda f: ["--video", str(f["silent"])], "no audio track; Ref-AVS needs the sound (--allow-silent"),
    "text file renamed .mp4": (lambda f: ["--video", str(f["text"])], "not a readable video"),
    "video of 0.5 s": (lambda f: ["--video", str(f["short"])], "0.50 s long; at least 1 s"),
    "empty expression": (lambda f: ["--video", str(f["clip"]), "--expression", "   "], "expression is empty"),
    "expression over the limit": (
        lambda f: ["--video", str(f["clip"]), "--expression", "x" * (MAX_EXPRESSION_CHARS + 1)],
        f"--expression is {MAX_EXPRESSION_CHARS + 1:,} characters long, over the limit"),
    "start past the end": (lambda f: ["--video", str(f["clip"]), "--start", "12.5"], "past the end"),
    "missing video": (lambda f: ["--video", str(f["root"] / "nope.mp4")], "video file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_exit_2_with_one_line(files, case, capsys):
    args, message = BAD_INPUTS[case]
    argv = args(files)
    if "--expression" not in argv:
        argv += ["--expression", EXPRESSION]
    assert predict(files, *argv, "--out", str(files["root"] / "bad")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("refavs predict: error:")
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("folder", ["not_a_ckpt", "wrong_format"])
def test_a_folder_that_is_not_a_checkpoint_exits_2(files, folder, capsys):
    argv = ["predict", "--checkpoint", str(files[folder]), "--video", str(files["clip"]), "--expression", "x",
            "--out", str(files["root"] / "bad")]
    assert refavs_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a refavs checkpoint" in err and str(files[folder]) in err


def test_pipeline_errors(pipe, files, monkeypatch):
    with pytest.raises(InferenceError, match="10 frames"):
        pipe((np.zeros((4, 8, 8, 3), np.uint8), np.zeros(RATE), RATE), EXPRESSION)
    with pytest.raises(InferenceError, match="empty"):
        pipe(files["clip"], "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InferenceError, match="HF_HUB_OFFLINE"):
        RefAVSPipeline.from_pretrained("nobody-here/no-such-model")
    # a run folder resolves to RUN/best
    from refavs.inference.pipeline import resolve_checkpoint

    run = files["root"] / "run"
    run.mkdir(exist_ok=True)
    if not (run / "best").exists():
        (run / "best").symlink_to(files["ckpt"], target_is_directory=True)
    assert resolve_checkpoint(run) == run / "best"


def test_a_long_expression_is_truncated_with_one_warning(pipe, files):
    long = " ".join(["the red object on the far left"] * 8)
    assert pipe.check_expression(long) and not pipe.check_expression(EXPRESSION)
    with pytest.warns(UserWarning, match="truncated"):
        with pytest.raises(InferenceError):  # the warning comes before the (missing) video is read
            pipe(files["root"] / "nope.mp4", long)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InferenceError):
            pipe(files["root"] / "nope.mp4", long)


def test_importing_refavs_stays_light():
    code = ("import sys, refavs, refavs.inference, refavs.inference.cli; "
            "print(sorted(m for m in ('torch', 'av', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Inference on your own videos", 1)
    if len(section) < 2:
        pytest.fail("README has no '## Inference on your own videos' section")
    body = re.split(r"\n## ", section[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert blocks, "the README section has no python example"
    return blocks[0]


def test_readme_example_runs_as_written(files, tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    (tmp_path / "runs" / "demo" / "run").mkdir(parents=True)
    shutil.copytree(files["ckpt"], tmp_path / "runs" / "demo" / "run" / "best")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert "(10, 256, 256)" in capsys.readouterr().out
    assert len(list((tmp_path / "runs" / "example" / "masks").glob("*.png"))) == 10
    assert (tmp_path / "runs" / "example" / "summary.json").is_file()


def test_video_clip_from_arrays_mixes_channels():
    clip = VideoClip.from_arrays(np.zeros((10, 4, 6, 3), np.uint8), np.ones((2, 100), np.float32), 8000)
    assert clip.waveform.shape == (100,) and clip.audio == "arrays" and clip.frame_times[0] == 0.5
    with pytest.raises(InferenceError, match="uint8"):
        VideoClip.from_arrays(np.zeros((10, 4, 6, 3), np.float32), np.zeros(100), 8000)
