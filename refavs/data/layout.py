"""Paths of the official Ref-AVS Bench layout and its fixed sizes.

::

    <root>/metadata.csv                       columns vid, uid, split, fid, exp (+ optional extras)
    <root>/media/<folder>/audio.wav
    <root>/media/<folder>/frames/0.jpg ... 9.jpg
    <root>/gt_mask/<folder>/fid_<fid>/00000.png ... 00009.png

``<folder>`` is derived from the uid (``uid.rsplit('_', 2)[0]``); for the null
subset (uids ``null_c-<vid>_null_1``) it differs from ``vid``. Readers follow the
derived name and fall back to ``vid`` when that folder does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NUM_FRAMES = 10
"""Frames per clip (one per second of a 10-second clip)."""

MASK_SIZE = 256
"""Side of the square masks on which every metric is computed."""

SPLITS: tuple[str, ...] = ("train", "val", "test_s", "test_u", "test_n")
"""The benchmark's splits, in the order tables list them."""

METADATA_COLUMNS: tuple[str, ...] = ("vid", "uid", "split", "fid", "exp")
"""Columns every metadata.csv must have; any others are kept as extras."""

METADATA_FILE = "metadata.csv"


def folder_from_uid(uid: str) -> str:
    """The media/mask folder name the reference derives from an expression uid."""
    parts = uid.rsplit("_", 2)
    return parts[0]


@dataclass(frozen=True)
class DatasetLayout:
    """Where each file of a dataset in the official layout lives.

    Attributes:
        root: the dataset folder (the one holding ``metadata.csv``).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def metadata(self) -> Path:
        return self.root / METADATA_FILE

    def media_dir(self, folder: str) -> Path:
        return self.root / "media" / folder

    def frame(self, folder: str, t: int) -> Path:
        return self.media_dir(folder) / "frames" / f"{t}.jpg"

    def audio(self, folder: str) -> Path:
        return self.media_dir(folder) / "audio.wav"

    def mask_dir(self, folder: str, fid: int) -> Path:
        return self.root / "gt_mask" / folder / f"fid_{fid}"

    def mask(self, folder: str, fid: int, t: int) -> Path:
        return self.mask_dir(folder, fid) / f"{t:05d}.png"

    def resolve_folder(self, uid: str, vid: str) -> str:
        """The folder an expression's media lives in: derived from uid, else ``vid``.

        Returns the derived name when neither exists, so error messages name the
        path the reference would have read.
        """
        derived = folder_from_uid(uid)
        if derived == vid or (self.root / "media" / derived).is_dir():
            return derived
        if (self.root / "media" / vid).is_dir():
            return vid
        return derived
