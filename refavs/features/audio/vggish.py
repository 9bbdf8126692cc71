"""VGGish (Hershey et al., ICASSP 2017) in torch, and loading its published weights.

The network maps a log-mel patch ``[1, 96, 64]`` to a 128-d embedding: four convolution
stages (3x3 convolutions of 64; 128; 256, 256; 512, 512 channels, each followed by ReLU,
each stage ending in 2x2 max pooling) then fully connected layers 12,288 -> 4,096 -> 4,096
-> 128 with ReLU (the last ReLU is kept by the torch port; ``final_relu`` can drop it).

Expected weights file: the torch port's state dict (harritaylor/torchvggish release v0.1,
``vggish-10086976.pth``), keys ``features.{0,3,6,8,11,13}.{weight,bias}`` and
``embeddings.{0,2,4}.{weight,bias}``; this module uses the same names, so the file loads
strictly. The PCA file (``vggish_pca_params-970ea276.pth`` or an ``.npz``) holds
``pca_eigen_vectors`` [128, 128] and ``pca_means`` [128] (or ``[128, 1]``); the names
``pproc._pca_matrix`` / ``pproc._pca_means`` of a full torchvggish state dict are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

CONV_CHANNELS: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
"""Convolution widths in order; ``M`` is a 2x2 max pooling."""

EMBEDDING_SIZE = 128
HIDDEN_SIZE = 4096
QUANTIZE_RANGE = (-2.0, 2.0)


def _conv_stack(in_channels: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for spec in CONV_CHANNELS:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(spec), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(spec)
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """Log-mel patches ``[N, 96, 64]`` (or ``[N, 1, 96, 64]``) -> embeddings ``[N, 128]``.

    Args:
        patch_frames, num_bands: patch size (96 x 64 for the published weights).
        final_relu: apply ReLU to the 128-d output, as the torch port of the weights does.
        hidden_size: width of the two hidden fully connected layers (4,096 published; smaller
            only for tests).
        embedding_size: output width (128 published).
    """

    def __init__(self, patch_frames: int = 96, num_bands: int = 64, final_relu: bool = True,
                 hidden_size: int = HIDDEN_SIZE, embedding_size: int = EMBEDDING_SIZE):
        super().__init__()
        self.features = _conv_stack()
        pools = sum(1 for s in CONV_CHANNELS if s == "M")
        last = [s for s in CONV_CHANNELS if s != "M"][-1]
        flat = int(last) * (patch_frames >> pools) * (num_bands >> pools)
        tail: list[nn.Module] = [nn.Linear(flat, hidden_size), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_size, embedding_size)]
        if final_relu:
            tail.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*tail)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.dim() == 3:
            patches = patches[:, None]
        x = self.features(patches)                      # [N, 512, 6, 4]
        # the published weights were trained in TensorFlow (channels last): flatten as [N, 6, 4, 512]
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)


class VGGishPostprocess(nn.Module):
    """The published post-processing: PCA (with whitening folded in), clip to [-2, 2], 8-bit quantise.

    Output values are integers 0..255 stored as float, as the published pipeline returns them.
    """

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor):
        super().__init__()
        self.register_buffer("eigen_vectors", eigen_vectors.float())
        self.register_buffer("means", means.float().reshape(-1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        lo, hi = QUANTIZE_RANGE
        projected = (embeddings - self.means) @ self.eigen_vectors.T
        clipped = projected.clamp(lo, hi)
        return torch.round((clipped - lo) * (255.0 / (hi - lo)))


def _read_tensors(path: Path, what: str) -> Mapping[str, torch.Tensor]:
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                return {k: torch.from_numpy(data[k]) for k in data.files}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{what}: cannot read {path} ({err})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{what}: {path} holds a {type(state).__name__}, not a state dict")
    return {k: torch.as_tensor(v) for k, v in state.items()}


def load_vggish_weights(model: VGGish, path: str | Path) -> None:
    """Load the torch port's state dict into ``model``; strict, with a message naming the keys."""
    state = dict(_read_tensors(Path(path), "VGGish weights"))
    state = {k: v for k, v in state.items() if not k.startswith("pproc.")}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"VGGish weights {path}: missing keys {missing[:6]}, unexpected keys {unexpected[:6]}; "
                         "expected the torch port's names features.N.* and embeddings.N.*")
    model.load_state_dict(state, strict=True)


def load_pca(path: str | Path) -> VGGishPostprocess:
    """The post-processing module from a PCA parameter file (.pth or .npz)."""
    state = _read_tensors(Path(path), "VGGish PCA parameters")
    for vec_key, mean_key in (("pca_eigen_vectors", "pca_means"), ("pproc._pca_matrix", "pproc._pca_means")):
        if vec_key in state and mean_key in state:
            vectors, means = state[vec_key], state[mean_key]
            if vectors.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.numel() != EMBEDDING_SIZE:
                raise ValueError(f"VGGish PCA parameters {path}: shapes {tuple(vectors.shape)} and "
                                 f"{tuple(means.shape)}, expected (128, 128) and (128,)")
            return VGGishPostprocess(vectors, means)
    raise ValueError(f"VGGish PCA parameters {path}: no pca_eigen_vectors/pca_means in {sorted(state)[:6]}")
