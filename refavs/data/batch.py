"""Typed containers for what the data pipeline hands the model: one clip, and a batch of clips."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class ClipSample:
    """One expression (clip) of T frames, as :class:`~refavs.data.dataset.RefAVSDataset` yields it.

    Attributes:
        pixel_values: ``[T, 3, H, W]`` float32 frames, normalised with the image mean/std.
        audio: ``[T, A]`` float32 cached audio features (A = 128).
        text: ``[L, Dt]`` float32 cached text token features (L = 25).
        text_mask: ``[L]`` bool, True for real tokens.
        masks: ``[T, S, S]`` float32 0/1 targets (S = 256), None without ground truth.
        uid: the expression id.
        clip: the clip's media folder (expressions of one clip share their frames).
        visual: cached backbone maps by name (``{"s8": [T, C, g, g], ...}``, the ``lite`` model),
            or None. With them ``pixel_values`` may be None: the frames are not needed.
        targets: extra training targets by name, from the dataset's label source
            (:mod:`refavs.data.labels`; the names and shapes are listed there). Empty where the
            data has none, as on the real benchmark.
    """

    pixel_values: torch.Tensor | None
    audio: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    masks: torch.Tensor | None
    uid: str
    clip: str | None = None
    visual: dict[str, torch.Tensor] | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ClipBatch:
    """A batch of B expressions (clips) of T frames.

    Attributes:
        pixel_values: ``[B, T, 3, H, W]`` float32, normalised as the Mask2Former image processor
            (ImageNet mean/std); H = W = the configuration's image size.
        audio: ``[B, T, A]`` float32 cached audio features (A = 128).
        text: ``[B, L, Dt]`` float32 cached text features (L = 25; Dt = 768 distilroberta, 384 MiniLM).
        text_mask: ``[B, L]`` bool, True for real tokens.
        masks: ``[B, T, 256, 256]`` float32 0/1 targets, None at inference.
        uids: the B expression ids, in batch order.
        clips: the B clip ids (media folders), or None. Expressions with the same clip id must
            have the same frames; EEMC then runs its pixel-level module once for them.
        visual: cached backbone maps ``{"s8": [B, T, C, g, g], ...}`` (``lite``), or None; with
            them ``pixel_values`` may be None.
        targets: extra training targets by name, each ``[B, ...]``: a name is present only when
            every sample of the batch has it (see :class:`ClipSample` and :mod:`refavs.data.labels`).
    """

    pixel_values: torch.Tensor | None
    audio: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    masks: torch.Tensor | None
    uids: list[str]
    clips: list[str] | None = None
    visual: dict[str, torch.Tensor] | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.uids)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "ClipBatch":
        """The same batch with every tensor on ``device``."""
        return self._map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "ClipBatch":
        """Pinned copies (DataLoader calls this with ``pin_memory=True``)."""
        return self._map_tensors(lambda t: t.pin_memory())

    def _map_tensors(self, fn) -> "ClipBatch":
        """A copy with ``fn`` applied to every tensor (None stays None); the id lists are copied."""
        tensors = ("pixel_values", "audio", "text", "text_mask", "masks")
        changes = {name: None if getattr(self, name) is None else fn(getattr(self, name)) for name in tensors}
        visual = None if self.visual is None else {k: fn(v) for k, v in self.visual.items()}
        targets = {k: fn(v) for k, v in self.targets.items()}
        return dataclasses.replace(self, **changes, visual=visual, targets=targets, uids=list(self.uids),
                                   clips=None if self.clips is None else list(self.clips))


def clip_slots(clips: Sequence[str] | None, b: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which expressions of a batch of ``b`` share a clip: ``(first, owner)``, the batch index of the
    first expression of each distinct clip (``[C]``, in order of appearance) and, for each
    expression, its clip's slot (``[B]``). Without clip ids every expression is its own clip.
    Raises ValueError when ``clips`` does not have ``b`` ids."""
    if clips is None:
        every = torch.arange(b, device=device)
        return every, every
    if len(clips) != b:
        raise ValueError(f"clips has {len(clips)} ids for a batch of {b} expressions")
    slot: dict[str, int] = {}
    owner = [slot.setdefault(clip, len(slot)) for clip in clips]
    first = [owner.index(i) for i in range(len(slot))]
    return torch.tensor(first, device=device), torch.tensor(owner, device=device)


def collate_clips(samples: Sequence[ClipSample]) -> ClipBatch:
    """Stack samples into a :class:`ClipBatch`; masks are kept only when every sample has them."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    def stacked(name: str) -> torch.Tensor | None:
        values = [getattr(s, name) for s in samples]
        return torch.stack(values) if all(v is not None for v in values) else None

    visual = None
    if all(s.visual is not None for s in samples):
        visual = {k: torch.stack([s.visual[k] for s in samples]) for k in samples[0].visual}
    with_masks = all(s.masks is not None for s in samples)
    targets = {name: torch.stack([s.targets[name] for s in samples]) for name in samples[0].targets
               if all(name in s.targets for s in samples)}
    return ClipBatch(
        pixel_values=stacked("pixel_values"),
        audio=torch.stack([s.audio for s in samples]),
        text=torch.stack([s.text for s in samples]),
        text_mask=torch.stack([s.text_mask for s in samples]),
        masks=torch.stack([s.masks for s in samples]) if with_masks else None,
        uids=[s.uid for s in samples],
        clips=[s.clip for s in samples] if all(s.clip is not None for s in samples) else None,
        visual=visual,
        targets=targets,
    )
