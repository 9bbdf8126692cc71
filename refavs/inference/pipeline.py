""":class:`RefAVSPipeline`: a checkpoint and its frozen encoders, run on a video and an expression.

::

    pipe = RefAVSPipeline.from_pretrained("runs/demo/run/best")      # or a run folder, or a hub id
    result = pipe("clip.mp4", "the object making the loudest sound")
    result.masks.shape, result.present                                # (10, 256, 256), True
    result.save("out/")                                               # masks/, overlay.mp4, summary.json
    for frame in pipe.predict_video("walk.mp4", "the barking dog"):    # every frame of a whole video
        frame.time, frame.mask                                        # (refavs.inference.whole_video)

The pipeline builds the model, the text encoder and the audio featurizer once, for the
checkpoint's feature preset, and runs every clip through the same steps: frames resized to the
model's square ``segmenter.image_size`` (bilinear) and normalised with the preset's mean/std,
audio through the preset's featurizer (which trims or extends it to 10 s by its own rule),
the expression through the preset's text encoder (25 tokens; a longer expression is truncated,
with one warning per pipeline). An expression longer than
:data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS` characters, or frames with a side over
:data:`~refavs.inference.limits.MAX_FRAME_SIDE` pixels, are refused.

Output rules (``docs/inference.md``): probabilities are the sigmoid of the mask logits at
256x256, rounded to multiples of 1/255 (exactly what the scorer's 8-bit PNGs hold); a pixel
is in the mask when its probability exceeds 0.4 (the J threshold); the target is judged
*present* when at least one frame's mask covers ``presence_min_area`` of the frame (0.1 %).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import snapshot_download
from PIL import Image

from refavs.data.frames import normalize_frames
from refavs.data.writer import atomic_write_bytes
from refavs.features.audio.encoder import build_audio_featurizer
from refavs.features.config import TextFeatureConfig, get_feature_config
from refavs.features.text import TextEncoder, TextEncoderError
from refavs.inference.errors import InferenceError
from refavs.inference.limits import expression_length_error, frame_size_error
from refavs.inference.overlay import OverlayStyle, overlay_frames, write_overlay
from refavs.inference.video import SamplingConfig, VideoClip, decode_video
from refavs.inference.whole_video import VideoPrediction
from refavs.metrics.accumulator import MetricConfig
from refavs.models.build import load_pretrained
from refavs.models.checkpoint import CheckpointError, load_config
from refavs.models.config_base import feature_mismatches
from refavs.scoring.predictions import write_prediction
from refavs.version import __version__

CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = "model.safetensors"
RUN_BEST = "best"
"""A training run's best checkpoint, ``RUN/best`` (a symlink to a checkpoint folder)."""

SUMMARY_FILE = "summary.json"
MASKS_FOLDER = "masks"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class PipelineSettings:
    """How probabilities become masks and a presence decision, and how clips are sampled.

    Attributes:
        threshold: a pixel is in the mask when its probability exceeds this (J's threshold, 0.4).
        presence_min_area: the target is judged present when some frame's mask covers at least
            this fraction of the frame (0.001 = 66 of the 65,536 pixels at 256x256).
        sampling: how frames and audio are taken from a video file (its ``num_frames`` is set
            to the model's by :meth:`RefAVSPipeline.from_pretrained`).
    """

    threshold: float = MetricConfig.j_threshold
    presence_min_area: float = 0.001
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


def resolve_checkpoint(path_or_hub_id: str | os.PathLike) -> Path:
    """The checkpoint folder for a local checkpoint, a training run (``RUN/best``) or a hub repo id.

    A string that is not an existing path and looks like ``owner/name`` is downloaded from the
    Hugging Face hub with ``huggingface_hub.snapshot_download`` (cached; ``HF_HUB_OFFLINE=1``
    uses the cache only). Raises :class:`InferenceError` when nothing usable is found.
    """
    spec = str(path_or_hub_id)
    path = Path(spec).expanduser()
    if path.exists():
        return _check_checkpoint(path)
    if isinstance(path_or_hub_id, str) and _HUB_ID.match(spec):
        return _check_checkpoint(_download(spec), shown=f"{spec} (Hugging Face hub)")
    raise InferenceError(f"{spec}: checkpoint not found (give a checkpoint folder, a training run folder "
                         f"or a Hugging Face hub id owner/name)")


