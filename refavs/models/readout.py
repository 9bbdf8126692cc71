"""From Mask2Former's per-query outputs to one mask per frame (section 4, step 9), the loss,
and post-processing helpers. Pure functions, tested on hand-made inputs.
"""

from __future__ import annotations

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
    upsampling each query first (as the reference does), without Q full-size maps.

    Args:
        class_logits: ``[N, Q, K+1]``.
        query_mask_logits: ``[N, Q, h, w]``.

    Returns:
        ``mask_logits [N, mask_size, mask_size]`` and the query probabilities ``[N, Q]``.
    """
    probs = object_probabilities(class_logits, object_class)
    combined = torch.einsum("nq,nqhw->nhw", probs, query_mask_logits).unsqueeze(1)
    at_image = F.interpolate(combined, size=(image_size, image_size), mode="bilinear", align_corners=False)
    out = F.interpolate(at_image, size=(mask_size, mask_size), mode="bilinear", align_corners=False)
    return out[:, 0], probs


def mask_loss(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy with logits against 0/1 targets of the same shape (mean over pixels)."""
    if mask_logits.shape != targets.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match mask logits {tuple(mask_logits.shape)}")
    return F.binary_cross_entropy_with_logits(mask_logits, targets.to(mask_logits.dtype))


def probabilities(mask_logits) -> Tensor:
    """Foreground probabilities: the sigmoid of mask logits (a tensor or an ``EEMCOutput``)."""
    logits = getattr(mask_logits, "mask_logits", mask_logits)
    return torch.sigmoid(logits)


def binary_masks(mask_logits, threshold: float = 0.5) -> Tensor:
    """Boolean masks: probability above ``threshold`` (the J metric of section 5 uses 0.4)."""
    return probabilities(mask_logits) > threshold
