"""Audio features of a clip: file or waveform -> ``[num_windows, dim]`` with one module.

:class:`AudioFeaturizer` chains the length rule (mono, resample, trim/pad, see
:class:`~refavs.features.config.AudioFeatureConfig`), the log-mel front end and the encoder
network (VGGish or the log-mel summary), and embeds several clips per call.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from refavs.data.masks import MediaError
from refavs.features.audio.frontend import LogMelFrontEnd
from refavs.features.audio.io import fit_length, load_waveform, to_mono
from refavs.features.audio.logmel import LogMelSummary
from refavs.features.audio.resample import resample
from refavs.features.audio.vggish import EMBEDDING_SIZE, VGGish, VGGishPostprocess, load_pca, load_vggish_weights
from refavs.features.config import AudioFeatureConfig
from refavs.features.download import fetch


class AudioFeaturizer(nn.Module):
    """Clips -> audio features ``[B, num_windows, dim]`` float32.

    Build with :func:`build_audio_featurizer` (which loads weights); the constructor takes an
    already built ``encoder`` so tests can pass any module mapping ``[N, 96, 64] -> [N, dim]``.
    """

    def __init__(self, config: AudioFeatureConfig, encoder: nn.Module, postprocess: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.frontend = LogMelFrontEnd(config.frontend)
        self.encoder = encoder
        self.postprocess = postprocess

    @property
    def device(self) -> torch.device:
        return self.frontend.window.device

    def prepare(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
        """``[channels, samples]`` or ``[samples]`` at any rate -> ``[clip_samples]`` mono at the front
        end's rate; with ``config.stereo``, ``[3, clip_samples]``: the mono mix, the left and the right
        channel (a mono file's channels are its one channel; more than two: the first two)."""
        mono = self._fit(to_mono(waveform), sample_rate)
        if not self.config.stereo:
            return mono
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim == 2 and waveform.shape[0] >= 2:
            left, right = (self._fit(channel, sample_rate) for channel in waveform[:2])
        else:  # one channel: both sides hear it
            left = right = mono
        return torch.stack([mono, left, right])

    def _fit(self, channel: np.ndarray, sample_rate: int) -> torch.Tensor:
        """One channel at any rate -> ``[clip_samples]`` at the front end's rate (the length rule)."""
        cfg = self.config
        signal = torch.from_numpy(np.ascontiguousarray(channel))
        if not torch.isfinite(signal).all():
            raise ValueError("the waveform holds NaN or infinite samples")
        signal = resample(signal.double(), sample_rate, cfg.frontend.sample_rate,
                          cfg.resample_lowpass_width, cfg.resample_rolloff).float()
        return torch.from_numpy(fit_length(signal.numpy(), cfg.clip_samples, cfg.pad_mode))

    @torch.no_grad()
    def embed_prepared(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``[B, clip_samples]`` prepared waveforms (``[B, 3, clip_samples]`` with ``config.stereo``)
        -> ``[B, num_windows, dim]``."""
        stereo = self.config.stereo
        signals = waveforms.flatten(0, 1) if stereo else waveforms
        patches = self.frontend(signals.to(self.device))[:, : self.config.num_windows]  # [B(x3), W, 96, 64]
        if stereo:
            patches = patches.reshape(waveforms.shape[0], 3, *patches.shape[1:])
            pan = (patches[:, 1] - patches[:, 2]).mean(-2)  # [B, W, bands]: left minus right
            patches = patches[:, 0]
        b, w = patches.shape[:2]
        out = self.encoder(patches.reshape(b * w, *patches.shape[2:]))
        if self.postprocess is not None:
            out = self.postprocess(out)
        out = out.reshape(b, w, -1).float()
        return torch.cat([out, pan.float()], -1) if stereo else out

    def embed_waveforms(self, items: Sequence[tuple[np.ndarray, int]]) -> torch.Tensor:
        """``[(waveform, sample_rate), ...]`` -> ``[B, num_windows, dim]``."""
        batch = torch.stack([self.prepare(w, sr) for w, sr in items])
        return self.embed_prepared(batch)

    def embed_files(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Audio files -> ``[B, num_windows, dim]``; errors name the file."""
        prepared = []
        for path in paths:
            waveform, rate = load_waveform(path)
            try:
                prepared.append(self.prepare(waveform, rate))
            except ValueError as err:
                raise MediaError(f"{path}: {err}") from None
        return self.embed_prepared(torch.stack(prepared))


def build_audio_featurizer(config: AudioFeatureConfig, device: str | torch.device = "cpu") -> AudioFeaturizer:
    """The featurizer for ``config``, weights loaded (downloaded and cached when given as URLs)."""
    if config.encoder == "logmel" and config.postprocess:
        raise ValueError("postprocess (PCA + quantisation) applies only to the vggish encoder")
    postprocess = None
    if config.encoder == "logmel":
        encoder: nn.Module = LogMelSummary()
    else:
        fe = config.frontend
        if config.vggish_weights is None:
            warnings.warn("VGGish has random weights (vggish_weights=None): features are for tests and "
                          "timing only", stacklevel=2)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                encoder = VGGish(fe.patch_frames, fe.num_mel_bins, final_relu=config.vggish_final_relu)
        else:
            encoder = VGGish(fe.patch_frames, fe.num_mel_bins, final_relu=config.vggish_final_relu)
            load_vggish_weights(encoder, fetch(config.vggish_weights, "VGGish weights"))
        if config.postprocess:
            if config.vggish_pca is None:  # random weights: an identity PCA keeps the setting testable
                postprocess = VGGishPostprocess(torch.eye(EMBEDDING_SIZE), torch.zeros(EMBEDDING_SIZE))
            else:
                postprocess = load_pca(fetch(config.vggish_pca, "VGGish PCA parameters"))
    featurizer = AudioFeaturizer(config, encoder, postprocess).eval()
    return featurizer.to(device)
