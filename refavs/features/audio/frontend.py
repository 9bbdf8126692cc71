"""The VGGish front end in torch: waveform -> log-mel spectrogram -> 0.96 s patches.

Definition (Hershey et al. 2017, the published ``vggish_input`` / ``mel_features``):

1. frames of 400 samples (25 ms at 16 kHz) every 160 samples (10 ms), no padding, so a
   waveform of ``n`` samples gives ``1 + (n - 400) // 160`` frames;
2. each frame times a periodic Hann window ``0.5 - 0.5 cos(2 pi k / 400)``, magnitude of
   its 512-point real FFT (257 bins);
3. a mel filter bank of 64 triangles evenly spaced on the HTK mel scale
   ``mel(f) = 1127 ln(1 + f / 700)`` between 125 and 7,500 Hz, weights taken at the FFT
   bin frequencies, the DC bin zeroed;
4. ``log(mel + 0.01)``;
5. non-overlapping patches of 96 frames x 64 bands (trailing frames dropped).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from refavs.features.config import LogMelConfig


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale used by VGGish."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(num_bands: int, num_bins: int, sample_rate: int, min_hz: float, max_hz: float) -> np.ndarray:
    """``[num_bins, num_bands]`` float64 triangular mel weights at the FFT bin frequencies."""
    nyquist = sample_rate / 2.0
    if not 0.0 <= min_hz < max_hz <= nyquist:
        raise ValueError(f"mel band edges must satisfy 0 <= {min_hz} < {max_hz} <= {nyquist} (Nyquist)")
    bin_mel = hz_to_mel(np.linspace(0.0, nyquist, num_bins))
    edges = np.linspace(hz_to_mel(min_hz), hz_to_mel(max_hz), num_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


class LogMelFrontEnd(nn.Module):
    """Waveforms ``[B, samples]`` at ``config.sample_rate`` -> log-mel patches ``[B, W, 96, 64]``.

    ``W = 1 + (frames - 96) // 96`` with ``frames = 1 + (samples - 400) // 160``. The window and
    the mel matrix are buffers, so the module follows ``.to(device)``.
    """

    def __init__(self, config: LogMelConfig = LogMelConfig()):
        super().__init__()
        self.config = config
        n = config.window_length
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic Hann
        mel = mel_filterbank(config.num_mel_bins, config.fft_length // 2 + 1, config.sample_rate,
                             config.mel_min_hz, config.mel_max_hz)
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer("mel_matrix", torch.tensor(mel, dtype=torch.float32), persistent=False)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` -> ``[B, frames, num_mel_bins]`` log-mel spectrogram."""
        cfg = self.config
        if waveform.shape[-1] < cfg.window_length:
            raise ValueError(f"waveform of {waveform.shape[-1]} samples is shorter than one "
                             f"{cfg.window_length}-sample analysis window")
        frames = waveform.unfold(-1, cfg.window_length, cfg.hop_length)          # [B, F, 400]
        spectrum = torch.fft.rfft(frames * self.window, n=cfg.fft_length).abs()  # [B, F, 257]
        return torch.log(spectrum @ self.mel_matrix + cfg.log_offset)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        spec = self.log_mel(waveform.to(self.window.dtype))
        if spec.shape[1] < cfg.patch_frames:
            raise ValueError(f"{spec.shape[1]} spectrogram frames are fewer than one {cfg.patch_frames}-frame patch")
        return spec.unfold(1, cfg.patch_frames, cfg.patch_hop_frames).transpose(-1, -2)  # [B, W, 96, 64]
