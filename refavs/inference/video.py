"""Decoding a video file into what the model eats: 10 frames at 1 fps and the window's audio.

The rules (also in ``docs/inference.md``):

- **Time origin**: times are seconds from the first frame of the video stream (its
  ``start_time``), so ``start=0`` is the beginning of the video whatever the container's clock.
- **Window**: the clip is the ``window = min(10 s, duration - start)`` seconds from ``start``.
- **Frame times**: frame ``t`` (0..9) is the frame *shown* at time
  ``start + ((t + 0.5) mod window)``, i.e. the middle of second ``t`` of the clip; the frame
  shown at time ``x`` is the last one whose presentation time is at or before ``x`` (the first
  frame when ``x`` precedes it). For a full window this is simply ``start + t + 0.5``.
- **Short videos** (less than 10 s after ``start``): the clip is looped, frames and audio
  alike. Frames follow the formula above (a 4 s video gives the frames at 0.5, 1.5, 2.5, 3.5,
  0.5, 1.5, ... s) and the audio of the window is returned as it is, to be extended to 10 s by
  the audio featurizer's own length rule, which for every built-in preset is ``repeat`` (tiles
  it from its start): so second ``t`` of the audio lines up with frame ``t``.
- **Too short**: a video under 1 s, or less than 1 s left after ``start``, is refused; so is a
  ``start`` at or past the end.
- **Rotation**: a video whose container asks for a display rotation (phones record portrait
  video as landscape frames with a rotation tag) is turned upright as a player shows it: frames
  are rotated by the tag, a multiple of 90 degrees, so a 1920x1080 frame tagged 90 becomes
  1080x1920 and the masks and the overlay follow. A tag that is not a multiple of 90 degrees is
  ignored with a warning (the frames are used as stored); mirroring in the tag is not applied.
- **Too large**: frames with a side over ``MAX_FRAME_SIDE`` pixels (:mod:`refavs.inference.limits`)
  are refused before any is decoded.
- **Audio**: the first audio track, from ``start`` for ``window`` seconds, mixed to mono and
  resampled to 16 kHz by FFmpeg's resampler (``av.AudioResampler``). A file without an audio
  track is refused unless ``allow_silent``, which then uses silence.
- **Seeking**: both streams are seeked to the keyframe at or before ``start`` and decoded
  forward only as far as the last sampled time, so a long file is not decoded in full.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.inference.errors import InferenceError
from refavs.inference.limits import frame_size_error

AudioSource = Literal["track", "silence", "arrays"]

_TIME_EPSILON = 1e-6
"""Seconds of slack when comparing a frame's presentation time with a sampled time."""


@dataclass(frozen=True)
class SamplingConfig:
    """How a clip is taken from a video.

    Attributes:
        num_frames: frames per clip (the model's ``fusion.num_frames``, 10).
        frame_interval: seconds between sampled frames (1 fps).
        frame_phase: where inside each interval a frame is taken, as a fraction (0.5: the middle).
        min_seconds: the shortest usable video (and the least video left after ``start``).
        audio_rate: sample rate (Hz) of the decoded audio (the features' rate).
        audio_channels: 1, the channels mixed to mono; 2, the left and the right channel (for a
            model of stereo features; a mono track gives both the same).
    """

    num_frames: int = NUM_FRAMES
    frame_interval: float = 1.0
    frame_phase: float = 0.5
    min_seconds: float = 1.0
    audio_rate: int = 16_000
    audio_channels: int = 1

    def __post_init__(self) -> None:
        if self.audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 (mono) or 2 (left, right), got {self.audio_channels}")

    @property
    def window_seconds(self) -> float:
        """Length of a full clip (10 s)."""
        return self.num_frames * self.frame_interval


