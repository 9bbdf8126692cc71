"""Writing datasets in the official layout (used by Ref-AVS Synth, fixtures and tests).

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted writer never leaves a truncated frame, mask, wav or csv behind.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
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


class WriteError(OSError):
    """A file could not be written (a full disk, an I/O error, a read-only folder, ...).

    The message is one line: the file, what it holds, the system's reason and, for a full disk,
    the space left; ``errno`` is the cause's. Whatever stood under the file's name before is
    left as it was (see :func:`atomic_write_bytes`).

    Attributes:
        path: the file (None when not known).
        reason: the system's reason in words (``No space left on device``).
    """

    path: Path | None = None
    reason: str = ""

    def kept(self, note: str) -> "WriteError":
        """This error with ``; <note>`` (what is kept, how to go on) added to its message."""
        error = WriteError(f"{self}; {note}")
        error.errno, error.path, error.reason = self.errno, self.path, self.reason
        return error


MIB = 1 << 20


def write_error(path: str | Path, what: str, err: OSError) -> WriteError:
    """The :class:`WriteError` that says ``path`` (``what``: "the report", "a feature-cache
    chunk", ...) could not be written because of ``err``; ``err`` itself when it already is one."""
    if isinstance(err, WriteError):
        return err
    path = Path(path)
    reason = err.strerror or str(err) or type(err).__name__
    message = f"{path}: could not write {what} ({reason})"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = next((p for p in (path.parent, *path.parents) if p.is_dir()), None)
        try:
            free = shutil.disk_usage(folder).free if folder is not None else None
        except OSError:
            free = None
        if free is not None:
            message += f"; {free / MIB:.1f} MiB free on the disk of {folder}"
    error = WriteError(message)
    error.errno, error.path, error.reason = err.errno, path, reason
    return error


TEMP_SUFFIX = ".tmp"
"""The ending of the temporary files :func:`atomic_write_bytes` writes (``.<name>.<random>.tmp``)."""


def temp_files(folder: str | Path, name: str = "*", recursive: bool = False) -> list[Path]:
    """The temporary files of :func:`atomic_write_bytes` (``.<name>.<random>.tmp``) and of the
    video writer (``.<name>.<random>.tmp.<ext>``) for files named ``name`` (a glob pattern) in
    ``folder`` (and its subfolders with ``recursive``): left only by a writer killed between
    its write and its rename."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = set()
    for pattern in (f".{name}.*{TEMP_SUFFIX}", f".{name}.*{TEMP_SUFFIX}.*"):
        found.update(folder.rglob(pattern) if recursive else folder.glob(pattern))
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def remove_temp_files(folder: str | Path, name: str = "*", recursive: bool = False) -> int:
    """Remove the :func:`temp_files` of ``folder``; returns how many. Call it only where no
    other writer is writing into ``folder`` at the same time."""
    removed = 0
    for path in temp_files(folder, name, recursive):
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def replace_folder(src: str | Path, dst: str | Path, refuse_other: bool = False) -> None:
    """Put the complete folder ``src`` at ``dst`` by renames: whatever stood at ``dst`` is renamed
    aside into a temporary folder first, then deleted, so ``dst`` never names a partial folder.

    Raises:
        FileExistsError: with ``refuse_other``, ``dst`` exists and is not a folder.
    """
    src, dst = Path(src), Path(dst)
    old = None
    if dst.exists() or dst.is_symlink():
        if refuse_other and not dst.is_dir():
            raise FileExistsError(f"{dst} exists and is not a folder")
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_all(file, data: bytes, path: Path) -> None:
    """Write ``data`` into ``file``, the open temporary file of ``path`` (the tests put faults here)."""
    file.write(data)


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "the file", durable: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    Either ``path`` holds all of ``data`` afterwards, or it holds what it held before (nothing,
    or the previous complete file) and the temporary file is removed. A failure raises
    :class:`WriteError` naming ``path`` and ``what`` it holds. With ``durable``, the data is on
    the disk (``fsync``) before the rename.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise write_error(path, what, err) from err
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # mkstemp makes files private (0600); datasets and runs are shared
            _write_all(f, data, path)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise write_error(path, what, err) from err
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
    """Store a float waveform in [-1, 1], ``[samples]`` (mono) or ``[samples, 2]`` (left, right), as
    16-bit PCM ``audio.wav``."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if not (waveform.ndim == 1 or (waveform.ndim == 2 and waveform.shape[1] == 2)):
        raise ValueError(f"waveform must be [samples] (mono) or [samples, 2] (stereo), got shape {waveform.shape}")
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
