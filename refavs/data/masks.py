"""Loading ground-truth masks at the evaluation size.

The reference loader opens the PNG, resizes it to 256x256 with bilinear interpolation,
converts it to gray and keeps pixels ``> 0``; bilinear resizing slightly grows thin masks.
That is ``resize="reference"`` (the default, for comparable numbers). ``resize="nearest"``
resizes by nearest neighbour instead, so a mask already drawn at another size keeps its
exact shape. Pillow resizes palette ("P") images by nearest neighbour whatever it is asked,
so for palette PNGs both rules agree, as they did in the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.records import Expression

MaskResize = Literal["reference", "nearest"]
_RESAMPLE = {"reference": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


class MediaError(ValueError):
    """A frame, mask or audio file is missing, unreadable or unusable; the message names it."""


def load_mask(path: str | Path, size: int = MASK_SIZE, resize: MaskResize = "reference") -> np.ndarray:
    """One mask as a boolean ``[size, size]`` array (foreground = any non-zero gray value)."""
    if resize not in _RESAMPLE:
        raise ValueError(f"resize must be one of {', '.join(_RESAMPLE)}, got {resize!r}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.size != (size, size):
                img = img.resize((size, size), _RESAMPLE[resize])
            gray = np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise MediaError(f"{path}: mask not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MediaError(f"{path}: unreadable mask ({err})") from None
    return gray > 0


def load_clip_masks(layout: DatasetLayout, expression: Expression, size: int = MASK_SIZE,
                    resize: MaskResize = "reference", num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The 10 masks of the object an expression refers to, ``[num_frames, size, size]`` bool.

    Reads ``gt_mask/<folder>/fid_<fid>/0000N.png`` with the uid-derived folder and the
    fall-back to ``vid``.
    """
    folder = layout.resolve_folder(expression.uid, expression.vid)
    mask_dir = layout.mask_dir(folder, expression.fid)
    if not mask_dir.is_dir():
        raise MediaError(f"{mask_dir}: no mask folder for fid {expression.fid} of {expression.uid} "
                         f"(metadata.csv line {expression.row})")
    return np.stack([load_mask(layout.mask(folder, expression.fid, t), size, resize) for t in range(num_frames)])