@dataclass(frozen=True)
class VideoClip:
    """A clip ready for the model.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB frames at the video's own size, upright (the
            container's display rotation applied).
        waveform: ``float32 [samples]`` mono audio of the window, or ``[2, samples]`` (left,
            right) when decoded with ``audio_channels=2`` (may be shorter than 10 s; the audio
            featurizer extends it by its own rule).
        sample_rate: rate of ``waveform`` in Hz.
        frame_times: the time (seconds from the start of the video) each frame was taken at.
        start: where the clip starts in the video (seconds).
        window_seconds: seconds of video the clip covers (10, or less for a short video).
        duration: length of the whole video (seconds), None for arrays.
        source: the video file, None for arrays.
        audio: ``track`` (the file's audio), ``silence`` (no audio track, ``allow_silent``) or
            ``arrays`` (given by the caller).
        rotation: the display rotation the file asks for, degrees counter-clockwise as FFmpeg
            reports it (0: none); ``frames`` have it applied when it is a multiple of 90.
    """

    frames: np.ndarray
    waveform: np.ndarray
    sample_rate: int
    frame_times: tuple[float, ...]
    start: float = 0.0
    window_seconds: float = 10.0
    duration: float | None = None
    source: str | None = None
    audio: AudioSource = "track"
    rotation: int = 0

    @classmethod
    def from_arrays(cls, frames: np.ndarray, waveform: np.ndarray, sample_rate: int,
                    num_frames: int = NUM_FRAMES, channels: int = 1) -> "VideoClip":
        """A clip from ``frames`` (``uint8 [T, H, W, 3]``, one per second) and a waveform
        (``[samples]`` or ``[channels, samples]``, any rate), mixed to mono, or with ``channels=2``
        its first two channels kept (left, right); raises :class:`InferenceError` on bad shapes."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InferenceError(f"frames must be a uint8 array [T, H, W, 3], got {frames.dtype} {frames.shape}")
        if len(frames) != num_frames:
            raise InferenceError(f"the model takes {num_frames} frames (one per second), got {len(frames)}")
        if min(frames.shape[1:3]) < 1:
            raise InferenceError(f"frames are empty: {frames.shape}")
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim == 2:
            waveform = waveform[:2] if channels == 2 and waveform.shape[0] >= 2 else waveform.mean(axis=0)
        if waveform.ndim not in (1, 2):
            raise InferenceError(f"the waveform must be [samples] or [channels, samples], got shape {waveform.shape}")
        if not np.all(np.isfinite(waveform)):
            raise InferenceError("the waveform holds NaN or infinite samples")
        if int(sample_rate) <= 0:
            raise InferenceError(f"the sample rate must be a positive number of Hz, got {sample_rate}")
        times = tuple(t + 0.5 for t in range(num_frames))
        return cls(frames=frames, waveform=waveform, sample_rate=int(sample_rate), frame_times=times,
                   window_seconds=float(num_frames), audio="arrays")


def sample_times(start: float, window: float, config: SamplingConfig = SamplingConfig()) -> list[float]:
    """The times (seconds from the video's start) frame ``0..T-1`` are taken at:
    ``start + ((t + phase) * interval) mod window``."""
    return [start + math.fmod((t + config.frame_phase) * config.frame_interval, window)
            for t in range(config.num_frames)]


def decode_video(path: str | Path, start: float = 0.0, allow_silent: bool = False,
                 config: SamplingConfig = SamplingConfig(), end: float | None = None) -> VideoClip:
    """Decode the clip of ``path`` that starts at ``start`` seconds (rules: module docstring).

    ``end`` (seconds, None: the end of the video) cuts the video short: the window is then
    ``min(10 s, end - start)``, and a span under 10 s is looped as a short video is.

    Raises:
        InferenceError: missing or unreadable file, no video stream, a video shorter than
            ``config.min_seconds``, ``start`` past the end, no audio track (without ``allow_silent``).
    """
    path = Path(path)
    start = check_start(start)
    end = check_end(start, end)
    with _opened(path) as container:
        return _decode(container, path, start, allow_silent, config, end)


@contextlib.contextmanager
def _opened(path: Path):
    """The open PyAV container of ``path``; a missing or unreadable file, and a decoding error
    inside the block, become an :class:`InferenceError` naming the file."""
    import av  # pulls in av

    if not path.is_file():
        raise InferenceError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise InferenceError(f"{path}: not a readable video file ({_reason(err)})") from None
    try:
        with container:
            yield container
    except av.FFmpegError as err:
        raise InferenceError(f"{path}: the video could not be decoded ({_reason(err)})") from None


def _video_stream(container, path: Path):
    """The first video stream of ``container``; refused when there is none or its frames are too large."""
    if not container.streams.video:
        kind = "an audio file" if container.streams.audio else "not a video"
        raise InferenceError(f"{path}: no video stream ({kind})")
    stream = container.streams.video[0]
    too_large = frame_size_error(stream.codec_context.width or 0, stream.codec_context.height or 0)
    if too_large:
        raise InferenceError(f"{path}: {too_large}")
    return stream


def check_start(start: float) -> float:
    try:
        value = float(start)
    except (TypeError, ValueError):
        raise InferenceError(f"start must be a number of seconds, got {start!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InferenceError(f"start must be a non-negative number of seconds, got {start!r}")
    return value


def check_end(start: float, end: float | None) -> float | None:
    """``end`` as a float after ``start`` (None stays None: the end of the video)."""
    if end is None:
        return None
    try:
        value = float(end)
    except (TypeError, ValueError):
        raise InferenceError(f"end must be a number of seconds, got {end!r}") from None
    if not math.isfinite(value) or value <= start:
        raise InferenceError(f"end must be a number of seconds after the start ({start:g} s), got {end!r}")
    return value


def _reason(err: BaseException) -> str:
    """An FFmpeg error's message without the errno and file name PyAV adds."""
    text = getattr(err, "strerror", None) or str(err)
    return str(text).splitlines()[0] if text else type(err).__name__


def _decode(container, path: Path, start: float, allow_silent: bool, config: SamplingConfig,
            end: float | None = None) -> VideoClip:
    stream = _video_stream(container, path)
    stream.thread_type = "AUTO"
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    duration = _duration(container, stream, origin)
    if duration < config.min_seconds:
        raise InferenceError(f"{path}: the video is {duration:.2f} s long; at least "
                             f"{config.min_seconds:g} s is needed")
    if start >= duration:
        raise InferenceError(f"{path}: start {start:g} s is past the end of the video ({duration:.2f} s long)")
    available = (duration if end is None else min(duration, end)) - start
    if available < config.min_seconds:
        raise InferenceError(f"{path}: only {available:.2f} s of video after start {start:g} s; at least "
                             f"{config.min_seconds:g} s is needed")
    window = min(config.window_seconds, available)
    times = sample_times(start, window, config)
    frames, rotation = _decode_frames(container, stream, [origin + t for t in times], path)
    if container.streams.audio:
        waveform = _decode_audio(container, container.streams.audio[0], origin + start, window, config.audio_rate,
                                 config.audio_channels)
        audio: AudioSource = "track"
        if waveform is None and not allow_silent:
            raise InferenceError(f"{path}: the audio track holds no samples; Ref-AVS needs the sound "
                                 f"(--allow-silent / allow_silent=True runs on silence)")
    else:
        waveform = None
        if not allow_silent:
            raise InferenceError(f"{path}: no audio track; Ref-AVS needs the sound "
                                 f"(--allow-silent / allow_silent=True runs on silence)")
    if waveform is None:
        samples = int(round(window * config.audio_rate))
        shape = samples if config.audio_channels == 1 else (config.audio_channels, samples)
        waveform, audio = np.zeros(shape, dtype=np.float32), "silence"
    return VideoClip(frames=frames, waveform=waveform, sample_rate=config.audio_rate, frame_times=tuple(times),
                     start=start, window_seconds=window, duration=duration, source=str(path), audio=audio,
                     rotation=rotation)


def _duration(container, stream, origin: float) -> float:
    """Seconds of video: the stream's duration, else the container's, else a scan of the packets."""
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        import av  # pulls in av

        container_start = (container.start_time or 0) / av.time_base
        return container.duration / av.time_base - (origin - container_start)
    end = origin
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
    container.seek(0)
    return end - origin


def _seek(container, stream, seconds: float) -> None:
    """Seek ``stream`` to the keyframe at or before ``seconds`` (absolute stream time)."""
    container.seek(max(0, int(math.floor(seconds / float(stream.time_base)))), stream=stream, backward=True)


def frame_rotation(frame) -> int:
    """The display rotation a decoded frame carries: degrees counter-clockwise (FFmpeg's sign,
    so a phone's portrait tag "rotate 90" reads -90), 0 when it has none."""
    try:
        value = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(round(value)) if math.isfinite(value) else 0


def quarter_turns(rotation: int, source: str | Path | None = None) -> int:
    """How many times :func:`numpy.rot90` turns a frame (counter-clockwise, 0..3) to show it as a
    player does; 0 with a warning for a rotation that is not a multiple of 90 degrees."""
    if rotation % 90:
        warnings.warn(f"{source or 'the video'}: its display rotation of {rotation} degrees is not a multiple of "
                      f"90; the frames are used as stored", stacklevel=2)
        return 0
    return (rotation // 90) % 4


def upright(image: np.ndarray, turns: int) -> np.ndarray:
    """``image`` (``[H, W, ...]``) turned ``turns`` quarter turns counter-clockwise (contiguous)."""
    return np.ascontiguousarray(np.rot90(image, turns)) if turns % 4 else image


def _decode_frames(container, stream, targets: Sequence[float], path: Path) -> tuple[np.ndarray, int]:
    """The frames shown at each absolute time in ``targets``, as ``uint8 [T, H, W, 3]``, turned
    upright by the display rotation of the first of them; and that rotation."""
    order = sorted(set(targets))
    _seek(container, stream, order[0])
    shown: dict[float, object] = {}
    previous = None
    i = 0
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        time = float(frame.pts * stream.time_base)
        while i < len(order) and time > order[i] + _TIME_EPSILON:
            shown[order[i]] = previous if previous is not None else frame
            i += 1
        if i == len(order):
            break
        previous = frame
    if previous is None and not shown:
        raise InferenceError(f"{path}: no video frame could be decoded")
    for target in order[i:]:  # past the last frame: the last frame stays on screen
        shown[target] = previous
    rotation = frame_rotation(shown[targets[0]])
    turns = quarter_turns(rotation, path)
    arrays: dict[int, np.ndarray] = {}
    out = []
    for target in targets:
        frame = shown[target]
        if id(frame) not in arrays:
            arrays[id(frame)] = upright(frame.to_ndarray(format="rgb24"), turns)
        out.append(arrays[id(frame)])
    return np.stack(out), rotation


def _decode_audio(container, stream, start: float, seconds: float, rate: int,
                  channels: int = 1) -> np.ndarray | None:
    """float32 audio at ``rate`` from absolute time ``start`` for ``seconds`` (shorter when the
    track ends first): ``[samples]`` mono, or ``[2, samples]`` (left, right) with ``channels=2``;
    None when the track yields no samples."""
    import av  # pulls in av

    wanted = int(round(seconds * rate))
    resampler = av.AudioResampler(format="flt", layout="mono" if channels == 1 else "stereo", rate=rate)
    _seek(container, stream, start)
    chunks: list[np.ndarray] = []
    first: float | None = None
    have = 0
    for frame in container.decode(stream):
        if first is None:
            first = float(frame.pts * stream.time_base) if frame.pts is not None else start
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1, channels).T  # packed: interleaved channels
            chunks.append(chunk)
            have += chunk.shape[1]
        if first is not None and have >= wanted + (start - first) * rate:
            break
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1, channels).T)
    if not chunks or first is None:
        return None
    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    offset = int(round((start - first) * rate))
    if offset >= 0:
        audio = audio[:, offset:]
    else:  # the track starts after the window does: silence until it begins
        audio = np.concatenate([np.zeros((channels, -offset), dtype=np.float32), audio], axis=1)
    audio = audio[:, :wanted]
    if not audio.shape[1]:
        return None
    return audio[0] if channels == 1 else np.ascontiguousarray(audio)


