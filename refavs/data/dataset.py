"""The training and evaluation dataset: frames and masks from disk, audio and text from the cache.

Pipeline: metadata index (:func:`~refavs.data.metadata.read_metadata`) -> per item, frame
decoding (:mod:`refavs.data.frames`), mask loading (:func:`~refavs.data.masks.load_clip_masks`),
feature look-up in a :class:`FeatureSource` (normally the memory-mapped
:class:`~refavs.features.cache.FeatureStore`) and the extra targets of a
:class:`~refavs.data.labels.LabelSource` where the dataset has one -> :func:`collate` into a
:class:`~refavs.data.batch.ClipBatch`. No encoder runs inside ``__getitem__``: features are
extracted once by ``refavs features``. This module defines the interfaces it reads through and
imports nothing above :mod:`refavs.data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from refavs.data.batch import ClipBatch, ClipSample, collate_clips
from refavs.data.frames import load_clip_frames, normalize_frames
from refavs.data.image import ImageConfig
from refavs.data.labels import LabelSource
from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.masks import MaskResize, load_clip_masks
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression


class FeatureSource(Protocol):
    """Where a dataset gets its audio and text features (the cache, or anything alike).

    Optional, where the source has them: ``require(layout, expressions, splits)`` raises an
    error saying what to run when features are missing; ``has_visual_maps`` / ``visual(folder)``
    (backbone maps), ``has_frames`` / ``frames``, ``has_masks`` / ``masks`` (a media cache) and
    ``cached(kind, key)`` (any cached kind, for a label source).
    """

    def audio(self, folder: str) -> np.ndarray:
        """``[T, A]`` features of a media folder."""

    def text_of(self, expression: str) -> tuple[np.ndarray, np.ndarray]:
        """``([L, D] features, [L] bool mask)`` of an expression string."""


def collate(samples: Sequence[ClipSample]) -> ClipBatch:
    """Stack :class:`ClipSample` items into a :class:`ClipBatch` (use as a DataLoader ``collate_fn``)."""
    return collate_clips(samples)


class RefAVSDataset(Dataset):
    """Expressions of one or more splits, each a :class:`~refavs.data.batch.ClipSample`.

    Args:
        data_dir: the dataset folder in the official layout.
        splits: a split name or several (``train``, ``val``, ``test_s``, ``test_u``, ``test_n``).
        features: the feature source, e.g. ``FeatureStore.open(data_dir, config)``.
        image: frame size and normalisation (default: 384 px, ImageNet mean/std).
        mask_size: side of the target masks (256, where every metric is computed).
        with_masks: load ground-truth masks (False for inference on data without them).
        mask_resize: ``reference`` (bilinear then ``> 0``, as the reference loader) or ``nearest``.
        num_frames: frames per clip (10).
        expressions: use these rows instead of reading metadata.csv (already filtered by split).
        use_media_cache: take frames and masks from the feature source when it caches them
            (``refavs features --media``) with the same sizes; otherwise decode the files.
        check_features: at construction, let ``features`` raise an error listing what is
            missing when it can tell (its ``require``; a ``FeatureStore`` raises
            :class:`~refavs.features.cache.FeatureCacheError`).
        labels: the dataset's label source, whose extra targets each sample carries in
            ``targets`` (the trainer passes :func:`refavs.data.labels.label_source_for`'s);
            None for none (evaluation, the real benchmark).

    When the feature source caches backbone maps (the ``lite`` preset), samples carry them as
    ``visual`` and no frame is decoded (``pixel_values`` is None).
    """

    def __init__(self, data_dir: str | Path, splits: str | Sequence[str], features: FeatureSource,
                 image: ImageConfig | None = None, mask_size: int = MASK_SIZE, with_masks: bool = True,
                 mask_resize: MaskResize = "reference", num_frames: int = NUM_FRAMES,
                 expressions: Sequence[Expression] | None = None, use_media_cache: bool = True,
                 check_features: bool = True, labels: LabelSource | None = None):
        self.layout = DatasetLayout(Path(data_dir))
        self.splits = [splits] if isinstance(splits, str) else list(splits)
        if expressions is None:
            expressions = read_metadata(self.layout.root, self.splits)
        self.expressions = list(expressions)
        self.features = features
        self.image = image or ImageConfig()
        self.mask_size = mask_size
        self.with_masks = with_masks
        self.mask_resize = mask_resize
        self.num_frames = num_frames
        self.use_media_cache = use_media_cache
        self._folders = [self.layout.resolve_folder(e.uid, e.vid) for e in self.expressions]
        self.visual = bool(getattr(features, "has_visual_maps", False))
        self.labels = labels
        if check_features and hasattr(features, "require"):
            features.require(self.layout, self.expressions, self.splits)

    def _frames(self, folder: str) -> np.ndarray:
        f = self.features
        if self.use_media_cache and hasattr(f, "has_frames") and f.has_frames(folder):
            frames = f.frames(folder)
            if frames.shape[:3] == (self.num_frames, self.image.size, self.image.size):
                return frames
        return load_clip_frames(self.layout, folder, self.image.size, self.num_frames)

    def _masks(self, e: Expression, folder: str) -> np.ndarray:
        if e.empty:
            return np.zeros((self.num_frames, self.mask_size, self.mask_size), dtype=bool)
        f = self.features
        if (self.use_media_cache and hasattr(f, "has_masks") and f.has_masks(folder, e.fid)
                and f.mask_size == self.mask_size and f.mask_resize == self.mask_resize):
            masks = f.masks(folder, e.fid)
            if len(masks) == self.num_frames:
                return masks
        return load_clip_masks(self.layout, e, self.mask_size, self.mask_resize, self.num_frames)

    def __len__(self) -> int:
        return len(self.expressions)

    @property
    def clips(self) -> list[str]:
        """The clip (media folder) of every expression, in dataset order."""
        return list(self._folders)

    def __getitem__(self, index: int) -> ClipSample:
        e, folder = self.expressions[index], self._folders[index]
        f = self.features
        pixels = visual = None
        if self.visual:
            visual = {k: torch.from_numpy(v) for k, v in f.visual(folder).items()}
        else:
            pixels = normalize_frames(self._frames(folder), self.image.mean, self.image.std)
        targets = {} if self.labels is None else {
            name: torch.from_numpy(np.asarray(value, dtype=np.float32))
            for name, value in self.labels.targets(e, folder, f).items()}
        audio = np.asarray(self.features.audio(folder), dtype=np.float32)
        if audio.shape[0] != self.num_frames:
            raise ValueError(f"audio features of {folder} have {audio.shape[0]} windows, expected {self.num_frames}")
        text, mask = self.features.text_of(e.exp)
        masks = torch.from_numpy(self._masks(e, folder)).float() if self.with_masks else None
        return ClipSample(
            pixel_values=pixels,
            audio=torch.from_numpy(audio),
            text=torch.from_numpy(np.asarray(text, dtype=np.float32)),
            text_mask=torch.from_numpy(np.asarray(mask, dtype=bool)),
            masks=masks,
            uid=e.uid,
            clip=folder,
            visual=visual,
            targets=targets,
        )
