"""Writing one clip's files: encoded in memory, written into a staging folder, moved into place by folder.

The bytes are exactly those of :mod:`refavs.data.writer` (the same encoders and settings:
JPEG quality 95, 0/255 gray PNG without ``optimize``, 16-bit PCM WAV; the tests compare
them), so a Synth dataset is still the official layout written by the official writer. What
differs is how they reach the disk: :func:`refavs.data.writer.atomic_write_bytes` makes a
temporary file and renames it, per file; a clip here writes its ~50 files with plain writes
into folders under ``<root>/.staging/`` and then renames each of its folders (``media/<folder>``,
``gt_mask/<folder>``, ``gt_sounding/<folder>``) into place, so an interrupted run still never
leaves a truncated file in the dataset, with a third of the system calls. The PNG of an empty
mask (frames where an object is off screen, seconds where nothing sounds) is encoded once.
"""

from __future__ import annotations

import io
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from refavs.data.layout import DatasetLayout
from refavs.data.writer import AUDIO_SAMPLE_RATE, FILE_MODE, _encode_image
from refavs.synth.layout import sounding_mask_path

STAGING_DIR = ".staging"
"""Hidden folder of the dataset in which clips are staged (removed at the end of a run)."""

JPEG_QUALITY = 95
"""JPEG quality of the frames (:func:`refavs.data.writer.write_frames`' default)."""

_RELATIVE = DatasetLayout(Path(""))
"""The official layout's paths relative to the dataset folder."""


def frame_jpeg(frame: np.ndarray) -> bytes:
    """One ``[H, W, 3]`` uint8 RGB frame as :func:`~refavs.data.writer.write_frames` encodes it."""
    return _encode_image(frame, "JPEG", quality=JPEG_QUALITY)


@lru_cache(maxsize=8)
def _empty_png(shape: tuple[int, int]) -> bytes:
    return _encode_image(np.zeros(shape, dtype=np.uint8), "PNG", optimize=False)


def mask_png(mask: np.ndarray) -> bytes:
    """One ``[H, W]`` mask as :func:`~refavs.data.writer.write_masks` encodes it (0/255 gray)."""
    if not mask.any():
        return _empty_png(mask.shape)
    return _encode_image((mask > 0).astype(np.uint8) * 255, "PNG", optimize=False)


def audio_wav(waveform: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> bytes:
    """A waveform in [-1, 1], ``[samples]`` (mono) or ``[samples, 2]`` (left, right), as
    :func:`~refavs.data.writer.write_audio` encodes it (16-bit PCM)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if not (waveform.ndim == 1 or (waveform.ndim == 2 and waveform.shape[1] == 2)):
        raise ValueError(f"waveform must be [samples] (mono) or [samples, 2] (stereo), got shape {waveform.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(waveform, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


class ClipFiles:
    """The files of one clip, gathered in memory (paths relative to the dataset folder), then committed."""

    def __init__(self) -> None:
        self.files: dict[Path, bytes] = {}

    def add_frames(self, folder: str, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
        for t, frame in enumerate(frames):
            self.files[_RELATIVE.frame(folder, t)] = frame_jpeg(frame)

    def add_audio(self, folder: str, waveform: np.ndarray) -> None:
        self.files[_RELATIVE.audio(folder)] = audio_wav(waveform)

    def add_masks(self, folder: str, fid: int, masks: np.ndarray) -> None:
        """``gt_mask/<folder>/fid_<fid>/0000t.png``."""
        for t, mask in enumerate(_frames_of(masks)):
            self.files[_RELATIVE.mask(folder, fid, t)] = mask_png(mask)

    def add_sounding(self, folder: str, masks: np.ndarray) -> None:
        """``gt_sounding/<folder>/0000t.png``."""
        for t, mask in enumerate(_frames_of(masks)):
            self.files[sounding_mask_path("", folder, t)] = mask_png(mask)

    def commit(self, root: str | Path) -> None:
        """Write the files under ``root``: each folder staged first, then renamed into place.

        The folders are the first two levels of each path (``media/<folder>``, ``gt_mask/<folder>``,
        ``gt_sounding/<folder>``), each owned by one clip, staged as ``.staging/media__<folder>``
        and the like. A folder already present (a run written into a foreign folder with
        ``force``) receives the files one by one instead, each replacing its namesake.
        """
        root = Path(root)
        parent = root / STAGING_DIR
        parent.mkdir(parents=True, exist_ok=True)
        groups: dict[tuple[str, ...], list[tuple[Path, bytes]]] = {}
        for rel, data in self.files.items():
            groups.setdefault(rel.parts[:2], []).append((Path(*rel.parts[2:]), data))
        for leaf, items in groups.items():
            stage = parent / "__".join(leaf)
            if stage.exists():            # left by an interrupted run
                shutil.rmtree(stage)
            try:
                stage.mkdir()
                made = {stage}
                for sub, data in items:
                    path = stage / sub
                    if path.parent not in made:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        made.add(path.parent)
                    _write_new(path, data)
                dst = root.joinpath(*leaf)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(stage, dst)         # atomic; replaces an empty folder too
                except OSError:
                    if not dst.is_dir():
                        raise
                    _merge(stage, dst)
                    shutil.rmtree(stage)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise


def _frames_of(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got shape {masks.shape}")
    return masks


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)    # whatever the umask, as atomic_write_bytes
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _merge(src: Path, dst: Path) -> None:
    """Move every file under ``src`` to the same place under ``dst`` (each rename atomic)."""
    for folder, _, names in os.walk(src):
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(Path(folder) / name, target / name)


def remove_staging(root: str | Path) -> None:
    """Remove ``<root>/.staging`` (left by an interrupted run, or empty at the end of one)."""
    shutil.rmtree(Path(root) / STAGING_DIR, ignore_errors=True)
