"""Inference on your own videos: a video file (or arrays) and an expression -> 10 masks, or a mask
for every frame of a whole video.

- :class:`RefAVSPipeline` (:mod:`refavs.inference.pipeline`): ``RefAVSPipeline.from_pretrained(path)``
  loads a checkpoint and its frozen encoders once; ``pipe(video, expression)`` returns an
  :class:`InferenceResult` with ``probabilities``, ``masks``, ``present``, ``frame_areas``,
  ``frames``, ``overlay_frames()`` and ``save(dir)``.
- :func:`decode_video` (:mod:`refavs.inference.video`): any container/codec PyAV reads -> a
  :class:`VideoClip` (10 frames at 1 fps and the 16 kHz mono audio of a 10 s window).
- :meth:`RefAVSPipeline.predict_video` (:mod:`refavs.inference.whole_video`): every frame of a video of
  any length, from 10-frame windows laid over it, streamed as :class:`FramePrediction` objects;
  :func:`save_video_prediction` writes per-frame masks (PNGs or COCO run-length encodings,
  :mod:`refavs.inference.rle`), ``overlay.mp4`` with the video's sound and ``summary.json``.
- :mod:`refavs.inference.overlay`: frames with the mask tinted and outlined, written as
  ``overlay.mp4`` (H.264) or ``overlay.gif``.
- :mod:`refavs.inference.cli`: the ``refavs predict`` command (single clip or a CSV batch).
- :class:`InferenceError`: every bad input, with a one-line message fit to show to a user.

Importing this package loads nothing heavy: names are resolved on first use.
"""

from __future__ import annotations

import importlib

from refavs.inference.errors import InferenceError

_LAZY = {
    "RefAVSPipeline": "refavs.inference.pipeline",
    "InferenceResult": "refavs.inference.pipeline",
    "PipelineSettings": "refavs.inference.pipeline",
    "resolve_checkpoint": "refavs.inference.pipeline",
    "VideoClip": "refavs.inference.video",
    "SamplingConfig": "refavs.inference.video",
    "decode_video": "refavs.inference.video",
    "OverlayStyle": "refavs.inference.overlay",
    "VideoInfo": "refavs.inference.video",
    "probe_video": "refavs.inference.video",
    "VideoPrediction": "refavs.inference.whole_video",
    "FramePrediction": "refavs.inference.whole_video",
    "save_video_prediction": "refavs.inference.whole_video",
    "encode_rle": "refavs.inference.rle",
    "decode_rle": "refavs.inference.rle",
}

__all__ = ["InferenceError", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
