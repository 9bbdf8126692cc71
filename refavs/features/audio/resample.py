"""Band-limited resampling by a windowed-sinc polyphase filter (no torchaudio, no scipy).

For a rate change ``orig -> new`` (reduced by their gcd to ``p -> q``) the output sample
``k`` sits at input time ``k * p / q``. Its value is a weighted sum of the input samples
around it, with weights from a sinc low-pass at ``rolloff * min(p, q) / 2`` cycles per
input sample, tapered by a squared-cosine window that reaches zero ``lowpass_width`` zero
crossings away. The ``q`` output phases repeat every ``p`` input samples, so the filter is
``q`` kernels applied with stride ``p`` by one ``conv1d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _kernels(p: int, q: int, lowpass_width: int, rolloff: float,
             dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, int]:
    cutoff = min(p, q) * rolloff                       # in units of the reduced rates
    reach = math.ceil(lowpass_width * p / cutoff)      # input samples on each side
    offsets = torch.arange(-reach, reach + p, dtype=torch.float64, device=device)  # input taps
    phases = torch.arange(q, dtype=torch.float64, device=device) * p / q           # output positions
    t = (offsets[None, :] - phases[:, None]) * (cutoff / p)    # distance in zero crossings
    t = t.clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / (2 * lowpass_width)) ** 2
    x = t * math.pi
    sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / torch.where(x == 0, torch.ones_like(x), x))
    kernels = sinc * window * (cutoff / p)
    return kernels.to(dtype), reach


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, lowpass_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Resample ``[..., samples]`` from ``orig_rate`` to ``new_rate`` Hz.

    Returns ``[..., ceil(samples * new_rate / orig_rate)]`` on the input's device and dtype.
    Equal rates return the input unchanged.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    p, q = orig_rate // g, new_rate // g
    kernels, reach = _kernels(p, q, lowpass_width, rolloff, waveform.dtype, waveform.device)
    shape = waveform.shape
    n = shape[-1]
    x = waveform.reshape(-1, 1, n)
    x = F.pad(x, (reach, reach + p))
    y = F.conv1d(x, kernels[:, None, :], stride=p)      # [B, q, blocks]
    y = y.transpose(1, 2).reshape(x.shape[0], -1)        # interleave phases
    out_len = -(-n * q // p)
    return y[:, :out_len].reshape(*shape[:-1], out_len)
