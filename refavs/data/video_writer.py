"""Writing frames and a mono waveform as one video file (H.264 + AAC in an MP4 by default).

:func:`write_video` is the one place refavs encodes video: the inference overlay, the Synth
clip videos (``refavs.synth.video``) and the clips the tests make all go through it. The file is
written to a temporary name in the same folder and renamed into place, so an interrupted write
never leaves a truncated video behind. Video and audio packets are interleaved by time and MP4s
get ``+faststart`` (the index first), so a browser can start playing before the download ends.
"""

from __future__ import annotations

import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from refavs.data.writer import AUDIO_SAMPLE_RATE, FILE_MODE

VIDEO_CODEC = "libx264"
"""Default video encoder (H.264, what browsers play)."""

AUDIO_CODEC = "aac"
"""Default audio encoder."""

PIXEL_FORMAT = "yuv420p"
"""Default pixel format (4:2:0, the one browsers decode; needs even frame sides)."""

AUDIO_CHUNK = 1024
"""Samples per audio frame handed to the encoder (AAC's own frame size)."""

_FASTSTART_FORMATS = frozenset({"mp4", "mov", "m4v", "ipod"})
_HALF_CHROMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12", "nv21", "yuv420p10le"})


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray] | None, fps: float,
                waveform: np.ndarray | None = None, sample_rate: int = AUDIO_SAMPLE_RATE, *,
                codec: str = VIDEO_CODEC, pix_fmt: str = PIXEL_FORMAT, crf: int | None = None,
                audio_codec: str = AUDIO_CODEC, container_format: str | None = None,
                codec_options: Mapping[str, str] | None = None) -> Path:
    """Write ``frames`` shown at ``fps`` frames per second and ``waveform`` to ``path``.

    Args:
        path: the file to write; its folder is created. The container comes from the suffix
            (``.mp4``, ``.mkv``, ``.aac`` ...) unless ``container_format`` names it.
        frames: ``uint8 [H, W, 3]`` RGB frames of one size (a list, an iterable or a
            ``[T, H, W, 3]`` array); frame ``i`` is shown from ``i / fps`` seconds. ``None``
            writes no video stream (an audio-only file; ``waveform`` is then required).
        fps: frames per second (a float is turned into a fraction, e.g. 2.5 -> 5/2).
        waveform: mono float samples in [-1, 1] (``[samples]``), or None for no audio stream.
        sample_rate: rate of ``waveform`` in Hz.
        codec, pix_fmt, crf: video encoder, its pixel format and, when given, its ``crf``.
        audio_codec: audio encoder.
        container_format: FFmpeg muxer name, when the suffix does not say it.
        codec_options: further video encoder options (strings, as FFmpeg takes them).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: naming ``path``, for frames that are empty, not ``uint8 [H, W, 3]``, of
            different sizes or of odd sides with a 4:2:0 ``pix_fmt``; a waveform that is not
            1-D or not finite; a non-positive ``fps`` or ``sample_rate``; nothing to write.
    """
    path = Path(path)
    if frames is None and waveform is None:
        raise ValueError(f"{path}: nothing to write (no frames and no waveform)")
    rate = _frame_rate(path, fps) if frames is not None else None
    wave = _mono(path, waveform, sample_rate) if waveform is not None else None
    audio_rate = int(sample_rate)
    frame_iter = iter(frames) if frames is not None else None
    first = None
    if frame_iter is not None:
        first = next(frame_iter, None)
        if first is None:
            raise ValueError(f"{path}: no frames to write (an empty frame sequence)")
        first = _check_frame(path, 0, first, None, pix_fmt)

    # PyAV (FFmpeg) is heavy to import: only code that writes a video pays for it.
    import av

    fmt = container_format or path.suffix.lower().lstrip(".")
    options = {"movflags": "+faststart"} if fmt in _FASTSTART_FORMATS else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, "w", format=container_format, options=options) as container:
            video = None
            if first is not None:
                video = container.add_stream(codec, rate=rate)
                video.height, video.width = first.shape[:2]
                video.pix_fmt = pix_fmt
                opts = dict(codec_options or {})
                if crf is not None:
                    opts["crf"] = str(crf)
                if opts:
                    video.options = opts
            sound = None
            if wave is not None:
                sound = container.add_stream(audio_codec, rate=audio_rate)
                sound.layout = "mono"
            written = 0  # audio samples handed to the encoder so far

            def encode_audio(until: int) -> None:
                nonlocal written
                while sound is not None and written < min(until, len(wave)):
                    chunk = wave[written:min(written + AUDIO_CHUNK, until, len(wave))]
                    frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
                    frame.sample_rate, frame.pts, frame.time_base = audio_rate, written, Fraction(1, audio_rate)
                    for packet in sound.encode(frame):
                        container.mux(packet)
                    written += len(chunk)

            if video is not None:
                index, array = 0, first
                while array is not None:
                    frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                    frame.pts, frame.time_base = index, 1 / rate
                    for packet in video.encode(frame):
                        container.mux(packet)
                    index += 1
                    encode_audio(math.ceil(index / rate * audio_rate))  # the audio up to the next frame
                    array = next(frame_iter, None)
                    if array is not None:
                        array = _check_frame(path, index, array, first.shape, pix_fmt)
                for packet in video.encode():
                    container.mux(packet)
            if sound is not None:
                encode_audio(len(wave))
                for packet in sound.encode():
                    container.mux(packet)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _frame_rate(path: Path, fps: float) -> Fraction:
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: fps must be a positive number, got {fps!r}") from None
    if rate <= 0:
        raise ValueError(f"{path}: fps must be a positive number, got {fps!r}")
    return rate


