"""Mask refinement at stride 4, guided by the frame itself (the ``lite`` model's ``head.refine``).

The ``lite`` read-out matches pixel embeddings against the kernel at stride 8 (20 x 20 for
160-px frames). Upsampled to 256 x 256, even a perfect map of that size loses the edges of small
objects: the true masks of Synth's val objects pooled to 20 x 20 and upsampled score IoU 0.87,
at 40 x 40 0.95 (docs/experiments.md). :class:`GuidedRefinement` predicts the mask at stride 4
from the stride-8 logits and embeddings plus the frame at stride 4 (``rgb4``: the normalised
frame averaged over 4 x 4 pixels, 3 channels), so colour edges place the boundary. It starts as
plain bilinear upsampling (its last convolution is zero) and learns the correction.

The guide is cheap to cache (3 channels at 40 x 40, 8-bit: 4.8 KB a frame) and is computed by one
function, :func:`refavs.features.visual.guide_map`, for the cache and for raw frames
(:meth:`refavs.models.lite.LiteEEMC.backbone_maps`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refavs.features.visual import GUIDE_CHANNELS


class GuidedRefinement(nn.Module):
    """Stride-8 logits and embeddings plus the stride-4 guide -> stride-4 logits.

    Args:
        embed_dim: channels of the stride-8 pixel embeddings.
        width: channels of the refinement's convolutions.
    """

    def __init__(self, embed_dim: int, width: int = 16):
        super().__init__()
        self.guide = nn.Sequential(nn.Conv2d(GUIDE_CHANNELS, width, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.embed = nn.Conv2d(embed_dim, width, 1)
        self.head = nn.Sequential(nn.Conv2d(2 * width + 1, width, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, logits: Tensor, embeddings: Tensor, guide: Tensor) -> Tensor:
        """``logits [n, g8, g8]``, ``embeddings [n, D, g8, g8]``, ``guide [n, 3, g4, g4]`` -> ``[n, g4, g4]``."""
        size = guide.shape[-2:]
        up = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)
        emb = F.interpolate(self.embed(embeddings), size=size, mode="bilinear", align_corners=False)
        x = torch.cat([self.guide(guide.to(up.dtype)), emb, up.sigmoid()], 1)
        return (up + self.head(x))[:, 0]
