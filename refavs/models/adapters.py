"""Adapters in the pixel decoder's deformable-attention encoder layers (section 4, step 8).

Each encoder layer's attention output passes through ``Linear(F -> F/r) -> ReLU -> Linear(F/r
-> F)``. The adapters live in :attr:`EEMC.adapters`; a forward hook on each layer's
``self_attn`` (transformers' ``Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention``)
applies them, so Mask2Former's own parameter names stay those of its checkpoint.
"""

from __future__ import annotations

from typing import Iterable

from torch import Tensor, nn

ADAPTER_MODES = ("residual", "replace")


class Adapter(nn.Module):
    """Bottleneck MLP applied to an attention output.

    Args:
        dim: input and output width.
        bottleneck: hidden width.
        mode: ``residual`` returns ``x + up(relu(down(x)))``; ``replace`` returns
            ``up(relu(down(x)))`` (the reference).
        zero_init: start ``up`` at zero (a residual adapter then starts as the identity).
    """

    def __init__(self, dim: int, bottleneck: int, mode: str = "residual", zero_init: bool = True):
        super().__init__()
        if mode not in ADAPTER_MODES:
            raise ValueError(f"adapter mode must be one of {ADAPTER_MODES}, got {mode!r}")
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.up = nn.Linear(bottleneck, dim)
        self.mode = mode
        if zero_init:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.up(self.act(self.down(x)))
        return x + out if self.mode == "residual" else out

    def hook(self, module: nn.Module, args: tuple, output):
        """Forward hook for an attention module returning ``(output, attention_weights)``."""
        return (self(output[0]), *output[1:])


def attach_adapters(encoder_layers: Iterable[nn.Module], adapters: Iterable[Adapter]) -> list:
    """Hook one adapter onto the ``self_attn`` of each pixel decoder encoder layer; returns the handles."""
    layers, adapters = list(encoder_layers), list(adapters)
    if len(layers) != len(adapters):
        raise ValueError(f"{len(adapters)} adapters for {len(layers)} encoder layers")
    return [layer.self_attn.register_forward_hook(adapter.hook)
            for layer, adapter in zip(layers, adapters, strict=True)]
