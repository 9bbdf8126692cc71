"""refavs.data.video_writer: frames and a waveform as H.264 + AAC, written atomically, bad input
refused with the path named."""

from __future__ import annotations

import os
import subprocess
import sys

import av
import numpy as np
import pytest

from refavs.data.video_writer import write_video
from refavs.data.writer import FILE_MODE
from refavs.inference import decode_video

FPS = 4
RATE = 16_000
SIZE = (64, 48)  # width, height
STEP = 5


def ramp(n: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``n`` (<= 52) frames whose grey level encodes their index (``STEP * i``)."""
    w, h = size
    return [np.full((h, w, 3), STEP * i, np.uint8) for i in range(n)]


def tone(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def streams(path) -> dict[str, dict]:
    with av.open(str(path)) as container:
        out = {}
        for s in container.streams:
            ctx = s.codec_context
            out[s.type] = {"codec": ctx.name, "rate": s.average_rate if s.type == "video" else ctx.sample_rate,
                           "pix_fmt": getattr(ctx, "pix_fmt", None), "size": (getattr(ctx, "width", None),
                                                                               getattr(ctx, "height", None)),
                           "seconds": float(s.duration * s.time_base) if s.duration else None}
        out["format"] = container.format.name
        out["frames"] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)] if "video" in out else []
    return out


def test_frames_and_sound_become_h264_and_aac_of_the_right_length(tmp_path):
    path = write_video(tmp_path / "clip.mp4", ramp(12 * FPS), FPS, tone(12.0), RATE)
    assert path == tmp_path / "clip.mp4"
    info = streams(path)
    assert "mp4" in info["format"]
    assert info["video"]["codec"] == "h264" and info["video"]["pix_fmt"] == "yuv420p"
    assert info["video"]["rate"] == FPS and info["video"]["size"] == SIZE
    assert info["video"]["seconds"] == pytest.approx(12.0)
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == RATE
    assert info["audio"]["seconds"] == pytest.approx(12.0, abs=0.1)
    assert len(info["frames"]) == 12 * FPS
    assert [round(float(f.mean()) / STEP) for f in info["frames"]] == list(range(12 * FPS))


def test_what_it_writes_decodes_back_into_the_models_clip(tmp_path):
    path = write_video(tmp_path / "clip.mp4", ramp(12 * FPS), FPS, tone(12.0), RATE)
    clip = decode_video(path)
    assert clip.audio == "track" and clip.sample_rate == RATE
    assert clip.frames.shape == (10, SIZE[1], SIZE[0], 3)
    # frame t is the one shown at t + 0.5 s: index t * FPS + FPS // 2
    assert [round(float(f.mean()) / STEP) for f in clip.frames] == [t * FPS + FPS // 2 for t in range(10)]
    assert len(clip.waveform) == pytest.approx(10 * RATE, abs=RATE // 50)
    assert np.abs(clip.waveform).max() == pytest.approx(0.3, abs=0.05)


def test_the_mp4_index_comes_first_so_browsers_can_stream_it(tmp_path):
    data = write_video(tmp_path / "clip.mp4", ramp(8), FPS, tone(2.0), RATE).read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_without_a_waveform_there_is_no_audio_stream(tmp_path):
    info = streams(write_video(tmp_path / "silent.mp4", ramp(3 * FPS), FPS))
    assert "audio" not in info and len(info["frames"]) == 3 * FPS
    assert info["video"]["seconds"] == pytest.approx(3.0)


def test_without_frames_it_writes_an_audio_only_file(tmp_path):
    info = streams(write_video(tmp_path / "sound.aac", None, FPS, tone(2.0), RATE))
    assert "video" not in info and info["audio"]["codec"] == "aac" and info["format"] == "aac"


def test_codec_rate_and_quality_can_be_chosen(tmp_path):
    path = write_video(tmp_path / "clip.mp4", iter(ramp(10)), 2.5, codec="mpeg4", crf=None)
    info = streams(path)
    assert info["video"]["codec"] == "mpeg4" and info["video"]["rate"] == 2.5
    assert info["video"]["seconds"] == pytest.approx(4.0)
    path = write_video(tmp_path / "best.mp4", np.stack(ramp(4)), 1, crf=0)
    assert len(streams(path)["frames"]) == 4


def test_the_file_is_renamed_into_place_and_readable_by_everyone(tmp_path):
    path = tmp_path / "deep" / "er" / "clip.mp4"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"an older file")
    write_video(path, ramp(4), FPS, tone(1.0), RATE)
    assert os.listdir(path.parent) == ["clip.mp4"]
    assert path.stat().st_mode & 0o777 == FILE_MODE
    assert len(streams(path)["frames"]) == 4
    write_video(tmp_path / "new" / "clip.mp4", ramp(2), FPS)  # the folder is created
    assert (tmp_path / "new" / "clip.mp4").is_file()


@pytest.mark.parametrize("frames, fps, waveform, message", [
    ([], FPS, None, "no frames"),
    ([np.zeros((48, 64), np.uint8)], FPS, None, r"frame 0 must be a uint8 RGB array \[H, W, 3\]"),
    ([np.zeros((48, 64, 3), np.float32)], FPS, None, "frame 0 must be a uint8 RGB array"),
    ([np.zeros((48, 64, 4), np.uint8)], FPS, None, "frame 0 must be a uint8 RGB array"),
    ([np.zeros((0, 64, 3), np.uint8)], FPS, None, "frame 0 must be a uint8 RGB array"),
    (ramp(2) + ramp(1, (32, 32)), FPS, None, "frame 2 is 32x32, frame 0 is 64x48"),
    ([np.zeros((47, 64, 3), np.uint8)], FPS, None, "yuv420p needs even frame sides, got 64x47"),
    (ramp(2), 0, None, "fps must be a positive number"),
    (ramp(2), FPS, np.zeros((2, 100), np.float32), r"waveform must be mono \[samples\]"),
    (ramp(2), FPS, np.array([0.0, np.nan], np.float32), "NaN or infinite"),
    (None, FPS, None, "nothing to write"),
])
def test_bad_input_is_refused_naming_the_file_and_leaves_nothing_behind(tmp_path, frames, fps, waveform, message):
    path = tmp_path / "out" / "bad.mp4"
    with pytest.raises(ValueError, match=message) as err:
        write_video(path, frames, fps, waveform, RATE)
    assert str(path) in str(err.value)
    assert not path.parent.exists() or os.listdir(path.parent) == []


def test_a_non_positive_sample_rate_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'a.mp4'}: the sample rate must be a positive"):
        write_video(tmp_path / "a.mp4", ramp(2), FPS, tone(1.0), 0)


def test_importing_the_writer_does_not_import_pyav():
    code = "import sys, refavs.data.video_writer; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