def _mono(path: Path, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    if int(sample_rate) <= 0:
        raise ValueError(f"{path}: the sample rate must be a positive number of Hz, got {sample_rate!r}")
    wave = np.ascontiguousarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"{path}: the waveform must be mono [samples], got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{path}: the waveform holds NaN or infinite samples")
    return wave


def _check_frame(path: Path, index: int, frame: np.ndarray, shape: tuple[int, ...] | None,
                 pix_fmt: str) -> np.ndarray:
    """``frame`` as a contiguous ``uint8 [H, W, 3]`` array, or ValueError naming ``path``."""
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise ValueError(f"{path}: frame {index} must be a uint8 RGB array [H, W, 3], "
                         f"got {array.dtype} {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{path}: frame {index} is {array.shape[1]}x{array.shape[0]}, "
                         f"frame 0 is {shape[1]}x{shape[0]}; all frames must have one size")
    if pix_fmt in _HALF_CHROMA_FORMATS and (array.shape[0] % 2 or array.shape[1] % 2):
        raise ValueError(f"{path}: {pix_fmt} needs even frame sides, got {array.shape[1]}x{array.shape[0]}")
    return np.ascontiguousarray(array)


class VideoStreamWriter:
    """A video written frame by frame, with audio given in chunks as it comes: memory stays
    bounded whatever the length.

    ::

        with VideoStreamWriter("out.mp4", fps=30, width=640, height=360, audio_rate=48000,
                               audio_channels=2) as writer:
            for frame, sound in stream:
                writer.write_audio(sound)           # float32 [channels, samples]
                writer.write_frame(frame)           # uint8 [H, W, 3] RGB, or 4:2:0 planes
        # closed: the file is in place; an exception inside the block removes it

    The file is written under a temporary name in the same folder and renamed into place by
    :meth:`close`; :meth:`abort` (or an exception in the ``with`` block) removes it, so a
    stopped write never leaves a truncated file under ``path``. The container interleaves the
    packets by time; give the audio up to each frame's time for a file that streams well.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, *,
                 audio_rate: int | None = None, audio_channels: int = 1, codec: str = VIDEO_CODEC,
                 pix_fmt: str = PIXEL_FORMAT, crf: int | None = None, audio_codec: str = AUDIO_CODEC,
                 container_format: str | None = None, codec_options: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.rate = _frame_rate(self.path, fps)
        if pix_fmt in _HALF_CHROMA_FORMATS and (width % 2 or height % 2):
            raise ValueError(f"{self.path}: {pix_fmt} needs even frame sides, got {width}x{height}")
        if audio_channels not in (1, 2):
            raise ValueError(f"{self.path}: audio must be mono or stereo, got {audio_channels} channels")
        if audio_rate is not None and int(audio_rate) <= 0:
            raise ValueError(f"{self.path}: the sample rate must be a positive number of Hz, got {audio_rate!r}")
        # PyAV (FFmpeg) is heavy to import: only code that writes a video pays for it.
        import av

        self._av = av
        self.width, self.height = int(width), int(height)
        self.frames = 0
        self.samples = 0
        self.channels = audio_channels
        fmt = container_format or self.path.suffix.lower().lstrip(".")
        options = {"movflags": "+faststart"} if fmt in _FASTSTART_FORMATS else {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{self.path.suffix}",
                                         dir=self.path.parent)
        os.close(fd)
        try:
            self._container = av.open(self._tmp, "w", format=container_format, options=options)
            self._video = self._container.add_stream(codec, rate=self.rate)
            self._video.width, self._video.height = self.width, self.height
            self._video.pix_fmt = pix_fmt
            opts = dict(codec_options or {})
            if crf is not None:
                opts["crf"] = str(crf)
            if opts:
                self._video.options = opts
            self._audio = None
            if audio_rate is not None:
                self.audio_rate = int(audio_rate)
                self._audio = self._container.add_stream(audio_codec, rate=self.audio_rate)
                self._audio.layout = "mono" if audio_channels == 1 else "stereo"
            self._pending = np.zeros((audio_channels, 0), dtype=np.float32)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        self._open = True

    def write_frame(self, frame: np.ndarray, format: str = "rgb24") -> None:
        """Append one frame: ``uint8 [H, W, 3]`` RGB (``format="rgb24"``) or the planes of the
        writer's own ``yuv420p`` as ``uint8 [H * 3 / 2, W]`` (``format="yuv420p"``, no conversion)."""
        array = np.ascontiguousarray(frame)
        expected = (self.height, self.width, 3) if format == "rgb24" else (self.height * 3 // 2, self.width)
        if array.dtype != np.uint8 or array.shape != expected:
            raise ValueError(f"{self.path}: frame {self.frames} must be uint8 {expected} ({format}), "
                             f"got {array.dtype} {array.shape}")
        out = self._av.VideoFrame.from_ndarray(array, format=format)
        out.pts, out.time_base = self.frames, 1 / self.rate
        for packet in self._video.encode(out):
            self._container.mux(packet)
        self.frames += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append ``float32 [channels, samples]`` (or ``[samples]`` for mono) audio in [-1, 1]."""
        if self._audio is None:
            raise ValueError(f"{self.path}: the writer was opened without an audio track")
        chunk = np.asarray(samples, dtype=np.float32)
        if chunk.ndim == 1:
            chunk = chunk[None]
        if chunk.ndim != 2 or chunk.shape[0] != self.channels:
            raise ValueError(f"{self.path}: audio must be [{self.channels}, samples], got shape {chunk.shape}")
        self._pending = np.concatenate([self._pending, chunk], axis=1)
        self._encode_audio(final=False)

    def _encode_audio(self, final: bool) -> None:
        layout = "mono" if self.channels == 1 else "stereo"
        while self._pending.shape[1] >= AUDIO_CHUNK or (final and self._pending.shape[1]):
            chunk = np.ascontiguousarray(self._pending[:, :AUDIO_CHUNK])
            self._pending = self._pending[:, chunk.shape[1]:]
            frame = self._av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = self.audio_rate, self.samples
            frame.time_base = Fraction(1, self.audio_rate)
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
            self.samples += chunk.shape[1]

    def close(self) -> Path:
        """Flush the encoders, close the file and rename it into place; returns ``path``."""
        if not self._open:
            return self.path
        try:
            if self.frames == 0:
                raise ValueError(f"{self.path}: no frames to write (an empty frame sequence)")
            for packet in self._video.encode():
                self._container.mux(packet)
            if self._audio is not None:
                self._encode_audio(final=True)
                for packet in self._audio.encode():
                    self._container.mux(packet)
            self._container.close()
            self._open = False
            os.chmod(self._tmp, FILE_MODE)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file (nothing is left under ``path``'s name)."""
        if self._open:
            self._open = False
            try:
                self._container.close()
            except Exception:  # closing a half-written file can fail in many ways; it is deleted anyway
                pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "VideoStreamWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