def _check_checkpoint(path: Path, shown: str | None = None) -> Path:
    shown = shown or str(path)
    if path.is_dir() and not (path / CHECKPOINT_CONFIG).is_file() and (path / RUN_BEST / CHECKPOINT_CONFIG).is_file():
        path = path / RUN_BEST
    if not path.is_dir() or not (path / CHECKPOINT_CONFIG).is_file():
        raise InferenceError(f"{shown}: not a refavs checkpoint (no {CHECKPOINT_CONFIG}; give a folder with "
                             f"{CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS}, or a training run folder holding "
                             f"{RUN_BEST}/)")
    try:
        load_config(path)
    except (CheckpointError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InferenceError(f"{shown}: not a refavs checkpoint ({_first_line(err)})") from None
    if not (path / CHECKPOINT_WEIGHTS).is_file():
        raise InferenceError(f"{shown}: the checkpoint has no {CHECKPOINT_WEIGHTS}")
    return path


def _download(repo_id: str) -> Path:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"], local_files_only=offline)
    except Exception as err:  # the hub raises many types: not found, gated, offline, HTTP errors
        where = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else _first_line(err)
        raise InferenceError(f"{repo_id}: no such local folder, and it could not be fetched from the Hugging "
                             f"Face hub ({where})") from None
    return Path(folder)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


DEFAULT_TEXT_TOKENS = TextFeatureConfig().max_tokens
"""Tokens the model reads of an expression, as the text feature config says (every preset keeps
its default); messages use it where no checkpoint is at hand yet."""


def check_expression_text(expression: str, max_tokens: int = DEFAULT_TEXT_TOKENS,
                          name: str = "the expression") -> None:
    """Raise :class:`InferenceError` unless ``expression`` is a string of at most
    :data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS` characters with at least one non-space one.

    Args:
        expression: the expression as given.
        max_tokens: tokens the model reads (named in the message refusing a long expression).
        name: how messages name the input (``--expression`` on the command line).
    """
    if isinstance(expression, str):
        too_long = expression_length_error(expression, max_tokens, name)
        if too_long:
            raise InferenceError(too_long)
    if not isinstance(expression, str) or not expression.strip():
        raise InferenceError(f"{name} is empty ({expression!r}); it needs at least one word")


def sampling_for(config, base: SamplingConfig | None = None) -> SamplingConfig:
    """``base`` (default settings) with the model's number of frames, and both channels of the
    audio kept for a model of stereo features."""
    stereo = get_feature_config(config.feature_preset).audio.stereo
    return dataclasses.replace(base or SamplingConfig(), num_frames=config.num_frames,
                               audio_channels=2 if stereo else 1)


@dataclass
class InferenceResult:
    """The prediction for one clip and expression.

    Attributes:
        probabilities: ``float32 [T, 256, 256]`` in [0, 1], multiples of 1/255 (as stored in PNGs).
        clip: the clip the model saw (``clip.frames`` are the decoded frames).
        expression: the expression as given.
        settings: the threshold and presence rule used.
        checkpoint: the checkpoint folder, None for a model passed in directly.
        feature_preset: the checkpoint's feature preset.
        timings: seconds per step (``decode``, ``features``, ``model``; ``save`` adds ``write``).
        truncated: the expression had more tokens than the text encoder keeps (its tail was dropped).
    """

    probabilities: np.ndarray
    clip: VideoClip
    expression: str
    settings: PipelineSettings
    checkpoint: str | None = None
    feature_preset: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    truncated: bool = False

    @property
    def masks(self) -> np.ndarray:
        """``bool [T, 256, 256]``: probability above ``settings.threshold``."""
        return self.probabilities > self.settings.threshold

    @property
    def frames(self) -> np.ndarray:
        """The ``uint8 [T, H, W, 3]`` frames the prediction is for."""
        return self.clip.frames

    @property
    def frame_pixels(self) -> list[int]:
        """Mask pixels per frame (at 256x256)."""
        return [int(n) for n in self.masks.reshape(len(self.masks), -1).sum(axis=1)]

    @property
    def frame_areas(self) -> list[float]:
        """Mask area per frame, as a fraction of the frame."""
        size = self.probabilities[0].size
        return [n / size for n in self.frame_pixels]

    @property
    def max_probabilities(self) -> list[float]:
        """The highest probability of each frame."""
        return [float(p.max()) for p in self.probabilities]

    @property
    def present(self) -> bool:
        """Whether the referred object is judged present: some frame's area reaches ``presence_min_area``."""
        return max(self.frame_areas) >= self.settings.presence_min_area

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds (JSON-ready)."""
        clip = self.clip
        return {
            "video": clip.source,
            "expression": self.expression,
            "expression_truncated": self.truncated,
            "start": clip.start,
            "window_seconds": round(clip.window_seconds, 6),
            "duration": None if clip.duration is None else round(clip.duration, 6),
            "audio": clip.audio,
            "size": [int(clip.frames.shape[2]), int(clip.frames.shape[1])],
            "rotation": clip.rotation,
            "frame_times": [round(t, 6) for t in clip.frame_times],
            "frame_areas": [round(a, 8) for a in self.frame_areas],
            "frame_pixels": self.frame_pixels,
            "frame_max_probability": [round(p, 6) for p in self.max_probabilities],
            "max_probability": round(max(self.max_probabilities), 6),
            "present": self.present,
            "threshold": self.settings.threshold,
            "presence_min_area": self.settings.presence_min_area,
            "mask_size": int(self.probabilities.shape[-1]),
            "checkpoint": self.checkpoint,
            "feature_preset": self.feature_preset,
            "refavs_version": __version__,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def overlay_frames(self, style=None) -> list[np.ndarray]:
        """The frames with the mask tinted and outlined and the expression written on them
        (``uint8 [H', W', 3]`` each, see :mod:`refavs.inference.overlay`)."""
        style = style or OverlayStyle(threshold=self.settings.threshold)
        return overlay_frames(self.clip.frames, self.probabilities, self.expression, self.clip.frame_times, style)

    def save(self, directory: str | os.PathLike, overlay_format: str = "mp4", style=None) -> dict[str, Path]:
        """Write ``masks/0.png ... 9.png`` (the scorer's 8-bit format), ``overlay.mp4`` (or
        ``overlay.gif`` when asked or when no H.264 encoder is available) and ``summary.json``
        (written last, so its presence marks a complete output). Every file is written atomically.

        Returns:
            ``{"masks": folder, "overlay": video file, "summary": summary.json}``.
        """
        directory = Path(directory)
        began = time.perf_counter()
        write_prediction(directory, MASKS_FOLDER, self.probabilities)
        overlay = write_overlay(self.overlay_frames(style), directory, overlay_format, style)
        self.timings["write"] = time.perf_counter() - began
        summary = self.summary()
        summary["outputs"] = {"masks": MASKS_FOLDER, "overlay": overlay.name}
        atomic_write_bytes(directory / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
        return {"masks": directory / MASKS_FOLDER, "overlay": overlay, "summary": directory / SUMMARY_FILE}


class RefAVSPipeline:
    """A trained EEMC model with its text encoder and audio featurizer, ready to run on clips.

    Build it with :meth:`from_pretrained`; call it as ``pipe(video, expression, start=0.0)``.
    """

    def __init__(self, model, device: str = "cpu", settings: PipelineSettings | None = None,
                 checkpoint: str | os.PathLike | None = None):
        self.model = model.eval()
        self.config = model.config
        preset = get_feature_config(self.config.feature_preset)
        # frames are not cached: they are resized to whatever square the model was trained on
        self.features = preset.replace(image=dataclasses.replace(preset.image, size=self.config.image_size))
        problems = feature_mismatches(self.config, self.features)
        if problems:
            raise InferenceError(f"{checkpoint or 'the model'}: does not fit its feature preset "
                                 f"{self.config.feature_preset!r}: " + "; ".join(problems))
        base = settings or PipelineSettings()
        self.settings = dataclasses.replace(base, sampling=sampling_for(self.config, base.sampling))
        self.device = torch.device(device)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        try:
            self.text_encoder = TextEncoder(self.features.text, device=self.device)
        except TextEncoderError as err:
            raise InferenceError(str(err)) from None
        self.audio_featurizer = build_audio_featurizer(self.features.audio, device=self.device)
        self._warned_truncation = False

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, device: str = "cpu",
                        settings: PipelineSettings | None = None) -> "RefAVSPipeline":
        """Load a checkpoint folder, a training run (its ``best``) or a Hugging Face hub repo id."""
        folder = resolve_checkpoint(path_or_hub_id)
        try:
            model = load_pretrained(folder, device=device)
        except (CheckpointError, OSError, ValueError) as err:
            raise InferenceError(f"{folder}: cannot load the checkpoint ({_first_line(err)})") from None
        return cls(model, device=device, settings=settings, checkpoint=folder)

    def load(self, video, start: float = 0.0, allow_silent: bool = False) -> VideoClip:
        """A :class:`VideoClip` from a path (decoded from ``start``), a clip, or
        ``(frames uint8 [T, H, W, 3], waveform [samples] or [channels, samples], sample_rate)``.

        Frames with a side over :data:`~refavs.inference.limits.MAX_FRAME_SIDE` pixels are refused
        (a file's before any frame is decoded)."""
        if isinstance(video, VideoClip):
            if len(video.frames) != self.settings.sampling.num_frames:
                raise InferenceError(f"the model takes {self.settings.sampling.num_frames} frames, the clip has "
                                     f"{len(video.frames)}")
            clip = video
        elif isinstance(video, (str, os.PathLike)):
            clip = decode_video(video, start=start, allow_silent=allow_silent, config=self.settings.sampling)
        elif isinstance(video, (tuple, list)) and len(video) == 3:
            if start:
                raise InferenceError("start applies to video files only; pass the arrays of the clip you want")
            frames, waveform, rate = video
            sampling = self.settings.sampling
            clip = VideoClip.from_arrays(frames, waveform, rate, num_frames=sampling.num_frames,
                                         channels=sampling.audio_channels)
        else:
            raise InferenceError("video must be a file path, a VideoClip or a tuple (frames, waveform, sample_rate)")
        too_large = frame_size_error(clip.frames.shape[2], clip.frames.shape[1])
        if too_large:
            raise InferenceError(f"{clip.source}: {too_large}" if clip.source else too_large)
        return clip

    def check_expression(self, expression: str) -> bool:
        """Raise :class:`InferenceError` for an empty expression or one over
        :data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS` characters; True when it will be truncated."""
        check_expression_text(expression, self.features.text.max_tokens)
        tokens = self.text_encoder.tokenizer(expression)["input_ids"]
        return len(tokens) > self.features.text.max_tokens

    def predict_video(self, video: str | os.PathLike, expression: str, start: float = 0.0, end: float | None = None,
                      fps: float | None = None, allow_silent: bool = False) -> VideoPrediction:
        """Segment what ``expression`` refers to in every frame of a video file of any length.

        The video is covered by 10-frame windows (each exactly the clip :meth:`__call__` takes
        from its start) and every frame gets the mask of its second; see
        :mod:`refavs.inference.whole_video`. The file, the span and the expression are checked
        now (:class:`InferenceError`); the windows run as the result is iterated::

            for frame in pipe.predict_video("walk.mp4", "the barking dog"):
                frame.index, frame.time, frame.mask, frame.area, frame.image()

        Args:
            video: a video file.
            expression: what to segment.
            start, end: the span, seconds from the start of the video (default: all of it).
            fps: frames per second of the output (default: every frame of the video).
            allow_silent: run a file without an audio track on silence.
        """
        truncated = self.check_expression(expression)
        if truncated and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(f"an expression is longer than {self.features.text.max_tokens} tokens and is truncated "
                          f"(only its start is used): {expression[:60]!r}...", stacklevel=2)
        return VideoPrediction(self, video, expression, start=start, end=end, fps=fps, allow_silent=allow_silent)

    def __call__(self, video, expression: str, start: float = 0.0, allow_silent: bool = False) -> InferenceResult:
        """Segment what ``expression`` refers to in every frame of ``video`` (see :meth:`load`)."""
        truncated = self.check_expression(expression)
        if truncated and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(f"an expression is longer than {self.features.text.max_tokens} tokens and is truncated "
                          f"(only its start is used): {expression[:60]!r}...", stacklevel=2)
        began = time.perf_counter()
        clip = self.load(video, start=start, allow_silent=allow_silent)
        decoded = time.perf_counter()
        size = self.config.image_size
        resized = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
                            if f.shape[:2] != (size, size) else f for f in clip.frames])
        image = self.features.image
        pixels = normalize_frames(resized, image.mean, image.std).unsqueeze(0).to(self.device)
        audio = self.audio_featurizer.embed_waveforms([(clip.waveform, clip.sample_rate)]).to(self.device)
        text, text_mask = self.text_encoder.encode([expression])
        featurized = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(pixels, audio, text.to(self.device), text_mask.to(self.device)).mask_logits[0]
            probs = logits.float().sigmoid().cpu().numpy()
        done = time.perf_counter()
        stored = np.rint(probs * 255.0).astype(np.uint8).astype(np.float32) / 255.0  # the PNGs' values
        return InferenceResult(
            probabilities=stored, clip=clip, expression=expression, settings=self.settings,
            checkpoint=self.checkpoint, feature_preset=self.config.feature_preset, truncated=truncated,
            timings={"decode": decoded - began, "features": featurized - decoded, "model": done - featurized})
