"""A parameter-free audio encoder with VGGish's interface: one 128-d vector per 0.96 s patch.

Per patch of ``frames x bands`` log-mel values it keeps the mean over time of each band
(the patch's spectral envelope) followed by the standard deviation over time of each band
(how much each band changes), ``2 x 64 = 128`` numbers. Nothing to download or train; it
is the audio encoder of the ``tiny`` configuration.
"""

from __future__ import annotations

import torch
from torch import nn


class LogMelSummary(nn.Module):
    """Log-mel patches ``[N, frames, bands]`` -> ``[N, 2 * bands]`` (band means, then band stds)."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        mean = patches.mean(dim=-2)
        std = patches.std(dim=-2, unbiased=False)
        return torch.cat([mean, std], dim=-1)
