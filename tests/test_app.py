"""The web demo's input checks, summary and CLI, without Gradio or a browser (the page itself
is tested in tests/browser, run with scripts/browser-test)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from refavs import app
from refavs.app import AppConfig, UploadError, check_expression, check_upload, format_summary, predict
from refavs.cli import main
from refavs.data.video_writer import write_video
from refavs.inference import InferenceError
from refavs.inference.limits import MAX_EXPRESSION_CHARS

MB = 1024 * 1024


def make_video(path: Path, seconds: int = 2, fps: int = 4, audio: bool = True, video: bool = True) -> Path:
    """A small 32x32 MPEG-4 (+ silent AAC) file; with ``video=False`` an audio-only AAC file."""
    frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(seconds * fps)] if video else None
    silence = np.zeros(seconds * 16 * 1024, np.float32) if audio else None
    return write_video(path, frames, fps, silence, 16_000, codec="mpeg4",
                       container_format="mp4" if video else "adts")


@pytest.fixture()
def clip(tmp_path) -> Path:
    return make_video(tmp_path / "clip.mp4")


def test_importing_the_app_does_not_import_gradio():
    code = "import sys, refavs.app; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_config_defaults_listen_on_localhost_and_are_checked():
    config = AppConfig()
    assert (config.host, config.port, config.max_upload_mb) == ("127.0.0.1", 7860, 50.0)
    assert config.max_upload_bytes == 50 * MB
    for bad in ({"max_upload_mb": 0}, {"max_upload_mb": -1}, {"port": 0}, {"port": 70_000}):
        with pytest.raises(ValueError):
            AppConfig(**bad)


def test_a_video_within_the_limit_is_accepted(clip):
    assert check_upload(str(clip), MB) == clip
    assert check_upload(clip, clip.stat().st_size) == clip  # the limit itself is allowed


def test_a_file_over_the_limit_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (MB + 1))
    monkeypatch.setattr(av, "open", lambda *a, **k: pytest.fail("opened a file over the limit"))
    with pytest.raises(UploadError, match=r"too large \(1\.0 MB\); the limit is 1\.0 MB"):
        check_upload(big, MB)


@pytest.mark.parametrize("content, message", [
    (b"this is not a video\n" * 20, "is not a video file"),
    (b"", "is empty"),
    ("png", "is an image, not a video"),
])
def test_a_file_that_is_not_a_video_is_refused(tmp_path, content, message):
    path = tmp_path / "notes.mp4"
    if content == "png":
        Image.new("RGB", (8, 8)).save(path, format="PNG")
    else:
        path.write_bytes(content)
    with pytest.raises(UploadError, match=message) as err:
        check_upload(path, MB)
    assert "'notes.mp4'" in str(err.value) and str(tmp_path) not in str(err.value)


def test_an_audio_file_is_refused_as_having_no_video(tmp_path):
    path = make_video(tmp_path / "sound.aac", video=False)
    with pytest.raises(UploadError, match="no video stream"):
        check_upload(path, MB)


def test_no_upload_and_no_expression_are_refused(tmp_path):
    with pytest.raises(UploadError, match="upload a video"):
        check_upload(None, MB)
    with pytest.raises(UploadError, match="missing"):
        check_upload(tmp_path / "gone.mp4", MB)
    for empty in (None, "", "   \n"):
        with pytest.raises(UploadError, match="type an expression"):
            check_expression(empty)
    assert check_expression("  the dog \n") == "the dog"


def test_summary_says_present_or_not_and_lists_the_areas():
    text = format_summary(True, [0.5, 0.0125], "the dog", seconds=1.25)
    assert "**the dog**: the referred object is **present**." in text
    assert "| area % | 50.0 | 1.2 |" in text and "| second | 0 | 1 |" in text and "1.2 s" in text
    assert "**not present**" in format_summary(False, [0.0] * 10)


class StandIn:
    """An object with the pipeline's interface: ``pipe(video, expression, start=)`` -> result."""

    def __init__(self, error: Exception | None = None):
        self.error, self.calls = error, []

    def __call__(self, video, expression, start=0.0):
        self.calls.append((video, expression, start))
        if self.error is not None:
            raise self.error
        masks = np.zeros((10, 256, 256), bool)
        masks[:, :64, :64] = True

        def save(directory):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "overlay.mp4").write_bytes(b"mp4")
            return {"overlay": directory / "overlay.mp4", "masks": directory / "masks"}

        return SimpleNamespace(masks=masks, present=True, frame_areas=[0.0625] * 10, save=save)


def test_predict_runs_the_pipeline_and_returns_overlay_masks_and_summary(clip, tmp_path):
    pipe = StandIn()
    out = predict(pipe, str(clip), " the square ", 1.5, AppConfig(), tmp_path / "work")
    assert pipe.calls == [(clip, "the square", 1.5)]
    assert not out["error"] and out["overlay"].name == "overlay.mp4" and out["overlay"].is_file()
    assert len(out["masks"]) == 10 and all(Path(p).is_file() for p, _ in out["masks"])
    assert out["masks"][0][1] == "0: 6.2%"
    assert "**present**" in out["status"]


