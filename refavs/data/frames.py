"""Decoding a clip's frames and turning them into model input.

:func:`load_clip_frames` decodes the 10 JPEGs of a media folder and resizes each to a square
with bilinear interpolation (``uint8 [T, H, W, 3]``); :func:`normalize_frames` scales to
[0, 1] and standardises with the image mean/std (``float32 [T, 3, H, W]``), the rule of the
Mask2Former image processor the reference used.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.masks import MediaError


def load_frame(path, size: int) -> np.ndarray:
    """One frame as ``uint8 [size, size, 3]`` RGB; errors name the file."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise MediaError(f"{path}: frame not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MediaError(f"{path}: unreadable frame ({err})") from None


def load_clip_frames(layout: DatasetLayout, folder: str, size: int, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The frames ``media/<folder>/frames/0.jpg ...`` as ``uint8 [num_frames, size, size, 3]``."""
    return np.stack([load_frame(layout.frame(folder, t), size) for t in range(num_frames)])


def normalize_frames(frames: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> contiguous ``float32 [T, 3, H, W]`` equal to ``(x / 255 - mean) / std``.

    Computed as ``x * (1 / (255 std)) - mean / std`` in one pass over a contiguous copy.
    """
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)
    x = x.to(torch.float32, memory_format=torch.contiguous_format)
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1)
    shift = (-torch.tensor(mean, dtype=torch.float64) / std_t).float().view(1, -1, 1, 1)
    return x.mul_(scale).add_(shift)
