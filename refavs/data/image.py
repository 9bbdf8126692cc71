"""How a frame becomes model input: its size and normalisation (the Mask2Former image processor's rule)."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""ImageNet per-channel mean of pixels scaled to [0, 1]."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""ImageNet per-channel standard deviation of pixels scaled to [0, 1]."""


@dataclass(frozen=True)
class ImageConfig:
    """How frames become model input (the Mask2Former image processor's rule).

    Attributes:
        size: side of the square the frame is resized to (bilinear), 384 for the paper.
        mean: per-channel mean subtracted after scaling to [0, 1] (ImageNet).
        std: per-channel standard deviation divided by (ImageNet).
    """

    size: int = 384
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
