"""From Mask2Former's per-query outputs to one mask per frame (section 4, step 9), the loss,
and post-processing helpers. Pure functions, tested on hand-made inputs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def object_probabilities(class_logits: Tensor, object_class: int = 0) -> Tensor:
    """``[..., Q, K+1]`` class logits -> ``[..., Q]``: the 2-way softmax of
    ``[logit of object_class, "no object" logit]``, keeping the object probability."""
    pair = torch.stack([class_logits[..., object_class], class_logits[..., -1]], dim=-1)
    return pair.softmax(dim=-1)[..., 0]


def read_out_masks(class_logits: Tensor, query_mask_logits: Tensor, *, object_class: int, image_size: int,
                   mask_size: int) -> tuple[Tensor, Tensor]:
    """One mask logit map per frame.

    The probability-weighted sum of the query mask LOGITS (not sigmoids), upsampled to
    ``image_size`` then resized to ``mask_size`` (bilinear, ``align_corners=False`` both times).
    Bilinear resizing is linear, so the sum is taken before upsampling: the same map as
    upsampling each query first (as the reference does), without Q full-size maps. The two
    resizes are separable too: they are applied as one ``[mask_size, h]`` matrix per axis
    (:func:`resize_matrix`), two small matmuls whose backward is far cheaper than that of two
    interpolations.

    Args:
        class_logits: ``[N, Q, K+1]``.
        query_mask_logits: ``[N, Q, h, w]``.

    Returns:
        ``mask_logits [N, mask_size, mask_size]`` and the query probabilities ``[N, Q]``.
    """
    probs = object_probabilities(class_logits, object_class)
    combined = torch.einsum("nq,nqhw->nhw", probs, query_mask_logits)
    h, w = combined.shape[-2:]
    rows = resize_matrix(h, (image_size, mask_size), combined.device, combined.dtype)
    cols = rows if w == h else resize_matrix(w, (image_size, mask_size), combined.device, combined.dtype)
    return rows @ combined @ cols.T, probs


@functools.lru_cache(maxsize=32)
def resize_matrix(size: int, steps: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """The ``[steps[-1], size]`` matrix of 1-D bilinear resizing (``align_corners=False``) from
    ``size`` through each length of ``steps`` in turn, with the weights ``F.interpolate`` uses
    (obtained by resizing the identity), so ``M @ x @ M.T`` equals the chain of 2-D resizes.

    The matrix is cached, so it is always built as an ordinary tensor, even when first asked for
    under ``torch.inference_mode`` (an inference tensor could not be used by a later training step)."""
    with torch.inference_mode(False), torch.no_grad():
        m = torch.eye(size, dtype=torch.float64)
        for n in steps:  # columns of m are basis vectors along the resized axis: [size, 1, len, 1]
            m = F.interpolate(m[:, None, :, None], size=(n, 1), mode="bilinear", align_corners=False)[:, 0, :, 0]
        return m.T.contiguous().to(device=device, dtype=dtype)


def mask_loss(mask_logits: Tensor, targets: Tensor, bce_weight: float = 1.0, dice_weight: float = 0.0) -> Tensor:
    """``bce_weight`` x binary cross-entropy with logits against 0/1 targets of the same shape
    (mean over pixels) + ``dice_weight`` x :func:`dice_loss` (each frame is the last two dims)."""
    if mask_logits.shape != targets.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match mask logits {tuple(mask_logits.shape)}")
    targets = targets.to(mask_logits.dtype)
    loss = bce_weight * F.binary_cross_entropy_with_logits(mask_logits, targets)
    if dice_weight:
        loss = loss + dice_weight * dice_loss(mask_logits, targets)
    return loss


def dice_loss(mask_logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft dice loss ``1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`` per frame (the
    last two dims), with ``p`` the sigmoid, averaged over frames."""
    p = torch.sigmoid(mask_logits).flatten(-2)
    g = targets.to(p.dtype).flatten(-2)
    dice = (2 * (p * g).sum(-1) + smooth) / (p.sum(-1) + g.sum(-1) + smooth)
    return (1 - dice).mean()


def probabilities(mask_logits) -> Tensor:
    """Foreground probabilities: the sigmoid of mask logits (a tensor or an ``EEMCOutput``)."""
    logits = getattr(mask_logits, "mask_logits", mask_logits)
    return torch.sigmoid(logits)


def binary_masks(mask_logits, threshold: float = 0.5) -> Tensor:
    """Boolean masks: probability above ``threshold`` (the J metric of section 5 uses 0.4)."""
    return probabilities(mask_logits) > threshold