# ---------------------------------------------------------------- whole videos: probing and streaming

AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
"""Sample rates AAC encodes; a track at another rate is resampled to 48 kHz for the overlay."""


@dataclass(frozen=True)
class VideoInfo:
    """What a whole video is, from its container and its first frame.

    Attributes:
        source: the file.
        duration: seconds of video (from the first frame of the video stream).
        origin: presentation time of the first frame in the stream's clock (seconds).
        width, height: the frames' size in pixels as shown, upright (the stored size with the
            sides swapped for a rotation of 90 or 270 degrees).
        fps: the stream's average frame rate (frames per second), None when the container does not say.
        frame_count: frames the container declares, None when it does not say.
        rotation: the display rotation the container asks for, degrees counter-clockwise as
            FFmpeg reports it (0: none; a phone's portrait tag reads -90). :func:`iter_frames`
            turns the frames upright by it (:attr:`turns`).
        audio: whether the file has an audio track.
        audio_rate: the track's sample rate (Hz), 0 without a track.
        audio_channels: the track's channels, 0 without a track.
    """

    source: str
    duration: float
    origin: float
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    rotation: int
    audio: bool
    audio_rate: int = 0
    audio_channels: int = 0
    turns: int = 0
    """Quarter turns counter-clockwise that make a stored frame upright (0 for a rotation that is
    not a multiple of 90 degrees, which is ignored)."""


