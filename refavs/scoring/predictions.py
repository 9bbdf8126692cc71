"""The prediction layout the scorer reads: ``<pred_dir>/<uid>/<frame>.png``.

Frame files are named ``0.png`` ... ``9.png`` (``00000.png`` ... ``00009.png`` are accepted
too); each is an 8-bit grayscale PNG whose value / 255 is the probability that the pixel
belongs to the referred object. Any size is accepted and resized to 256x256 bilinearly.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from refavs.data.layout import MASK_SIZE, NUM_FRAMES
from refavs.data.masks import MediaError
from refavs.data.writer import atomic_write_bytes

_EIGHT_BIT_MODES = {"L", "P", "RGB", "RGBA", "LA", "1"}

PNG_OPTIONS = {"compress_level": 1, "compress_type": 3}
"""How :func:`write_prediction` compresses (lossless whatever the setting): zlib's run-length
strategy (``Z_RLE``; Pillow passes ``compress_type`` to zlib as the strategy). On the main job's
predictions it encodes about twice as fast as Pillow's default (level 6) and the files come out
about 1% smaller."""


def prediction_frame(pred_dir: str | Path, uid: str, t: int) -> Path:
    """Path of frame ``t`` of a prediction; prefers ``<t>.png``, falls back to ``<t:05d>.png``."""
    folder = Path(pred_dir) / uid
    plain = folder / f"{t}.png"
    if plain.is_file():
        return plain
    padded = folder / f"{t:05d}.png"
    return padded if padded.is_file() else plain


def has_prediction(pred_dir: str | Path, uid: str, num_frames: int = NUM_FRAMES) -> bool:
    """True when every frame of ``uid`` has a file (it may still be unreadable)."""
    return all(prediction_frame(pred_dir, uid, t).is_file() for t in range(num_frames))


def missing_predictions(pred_dir: str | Path, uids: Iterable[str], num_frames: int = NUM_FRAMES) -> list[str]:
    """uids (in the given order, without repeats) lacking at least one frame."""
    seen: set[str] = set()
    missing = []
    for uid in uids:
        if uid not in seen:
            seen.add(uid)
            if not has_prediction(pred_dir, uid, num_frames):
                missing.append(uid)
    return missing


def load_prediction_frame(path: Path, size: int = MASK_SIZE) -> np.ndarray:
    """One prediction frame as float32 probabilities ``[size, size]`` in [0, 1]."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in _EIGHT_BIT_MODES:
                raise MediaError(f"{path}: prediction must be an 8-bit grayscale PNG, got mode {img.mode}")
            gray = img.convert("L")
            if gray.size != (size, size):
                gray = gray.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise MediaError(f"{path}: prediction frame not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MediaError(f"{path}: unreadable prediction ({err})") from None


def load_prediction(pred_dir: str | Path, uid: str, size: int = MASK_SIZE,
                    num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The prediction of one expression, ``[num_frames, size, size]`` float32 probabilities."""
    return np.stack([load_prediction_frame(prediction_frame(pred_dir, uid, t), size) for t in range(num_frames)])


def write_prediction(pred_dir: str | Path, uid: str, probs: np.ndarray) -> None:
    """Store ``probs`` (``[T, H, W]`` floats in [0, 1]) as ``<pred_dir>/<uid>/<t>.png``, atomically.

    Raises :class:`~refavs.data.writer.WriteError` naming the frame that could not be written;
    the frames written before it are complete."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be [T, H, W], got shape {probs.shape}")
    if not (probs.min(initial=0.0) >= 0.0 and probs.max(initial=0.0) <= 1.0):  # NaN fails both
        raise ValueError(f"probabilities for {uid} must be finite and within [0, 1]")
    values = probs * 255.0
    values = np.rint(values, out=values).astype(np.uint8)  # in place: one temporary array, not two
    for t, frame in enumerate(values):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG", **PNG_OPTIONS)
        atomic_write_bytes(Path(pred_dir) / uid / f"{t}.png", buf.getvalue(),
                           what="a prediction frame")
