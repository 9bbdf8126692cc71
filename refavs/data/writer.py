"""Writing datasets in the official layout (used by Ref-AVS Synth, fixtures and tests).

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted writer never leaves a truncated frame, mask, wav or csv behind.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
from PIL import Image

from refavs.data.layout import METADATA_COLUMNS, NUM_FRAMES, DatasetLayout
from refavs.data.records import Expression

AUDIO_SAMPLE_RATE = 16_000
"""Sample rate of the audio the writer stores (the features' rate)."""


FILE_MODE = 0o644
"""Permissions of the files the writers create (readable by everyone, as ordinary files)."""

DIR_MODE = 0o755
"""Permissions of folders made with ``tempfile.mkdtemp`` and renamed into place."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes files private (0600); datasets and runs are shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _encode_image(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_frames(layout: DatasetLayout, folder: str, frames: np.ndarray, quality: int = 95) -> None:
    """Store ``frames`` (``[10, H, W, 3]`` uint8 RGB) as ``frames/0.jpg`` ... ``9.jpg``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    for t, frame in enumerate(frames):
        atomic_write_bytes(layout.frame(folder, t), _encode_image(frame, "JPEG", quality=quality))


def write_audio(layout: DatasetLayout, folder: str, waveform: np.ndarray,
                sample_rate: int = AUDIO_SAMPLE_RATE) -> None:
    """Store a mono float waveform in [-1, 1] as 16-bit PCM ``audio.wav``."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D (mono), got shape {waveform.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(waveform, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(layout.audio(folder), buf.getvalue())


def write_masks(layout: DatasetLayout, folder: str, fid: int, masks: np.ndarray) -> None:
    """Store ``masks`` (``[10, H, W]`` bool) as ``gt_mask/<folder>/fid_<fid>/0000N.png`` (0/255 gray)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got shape {masks.shape}")
    for t, mask in enumerate(masks):
        png = _encode_image((mask > 0).astype(np.uint8) * 255, "PNG", optimize=False)
        atomic_write_bytes(layout.mask(folder, fid, t), png)


def write_metadata(path: str | Path, expressions: Iterable[Expression],
                   extra_columns: Sequence[str] = ()) -> None:
    """Write metadata.csv (official columns first, then ``extra_columns`` from each record's extras)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*METADATA_COLUMNS, *extra_columns])
    for e in expressions:
        writer.writerow([e.vid, e.uid, e.split, e.fid, e.exp, *(e.extra.get(c, "") for c in extra_columns)])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def check_clip_arrays(frames: np.ndarray, masks: np.ndarray | None = None) -> None:
    """Raise ValueError unless frames (and masks) hold :data:`NUM_FRAMES` frames of one size."""
    if len(frames) != NUM_FRAMES:
        raise ValueError(f"a clip has {NUM_FRAMES} frames, got {len(frames)}")
    if masks is not None and len(masks) != NUM_FRAMES:
        raise ValueError(f"a clip has {NUM_FRAMES} masks, got {len(masks)}")