@pytest.mark.parametrize("video, expression, start, message", [
    (None, "the dog", 0, "upload a video"),
    ("clip", "", 0, "type an expression"),
    ("clip", "x" * (MAX_EXPRESSION_CHARS + 1), 0, f"over the limit of {MAX_EXPRESSION_CHARS:,} characters"),
    ("clip", "the dog", -2, "0 seconds or later"),
    ("text", "the dog", 0, "is not a video file"),
    ("big", "the dog", 0, "too large"),
])
def test_predict_shows_bad_input_as_a_message_and_never_calls_the_model(clip, tmp_path, video, expression,
                                                                        start, message):
    files = {"clip": clip, "text": tmp_path / "notes.mp4", "big": tmp_path / "big.mp4"}
    files["text"].write_text("not a video")
    files["big"].write_bytes(b"\0" * (MB + 1))
    pipe = StandIn()
    out = predict(pipe, None if video is None else str(files[video]), expression, start,
                  AppConfig(max_upload_mb=1), tmp_path / "work")
    assert out["error"] and out["overlay"] is None and out["masks"] == []
    assert out["status"].startswith("**Error:**") and message in out["status"]
    assert pipe.calls == []


def test_predict_shows_pipeline_errors_without_server_paths_or_tracebacks(clip, tmp_path, capsys):
    out = predict(StandIn(InferenceError(f"{clip}: no audio track; Ref-AVS needs the sound")), str(clip),
                  "the dog", 0, AppConfig(), tmp_path / "work")
    assert out["status"] == "**Error:** 'clip.mp4': no audio track; Ref-AVS needs the sound"
    out = predict(StandIn(RuntimeError("boom\nsecond line")), str(clip), "the dog", 0, AppConfig(), tmp_path)
    assert out["error"] and out["status"] == "**Error:** the model failed on this input (RuntimeError: boom)."
    assert "Traceback" in capsys.readouterr().err  # the server log keeps the traceback


def test_cli_without_gradio_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(app, "gradio_available", lambda: False)
    assert main(["app", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs Gradio" in err and 'pip install -e ".[app]"' in err


def test_cli_refuses_a_folder_that_is_not_a_checkpoint_before_serving(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(app, "gradio_available", lambda: True)
    monkeypatch.setattr(app, "build_app", lambda *a, **k: pytest.fail("served a bad checkpoint"))
    assert main(["app", "--checkpoint", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refavs app: error: ") and f"{tmp_path}: not a refavs checkpoint" in err
    assert main(["app", "--checkpoint", str(tmp_path), "--max-upload-mb", "0"]) == 2


def test_typed_text_is_shown_literally_not_as_markdown():
    text = format_summary(False, [0.0], "the *loud* <b>dog</b> | cat_1")
    assert text.startswith(r"**the \*loud\* \<b\>dog\</b\> \| cat\_1**: the referred object is **not present**")
    assert app.error_markdown("'a_b.mp4': bad") == r"**Error:** 'a\_b.mp4': bad"


class SideStandIn(StandIn):
    """A stand-in whose masks say which expression it was given: a square of side
    ``SIDE_STEP * n`` for the expression ``"object n"``; it pauses so that calls overlap."""

    SIDE_STEP = 16
    PAUSE_S = 0.05

    def __call__(self, video, expression, start=0.0):
        result = super().__call__(video, expression, start)
        side = self.SIDE_STEP * int(expression.split()[-1])
        result.masks = np.zeros_like(result.masks)
        result.masks[:, :side, :side] = True
        time.sleep(self.PAUSE_S)
        return result


def test_predict_from_several_threads_keeps_answers_and_result_folders_apart(clip, tmp_path):
    """The page's handler called from threads at once (Gradio runs one at a time, but nothing in
    predict relies on it): each call gets its own expression's masks and summary in a result folder
    of its own, and the next call removes the folders older than RESULT_MAX_AGE_S."""
    threads_n, join_timeout_s, margin_s = 6, 30, 1
    pipe, workdir, answers = SideStandIn(), tmp_path / "work", {}
    barrier = threading.Barrier(threads_n, timeout=join_timeout_s)

    def one(n: int) -> None:
        barrier.wait()
        answers[n] = predict(pipe, str(clip), f"object {n}", 0, AppConfig(), workdir)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, threads_n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=join_timeout_s)
    assert sorted(answers) == list(range(1, threads_n + 1))
    for n, out in answers.items():
        assert not out["error"] and out["status"].startswith(f"**object {n}**: "), out["status"]
        side = SideStandIn.SIDE_STEP * n
        masks = np.stack([np.asarray(Image.open(png)) > 0 for png, _ in out["masks"]])
        assert masks.sum() == masks.shape[0] * side * side and masks[:, side - 1, side - 1].all()
        assert out["overlay"].parent.parent == workdir
    folders = sorted(workdir.glob("result-*"))
    assert len(folders) == threads_n == len({out["overlay"].parent for out in answers.values()})
    old = time.time() - app.RESULT_MAX_AGE_S - margin_s
    for folder in folders:
        os.utime(folder, (old, old))
    out = predict(pipe, str(clip), "object 1", 0, AppConfig(), workdir)
    assert [p.name for p in workdir.glob("result-*")] == [out["overlay"].parent.name]