def probe_video(path: str | Path) -> VideoInfo:
    """A :class:`VideoInfo` for ``path``; refuses what :func:`decode_video` refuses about the file
    itself (missing, unreadable, no video stream, frames over the size limit)."""
    path = Path(path)
    with _opened(path) as container:
        stream = _video_stream(container, path)
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        duration = _duration(container, stream, origin)
        rate = stream.average_rate or stream.guessed_rate
        audio = container.streams.audio[0] if container.streams.audio else None
        rotation = 0
        for frame in container.decode(stream):
            rotation = frame_rotation(frame)
            width, height = frame.width, frame.height
            break
    turns = quarter_turns(rotation, path)
    if turns % 2:
        width, height = height, width
    return VideoInfo(source=str(path), duration=duration, origin=origin, width=int(width), height=int(height),
                     fps=float(rate) if rate else None, frame_count=int(stream.frames) or None,
                     rotation=rotation, audio=audio is not None,
                     audio_rate=int(audio.codec_context.sample_rate or 0) if audio is not None else 0,
                     audio_channels=int(audio.codec_context.channels or 0) if audio is not None else 0,
                     turns=turns)


def iter_frames(info: VideoInfo, start: float, end: float, fps: float | None = None):
    """Decoded frames of ``info.source`` from ``start`` to ``end`` seconds, streamed, as
    ``(time, av.VideoFrame)``; upright: for a rotated video (``info.turns``) each frame is given
    as a new ``rgb24`` frame turned by the display rotation.

    Without ``fps``: every frame whose presentation time lies in ``[start, end)``, at its own
    time. With ``fps``: one frame every ``1 / fps`` seconds from ``start``, the frame shown at
    that time (the rule of the sampled frames), at that time.
    """
    import av  # pulls in av

    with av.open(info.source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = info.origin
        if start > 0:
            _seek(container, stream, origin + start)
        frames = ((float(f.pts * stream.time_base) - origin, f) for f in container.decode(stream)
                  if f.pts is not None)
        shown = _upright_frames(info.turns)
        if fps is None:
            for time, frame in frames:
                if time < start - _TIME_EPSILON:
                    continue
                if time >= end - _TIME_EPSILON:
                    break
                yield time, shown(frame)
            return
        k, target = 0, start
        previous = None
        for time, frame in frames:
            while target < end - _TIME_EPSILON and time > target + _TIME_EPSILON:
                yield target, shown(previous if previous is not None else frame)
                k += 1
                target = start + k / fps
            if target >= end - _TIME_EPSILON:
                return
            previous = frame
        while previous is not None and target < end - _TIME_EPSILON:  # the last frame stays on screen
            yield target, shown(previous)
            k += 1
            target = start + k / fps


def _upright_frames(turns: int):
    """A function giving a decoded frame upright: itself without a rotation, else a new ``rgb24``
    ``av.VideoFrame`` turned ``turns`` quarter turns (the last one is kept, for a frame given
    again at a lower output rate)."""
    import av  # pulls in av

    if not turns % 4:
        return lambda frame: frame
    last: list = [None, None]

    def shown(frame):
        if last[0] is not frame:
            turned = av.VideoFrame.from_ndarray(upright(frame.to_ndarray(format="rgb24"), turns), format="rgb24")
            last[:] = [frame, turned]
        return last[1]

    return shown


def overlay_audio_format(info: VideoInfo) -> tuple[int, int]:
    """``(sample rate, channels)`` the overlay's AAC track gets: the source's rate when AAC takes
    it (else 48 kHz), mono or stereo as the source (more channels are mixed down to stereo)."""
    rate = info.audio_rate if info.audio_rate in AAC_RATES else 48_000
    return rate, 1 if info.audio_channels == 1 else 2


def iter_audio(info: VideoInfo, start: float, end: float, rate: int, channels: int):
    """The first audio track of ``info.source`` from ``start`` to ``end`` seconds, streamed as
    ``float32 [channels, samples]`` chunks at ``rate`` Hz (FFmpeg's resampler); silence fills a
    track that begins after ``start``. Yields nothing for a file without audio."""
    import av  # pulls in av

    if not info.audio:
        return
    wanted = int(round((end - start) * rate))
    layout = "mono" if channels == 1 else "stereo"
    with av.open(info.source) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        _seek(container, stream, info.origin + start)
        skip: int | None = None
        given = 0

        def trimmed(chunk: np.ndarray):
            nonlocal skip, given
            if skip and skip > 0:
                dropped = min(skip, chunk.shape[1])
                chunk, skip = chunk[:, dropped:], skip - dropped
            chunk = chunk[:, :max(0, wanted - given)]
            given += chunk.shape[1]
            return chunk

        def decoded():
            for frame in container.decode(stream):
                yield frame
            yield None  # flush the resampler

        for frame in decoded():
            if frame is not None and skip is None:
                first = float(frame.pts * stream.time_base) - info.origin if frame.pts is not None else start
                skip = int(round((start - first) * rate))
                if skip < 0:  # the track begins after the start: silence until then
                    silence = trimmed(np.zeros((channels, -skip), dtype=np.float32))
                    skip = 0
                    if silence.shape[1]:
                        yield silence
            for out in resampler.resample(frame):
                chunk = trimmed(np.ascontiguousarray(out.to_ndarray(), dtype=np.float32).reshape(channels, -1))
                if chunk.shape[1]:
                    yield chunk
            if given >= wanted:
                return
