"""The training and evaluation dataset: frames and masks from disk, audio and text from the cache.

Pipeline: metadata index (:func:`~refavs.data.metadata.read_metadata`) -> per item, frame
decoding (:mod:`refavs.data.frames`), mask loading (:func:`~refavs.data.masks.load_clip_masks`)
and feature look-up in a :class:`FeatureSource` (normally the memory-mapped
:class:`~refavs.features.cache.FeatureStore`) -> :func:`collate` into a
:class:`~refavs.data.batch.ClipBatch`. No encoder runs inside ``__getitem__``: features are
extracted once by ``refavs features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from refavs.data.batch import ClipBatch, ClipSample, collate_clips
from refavs.data.frames import load_clip_frames, normalize_frames
from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.masks import MaskResize, load_clip_masks
from refavs.data.records import Expression
from refavs.features.config import FeatureConfig, ImageConfig


class FeatureSource(Protocol):
    """Where a dataset gets its audio and text features (the cache, or anything alike)."""

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
        check_features: at construction, raise :class:`~refavs.features.cache.FeatureCacheError`
            listing what is missing when ``features`` can tell (a ``FeatureStore`` can).
        labels: add the Ref-AVS Synth training labels where the data has them (sounding-object
            masks from the cache, the target's sounding seconds and the sounding objects' level
            and pitch ranks from ``scenes.jsonl``); absent on the real benchmark, where they
            stay None.

    When the feature source caches backbone maps (the ``lite`` preset), samples carry them as
    ``visual`` and no frame is decoded (``pixel_values`` is None).
    """

    def __init__(self, data_dir: str | Path, splits: str | Sequence[str], features: FeatureSource,
                 image: ImageConfig | None = None, mask_size: int = MASK_SIZE, with_masks: bool = True,
                 mask_resize: MaskResize = "reference", num_frames: int = NUM_FRAMES,
                 expressions: Sequence[Expression] | None = None, use_media_cache: bool = True,
                 check_features: bool = True, labels: bool = True):
        self.layout = DatasetLayout(Path(data_dir))
        self.splits = [splits] if isinstance(splits, str) else list(splits)
        if expressions is None:
            from refavs.data.metadata import read_metadata

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
        self._seconds: dict = {}
        self._scenes: dict = {}
        if labels:
            from refavs.synth.generate import read_scenes
            from refavs.synth.sounding import has_sounding, target_sounding_seconds

            if has_sounding(self.layout.root):
                records = read_scenes(self.layout.root)  # read once: the seconds and the ranks
                self._seconds = target_sounding_seconds(self.layout.root, records)
                self._scenes = {rec["folder"]: rec for rec in records}
        self.labels = labels
        if check_features and hasattr(features, "missing"):
            self._check_features()

    @classmethod
    def from_config(cls, data_dir: str | Path, splits: str | Sequence[str], config: FeatureConfig,
                    cache_dir: str | Path | None = None, **kwargs) -> "RefAVSDataset":
        """The dataset of ``splits`` reading the cache of ``config`` (extracted by ``refavs features``)."""
        from refavs.features.cache import FeatureStore

        store = FeatureStore.open(data_dir, config, cache_dir, mask_size=kwargs.get("mask_size", MASK_SIZE),
                                  mask_resize=kwargs.get("mask_resize", "reference"))
        return cls(data_dir, splits, store, image=config.image, **kwargs)

    def _check_features(self) -> None:
        from refavs.features.cache import FeatureCacheError

        folders, uids = self.features.missing(self.layout, self.expressions)
        if folders or uids:
            shown = ", ".join((folders + uids)[:5])
            raise FeatureCacheError(
                f"{self.layout.root}: features missing for {len(folders)} media folder(s) and {len(uids)} "
                f"expression(s) of split(s) {', '.join(self.splits)} (e.g. {shown}); run "
                f"`refavs features --data-dir {self.layout.root} --config <name> --splits {' '.join(self.splits)}` "
                "with the same feature settings")

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
        pixels = visual = sounding = seconds = None
        if self.visual:
            visual = {k: torch.from_numpy(v) for k, v in f.visual(folder).items()}
        else:
            pixels = normalize_frames(self._frames(folder), self.image.mean, self.image.std)
        if self.labels and hasattr(f, "has_sounding") and f.has_sounding(folder):
            sounding = torch.from_numpy(f.sounding(folder)).float()
        if e.empty and self._seconds:     # a training negative: its (absent) target never sounds
            seconds = torch.zeros(self.num_frames)
        elif (folder, e.fid) in self._seconds:
            seconds = torch.from_numpy(np.asarray(self._seconds[(folder, e.fid)], dtype=np.float32))
        ranks = None
        if folder in self._scenes:
            from refavs.synth.sound_ranks import sound_rank_maps

            ranks = torch.from_numpy(sound_rank_maps(self._scenes[folder]))
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
            sounding=sounding,
            target_seconds=seconds,
            sound_ranks=ranks,
        )
