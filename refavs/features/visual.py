"""Backbone maps of frames, computed once and cached (the ``lite`` model's frozen eyes).

:class:`BackboneMaps` runs the preset's frozen backbone (ImageNet EfficientNet-Lite0) on decoded
frames exactly as :meth:`refavs.models.lite.LiteEEMC.backbone_maps` does on raw frames (both
with the batch norms folded into the convolutions, :func:`fused_for_inference`): the frame
resized to ``image.size`` (bilinear, :func:`refavs.data.frames.load_clip_frames`), normalised
with ``image.mean`` / ``image.std``, the stride-8 and stride-16 maps kept (and ``rgb4``, the
refinement's guide: the normalised frame at stride 4, :func:`guide_map`) and
stored as ``visual.dtype``. A cached map and the model's own pass therefore differ only by that rounding
(:func:`quantize` / :func:`dequantize` for ``uint8``).

Stored arrays per map ``<m>`` (rows are clips): ``<m>`` ``[clips, T, C, g, g]``; with ``uint8``
also ``<m>_lo`` and ``<m>_step`` ``[clips, T, C]`` float16, so that value = lo + step * level.
"""

from __future__ import annotations

from typing import Final, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from refavs.data.frames import normalize_frames
from refavs.features.backbones.efficientnet_lite import fused_for_inference, load_efficientnet_lite0
from refavs.features.config import FeatureConfig

GUIDE: Final = "rgb4"
"""Name of the guide map in the feature cache and in the model's maps."""
GUIDE_STRIDE: Final = 4
"""Stride of the guide (and of the refined mask) relative to the model's input frame."""
GUIDE_CHANNELS: Final = 3


def guide_map(pixels: Tensor) -> Tensor:
    """``[N, 3, S / 4, S / 4]``: normalised frames ``[N, 3, S, S]`` averaged over 4 x 4 pixels."""
    return F.avg_pool2d(pixels.float(), GUIDE_STRIDE)


LEVELS = 255
"""Highest 8-bit level of a quantised channel."""


def quantize(maps: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[..., C, g, g]`` float -> (uint8 levels, lo, step): each channel of each map spread over
    0..255 between its minimum and maximum (lo and step as float16, the levels computed from
    those float16 values so that dequantising adds no bias). Runs on torch (all cores)."""
    x = torch.as_tensor(maps, dtype=torch.float32)
    flat = x.flatten(-2)
    lo = flat.amin(-1).half()
    step = ((flat.amax(-1) - lo.float()) / LEVELS).half()
    lo32, step32 = lo.float(), step.float()
    safe = torch.where(step32 > 0, step32, torch.ones_like(step32))
    levels = flat.sub(lo32[..., None]).div_(safe[..., None]).round_().clamp_(0, LEVELS).to(torch.uint8)
    return levels.reshape(x.shape).numpy(), lo.numpy(), step.numpy()


def dequantize(levels: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float32 maps of :func:`quantize`'s output."""
    return (lo.astype(np.float32)[..., None, None]
            + step.astype(np.float32)[..., None, None] * levels.astype(np.float32))


def stored_maps(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """float32 maps by name from the stored arrays of one row (quantised or not)."""
    out = {}
    for name in names:
        if f"{name}_lo" in arrays:
            out[name] = dequantize(arrays[name], arrays[f"{name}_lo"], arrays[f"{name}_step"])
        else:
            out[name] = np.asarray(arrays[name], dtype=np.float32)
    return out


class BackboneMaps:
    """The frozen backbone of a feature preset with ``visual`` settings.

    Args:
        config: the feature preset (its ``visual`` and ``image`` settings).
        device: where the backbone runs.
    """

    def __init__(self, config: FeatureConfig, device: str | torch.device = "cpu"):
        if config.visual is None:
            raise ValueError(f"feature preset {config.name!r} caches no backbone maps (no visual settings)")

        self.config = config
        self.device = torch.device(device)
        self.model = fused_for_inference(load_efficientnet_lite0(pretrained=True).to(self.device))
        self.up_to = "s16" if "s16" in config.visual.maps else "s8"

    @torch.inference_mode()
    def of_frames(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``{name: float32 tensor [N, C, g, g]}`` maps of ``uint8 [N, S, S, 3]`` frames (already resized)."""
        image, out = self.config.image, {name: [] for name in self.config.visual.maps}
        step = self.config.visual.batch_size
        for i in range(0, len(frames), step):
            pixels = normalize_frames(frames[i:i + step], image.mean, image.std).to(
                self.device, memory_format=torch.channels_last)
            maps = self.model.forward_features(pixels, up_to=self.up_to)
            if GUIDE in out:
                maps[GUIDE] = guide_map(pixels)
            for name in out:
                out[name].append(maps[name].float().cpu())
        return {name: torch.cat(parts) for name, parts in out.items()}

    def of_clips(self, clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The arrays to store for clips of ``uint8 [T, S, S, 3]`` frames (see the module docstring)."""
        t = len(clips[0])
        out = {}
        for name, m in self.of_frames(np.concatenate(list(clips))).items():
            m = m.reshape(len(clips), t, *m.shape[1:])
            if self.config.visual.dtype == "uint8":
                out[name], out[f"{name}_lo"], out[f"{name}_step"] = quantize(m)
            else:
                out[name] = m.numpy().astype(np.float16 if self.config.visual.dtype == "float16" else np.float32)
        return out
