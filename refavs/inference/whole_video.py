"""Whole videos: a mask for every frame of a video of any length, streamed.

The model sees what it was trained on, ten frames one second apart with their ten seconds of
sound; a whole video is covered by such windows, laid over it one after the other:

- the span (``start`` to ``end``, default the whole video) holds ``N = floor(span)`` whole
  seconds; window ``k`` is the 10-frame clip from ``start + 10 k`` (exactly what
  :func:`~refavs.inference.video.decode_video` and the 10-frame protocol take from there), and
  gives the masks of its ten seconds;
- when ``N`` is not a multiple of 10, the last window is the one that ends at the last whole
  second (from ``start + N - 10``): it overlaps the window before, whose masks are kept for
  the seconds they share, and gives those of the seconds left;
- a span under 10 s is one window looped as a short video is (the rule of ``decode_video``);
- a video with a display rotation (a phone's portrait tag) is turned upright, a multiple of 90
  degrees, before anything else: the windows, the frames given out, the masks and the overlay
  are all upright, and ``summary.json`` gives the tag (``rotation``) and the upright ``size``;
- every frame takes the mask of its second, the one sampled at the middle of that second
  (frames after the last whole second take the last second's): the 1-fps predictions are
  carried to the frames between them, so each frame's mask is the mask the 10-frame protocol
  gives its second.

Streaming: the windows are predicted one at a time (each decoded by seeking to it, only its ten
frames converted), and the video is decoded once more, frame by frame, for the outputs; a frame
is given out as soon as the window of its second has run. Nothing grows with the length but
the per-frame figures of the summary (a few numbers a frame).

:func:`save_video_prediction` writes ``masks/000000.png ...`` (or one ``masks.rle.jsonl.gz`` of
COCO run-length encodings), ``overlay.mp4`` (the source frame rate, the source audio) and
``summary.json``, atomically: see its docstring.
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from refavs.data.video_writer import VideoStreamWriter
from refavs.data.writer import FILE_MODE, atomic_write_bytes, replace_folder
from refavs.inference.errors import InferenceError
from refavs.inference.overlay import H264_ENCODER, OverlayStyle, VideoOverlay, h264_available
from refavs.inference.rle import encode_rle
from refavs.inference.video import (
    SamplingConfig,
    VideoInfo,
    check_end,
    check_start,
    decode_video,
    iter_audio,
    iter_frames,
    overlay_audio_format,
    probe_video,
)
from refavs.version import __version__

SUMMARY_FILE = "summary.json"
MASKS_FOLDER = "masks"
MASK_PATTERN = "{:06d}.png"
RLE_FILE = "masks.rle.jsonl.gz"
OVERLAY_FILE = "overlay.mp4"
INCOMPLETE_FILE = "INCOMPLETE"
"""Present while an output folder is being written (or when a run stopped before the end);
removed once ``summary.json`` is written."""

MASK_FORMATS: tuple[str, ...] = ("png", "rle", "none")
OVERLAY_PRESET = "veryfast"
"""x264 preset of the whole-video overlay (its default, medium, takes about 1.5x the time)."""

_EPSILON = 1e-6


# ------------------------------------------------------------------------------------- the windows

@dataclass(frozen=True)
class WindowPlan:
    """How a span is covered by windows.

    Attributes:
        offsets: where each window starts, in seconds from the span's start.
        seconds: for each second ``s`` of the span (``s`` from 0), ``(window, frame)``: the
            window and the frame of it whose mask second ``s`` takes.
        span: the span's length in seconds.
    """

    offsets: tuple[float, ...]
    seconds: tuple[tuple[int, int], ...]
    span: float

    def source(self, second: int) -> tuple[int, int]:
        """``(window, frame)`` for second ``second`` (past the last whole second: the last one's)."""
        return self.seconds[min(max(second, 0), len(self.seconds) - 1)]

    def used(self, window: int) -> list[int]:
        """The span's seconds that take their mask from ``window`` (consecutive ones)."""
        first = bisect.bisect_left(self.seconds, window, key=lambda entry: entry[0])
        last = bisect.bisect_right(self.seconds, window, key=lambda entry: entry[0])
        return list(range(first, last))


def plan_windows(span: float, sampling: SamplingConfig = SamplingConfig()) -> WindowPlan:
    """Windows over a span of ``span`` seconds (rules: module docstring)."""
    frames, interval = sampling.num_frames, sampling.frame_interval
    length = frames * interval
    whole = int(math.floor(span / interval + _EPSILON))
    if whole < 1:
        raise InferenceError(f"the span is {span:.2f} s long; at least {interval:g} s is needed")
    if whole < frames:  # one looped window: frame t at ((t + phase) * interval) mod span
        table: list[tuple[int, int]] = []
        for s in range(int(math.ceil(span / interval - _EPSILON))):
            inside = (s + sampling.frame_phase) * interval < span - _EPSILON
            table.append((0, s) if inside or not table else table[-1])
        return WindowPlan(offsets=(0.0,), seconds=tuple(table), span=span)
    offsets = [k * length for k in range(whole // frames)]
    table = [(s // frames, s % frames) for s in range(len(offsets) * frames)]
    if whole % frames:
        first = whole - frames  # the last window ends at the last whole second
        offsets.append(first * interval)
        table += [(len(offsets) - 1, s - first) for s in range(len(table), whole)]
    return WindowPlan(offsets=tuple(offsets), seconds=tuple(table), span=span)


# ------------------------------------------------------------------------------------- predictions

@dataclass
class FramePrediction:
    """The prediction for one frame of a whole video.

    Attributes:
        index: the frame's number in the output (0 = the first frame of the span).
        time: its presentation time, seconds from the start of the video.
        second: the span's second it falls in (its mask is that second's).
        window: the window that predicted that second.
        probabilities: ``uint8 [S, S]`` (value / 255 = probability): the 8-bit map the masks are
            stored as; frames of one second share it (treat it as read-only).
        frame: the decoded ``av.VideoFrame``, upright (for a rotated video, a new ``rgb24``
            frame turned by the display rotation); :meth:`image` gives it as RGB.
        threshold: a pixel is in the mask when its probability exceeds this.
        presence_min_area: the frame counts as showing the object when its mask covers this much.
    """

    index: int
    time: float
    second: int
    window: int
    probabilities: np.ndarray
    frame: Any
    threshold: float
    presence_min_area: float

    @property
    def mask(self) -> np.ndarray:
        """``bool [S, S]``: probability above the threshold (as :attr:`InferenceResult.masks`)."""
        return self.probabilities.astype(np.float32) / 255.0 > self.threshold

    @property
    def pixels(self) -> int:
        """Mask pixels (at ``S x S``)."""
        return int(self.mask.sum())

    @property
    def area(self) -> float:
        """The mask's area as a fraction of the frame."""
        return self.pixels / self.probabilities.size

    @property
    def present(self) -> bool:
        """Whether the mask covers at least ``presence_min_area`` of the frame."""
        return self.area >= self.presence_min_area

    def image(self) -> np.ndarray:
        """The frame as ``uint8 [H, W, 3]`` RGB, upright (as a player shows it)."""
        return self.frame.to_ndarray(format="rgb24")


class VideoPrediction:
    """An expression run over a whole video: iterate it for a :class:`FramePrediction` per frame.

    Built by :meth:`RefAVSPipeline.predict_video <refavs.inference.pipeline.RefAVSPipeline.predict_video>`,
    which checks the file and the span before returning; the windows run as the iteration
    reaches them (iterate once). ``windows`` fills with one record per window as they run.
    """

    def __init__(self, pipe, video: str | os.PathLike, expression: str, start: float = 0.0,
                 end: float | None = None, fps: float | None = None, allow_silent: bool = False):
        self.pipe = pipe
        self.expression = expression
        self.allow_silent = allow_silent
        self.truncated = pipe.check_expression(expression)
        sampling: SamplingConfig = pipe.settings.sampling
        self.sampling = sampling
        self.start = check_start(start)
        end = check_end(self.start, end)
        if fps is not None:
            try:
                fps = float(fps)
            except (TypeError, ValueError):
                raise InferenceError(f"fps must be a number of frames per second, got {fps!r}") from None
            if not math.isfinite(fps) or fps <= 0:
                raise InferenceError(f"fps must be a positive number of frames per second, got {fps!r}")
        self.info: VideoInfo = probe_video(video)
        path = self.info.source
        if self.info.duration < sampling.min_seconds:
            raise InferenceError(f"{path}: the video is {self.info.duration:.2f} s long; at least "
                                 f"{sampling.min_seconds:g} s is needed")
        if self.start >= self.info.duration:
            raise InferenceError(f"{path}: start {self.start:g} s is past the end of the video "
                                 f"({self.info.duration:.2f} s long)")
        self.end = self.info.duration if end is None else min(end, self.info.duration)
        if self.end - self.start < sampling.min_seconds:
            raise InferenceError(f"{path}: only {self.end - self.start:.2f} s of video after start {self.start:g} s; "
                                 f"at least {sampling.min_seconds:g} s is needed")
        if not self.info.audio and not allow_silent:
            raise InferenceError(f"{path}: no audio track; Ref-AVS needs the sound "
                                 f"(--allow-silent / allow_silent=True runs on silence)")
        self.fps = fps
        self.plan = plan_windows(self.end - self.start, sampling)
        self.windows: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {"decode": 0.0, "features": 0.0, "model": 0.0}
        self.audio = "track" if self.info.audio else "silence"
        self._started = False

    @property
    def frame_rate(self) -> float:
        """Frames per second of the output: ``fps`` when given, else the video's own (30 when
        the container does not say)."""
        return self.fps or self.info.fps or 30.0

    @property
    def expected_frames(self) -> int:
        """About how many frames the output has (exact for a constant frame rate)."""
        return max(1, int(round((self.end - self.start) * self.frame_rate)))

    def _run_window(self, index: int) -> np.ndarray:
        offset = self.plan.offsets[index]
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the rotation warning was given by probe_video, once
            clip = decode_video(self.info.source, start=self.start + offset, allow_silent=self.allow_silent,
                                config=self.sampling, end=self.end)
        decoded = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncation warning was given when the run was built
            result = self.pipe(clip, self.expression)
        self.timings["decode"] += decoded - began
        self.timings["features"] += result.timings["features"]
        self.timings["model"] += result.timings["model"]
        self.audio = clip.audio
        used = self.plan.used(index)
        self.windows.append({
            "index": index, "start": round(clip.start, 6), "window_seconds": round(clip.window_seconds, 6),
            "frame_times": [round(t, 6) for t in clip.frame_times],
            "seconds": [used[0], used[-1]] if used else [],
            "frame_areas": [round(a, 8) for a in result.frame_areas],
            "max_probability": round(max(result.max_probabilities), 6),
            "present": result.present,
        })
        probabilities = np.rint(result.probabilities * 255.0).astype(np.uint8)
        probabilities.setflags(write=False)  # shared by every frame of a second
        return probabilities

    def __iter__(self) -> Iterator[FramePrediction]:
        if self._started:
            raise RuntimeError("a VideoPrediction is iterated once; call predict_video again")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[FramePrediction]:
        settings = self.pipe.settings
        ready: dict[int, np.ndarray] = {}
        next_window = 0
        for index, (when, frame) in enumerate(iter_frames(self.info, self.start, self.end, self.fps)):
            second = int(math.floor((when - self.start) / self.sampling.frame_interval + _EPSILON))
            window, t = self.plan.source(second)
            while window not in ready:
                for old in [w for w in ready if w < next_window - 1]:
                    del ready[old]
                ready[next_window] = self._run_window(next_window)
                next_window += 1
            yield FramePrediction(index=index, time=when, second=max(0, second), window=window,
                                  probabilities=ready[window][t], frame=frame, threshold=settings.threshold,
                                  presence_min_area=settings.presence_min_area)
        for window in range(next_window, len(self.plan.offsets)):  # every window is reported
            self._run_window(window)


# ------------------------------------------------------------------------------------- the outputs

def _png(probabilities: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(probabilities, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _full_size_mask(probabilities: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    """The mask at the frame's own size: the map resized bilinearly, then thresholded."""
    prob = Image.fromarray(probabilities.astype(np.float32) / 255.0)
    return np.asarray(prob.resize((width, height), Image.Resampling.BILINEAR)) > threshold


def _marker(directory: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(directory / INCOMPLETE_FILE, (json.dumps(state, indent=2) + "\n").encode("utf-8"))


def save_video_prediction(prediction: VideoPrediction, directory: str | os.PathLike, masks: str = "png",
                          overlay: bool = True, style: OverlayStyle | None = None,
                          progress: bool = False) -> dict[str, Path | None]:
    """Run ``prediction`` to the end, writing its outputs into ``directory`` as the frames come.

    - ``masks/000000.png ...`` (``masks="png"``): one 256x256 8-bit map per frame (value / 255 =
      probability, the scorer's format); or ``masks.rle.jsonl.gz`` (``masks="rle"``): one JSON
      line per frame, ``{"frame", "time", "size": [h, w], "counts"}``, the COCO run-length
      encoding of the mask at the frame's own size, upright (a rotated video's display
      rotation applied, as the frames are); ``"none"``: no masks.
    - ``overlay.mp4``: H.264 at the output frame rate with the source's audio (AAC), unless
      ``overlay=False`` or PyAV has no H.264 encoder (a warning).
    - ``summary.json``: written last.

    Atomicity: ``INCOMPLETE`` is written first (and an older ``summary.json`` removed); the
    masks and the overlay are written under temporary names and renamed into place at the end;
    then ``summary.json`` is written and ``INCOMPLETE`` removed. A run stopped by an exception
    (Ctrl-C included) removes its temporary files and leaves ``INCOMPLETE`` saying why; a run
    killed outright leaves ``INCOMPLETE`` and hidden temporary files. No file under a final
    name is ever partly written.

    Returns:
        ``{"masks": folder or file or None, "overlay": file or None, "summary": summary.json}``.
    """
    if masks not in MASK_FORMATS:
        raise ValueError(f"masks must be one of {', '.join(MASK_FORMATS)}, got {masks!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    style = style or OverlayStyle(threshold=prediction.pipe.settings.threshold)
    info = prediction.info
    began = time.perf_counter()
    _marker(directory, {"state": "running", "video": info.source, "expression": prediction.expression,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    (directory / SUMMARY_FILE).unlink(missing_ok=True)
    if overlay and not h264_available():
        warnings.warn(f"PyAV has no {H264_ENCODER} encoder here: no {OVERLAY_FILE} is written", stacklevel=2)
        overlay = False

    mask_tmp: Path | None = None
    rle_tmp: Path | None = None
    rle_file = None
    writer: VideoStreamWriter | None = None
    audio = None
    bar = None
    times, areas, present = array("d"), array("d"), array("b")
    try:
        if masks == "png":
            mask_tmp = Path(tempfile.mkdtemp(prefix=f".{MASKS_FOLDER}.", suffix=".partial", dir=directory))
        elif masks == "rle":
            fd, name = tempfile.mkstemp(prefix=f".{RLE_FILE}.", suffix=".partial", dir=directory)
            os.close(fd)
            rle_tmp = Path(name)
            rle_file = gzip.open(rle_tmp, "wt", encoding="utf-8", compresslevel=6)
        drawer = VideoOverlay(info.width, info.height, prediction.expression, style) if overlay else None
        if drawer is not None:
            rate, channels = overlay_audio_format(info)
            writer = VideoStreamWriter(directory / OVERLAY_FILE, prediction.frame_rate, *drawer.size,
                                       audio_rate=rate if info.audio else None, audio_channels=channels,
                                       crf=style.crf, codec_options={"preset": OVERLAY_PRESET})
            if info.audio:
                audio = iter_audio(info, prediction.start, prediction.end, rate, channels)
        bar = tqdm(total=prediction.expected_frames, unit="frame", disable=not progress, dynamic_ncols=True,
                   desc=Path(info.source).name[:24])
        key = None
        png = rle = None
        area = 0.0
        audio_given = 0
        for item in prediction:
            source = prediction.plan.source(item.second)  # (window, frame): frames of one second share its map
            if source != key:
                key = source
                area = item.area
                mask_size = int(item.probabilities.shape[-1])
                png = _png(item.probabilities) if mask_tmp is not None else None
                rle = (encode_rle(_full_size_mask(item.probabilities, info.width, info.height, item.threshold))
                       if rle_file is not None else None)
            if mask_tmp is not None:
                with open(mask_tmp / MASK_PATTERN.format(item.index), "wb") as f:
                    f.write(png)
            if rle_file is not None:
                rle_file.write(json.dumps({"frame": item.index, "time": round(item.time, 6), **rle}) + "\n")
            if writer is not None:
                caption = f"frame {item.index}  {item.time:.2f} s  mask {area:.1%}"
                writer.write_frame(drawer.render(item.frame, item.probabilities, caption, key=key), "yuv420p")
                if audio is not None:
                    until = int(round((item.index + 1) / prediction.frame_rate * writer.audio_rate))
                    while audio_given < until:
                        chunk = next(audio, None)
                        if chunk is None:
                            audio = None
                            break
                        writer.write_audio(chunk)
                        audio_given += chunk.shape[1]
            times.append(item.time)
            areas.append(area)
            present.append(area >= item.presence_min_area)
            bar.update(1)
        if not times:
            raise InferenceError(f"{info.source}: no frame could be decoded between {prediction.start:g} s and "
                                 f"{prediction.end:g} s")
        if audio is not None:
            for chunk in audio:
                writer.write_audio(chunk)
        bar.close()
        outputs: dict[str, str | None] = {"masks": None, "overlay": None}
        if writer is not None:
            writer.close()
            outputs["overlay"] = OVERLAY_FILE
        kept = {"png": MASKS_FOLDER, "rle": RLE_FILE}.get(masks)
        for stale in (MASKS_FOLDER, RLE_FILE, "overlay.gif", *(() if overlay else (OVERLAY_FILE,))):
            if stale != kept and (directory / stale).exists():
                _remove(directory / stale)  # an older run's outputs that this one does not replace
        if mask_tmp is not None:
            os.chmod(mask_tmp, 0o755)
            replace_folder(mask_tmp, directory / MASKS_FOLDER)
            outputs["masks"] = MASKS_FOLDER
        if rle_file is not None:
            rle_file.close()
            os.chmod(rle_tmp, FILE_MODE)
            os.replace(rle_tmp, directory / RLE_FILE)
            outputs["masks"] = RLE_FILE
    except BaseException as err:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.abort()
        if rle_file is not None:
            rle_file.close()
        for tmp in (mask_tmp, rle_tmp):
            if tmp is not None and tmp.exists():
                _remove(tmp)
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
        try:
            _marker(directory, {"state": "incomplete", "video": info.source, "expression": prediction.expression,
                                "frames_done": len(times), "reason": reason.splitlines()[0] if reason else ""})
        except Exception:  # the marker from the start stays; the original error matters more
            pass
        raise
    timings = {**prediction.timings, "total": time.perf_counter() - began}
    timings["write"] = max(0.0, timings["total"] - timings["decode"] - timings["features"] - timings["model"])
    summary = video_summary(prediction, times, areas, present, masks, outputs, timings, mask_size)
    atomic_write_bytes(directory / SUMMARY_FILE, (json.dumps(summary) + "\n").encode("utf-8"))
    (directory / INCOMPLETE_FILE).unlink(missing_ok=True)
    return {"masks": directory / outputs["masks"] if outputs["masks"] else None,
            "overlay": directory / outputs["overlay"] if outputs["overlay"] else None,
            "summary": directory / SUMMARY_FILE}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def video_summary(prediction: VideoPrediction, times, areas, present, masks: str, outputs: dict,
                  timings: dict[str, float], mask_size: int) -> dict[str, Any]:
    """What a whole video's ``summary.json`` holds (JSON-ready)."""
    info, pipe = prediction.info, prediction.pipe
    settings = pipe.settings
    return {
        "kind": "refavs-video-prediction",
        "video": info.source,
        "expression": prediction.expression,
        "expression_truncated": prediction.truncated,
        "start": prediction.start,
        "end": round(prediction.end, 6),
        "duration": round(info.duration, 6),
        "fps": round(prediction.frame_rate, 6),
        "source_fps": None if info.fps is None else round(info.fps, 6),
        "frame_count": len(times),
        "size": [info.width, info.height],
        "rotation": info.rotation,
        "audio": prediction.audio,
        "present": bool(any(present)),
        "frame_times": [round(t, 6) for t in times],
        "frame_areas": [round(a, 8) for a in areas],
        "frame_present": [bool(p) for p in present],
        "windows": prediction.windows,
        "threshold": settings.threshold,
        "presence_min_area": settings.presence_min_area,
        "mask_size": mask_size,
        "masks": {"format": masks, "path": outputs["masks"],
                  **({"pattern": MASK_PATTERN} if masks == "png" else {})},
        "checkpoint": pipe.checkpoint,
        "feature_preset": pipe.config.feature_preset,
        "refavs_version": __version__,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "outputs": {k: v for k, v in outputs.items()},
    }
