"""Ref-AVS Synth's labels as a plug-in of the generic reader and the feature cache.

Synth knows, per clip and second, which objects sound, how loud and how high: the reader
(:class:`refavs.data.dataset.RefAVSDataset`) gets these as extra targets through
:class:`SynthLabels`, a :class:`refavs.data.labels.LabelSource`, and the feature cache stores the
sounding-object masks as the plug-in kind :data:`SOUNDING_KIND`. Both are declared as entry
points in ``pyproject.toml`` (``refavs.label_sources``, ``refavs.cache_kinds``), so neither the
reader nor the cache imports this package.

Targets per sample (names from :mod:`refavs.data.labels`):

- ``sounding``: the cached ``gt_sounding`` masks of the clip (:mod:`refavs.synth.sounding`),
  ``SOUNDING_SIZE`` square, where the cache has them (``refavs features --media``);
- ``target_seconds``: the seconds the referred object sounds in (all zero for a null row);
- ``sound_ranks``: the sounding objects' level and pitch ranks (:mod:`refavs.synth.sound_ranks`);
- ``sound_levels``: their level and pitch on a fixed scale (the same module).

Datasets of generators before 1.1 (no ``gt_sounding/``) get no targets; their rows still honour
the row options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from refavs.data.labels import SOUND_LEVELS, SOUND_RANKS, SOUNDING, TARGET_SECONDS, FeatureLookup, RowOptions
from refavs.data.layout import NUM_FRAMES
from refavs.data.records import Expression
from refavs.features.cache.kinds import CacheKind, ExtractionContext, folder_items, unpack_masks
from refavs.synth.layout import folder_records, has_sounding, is_synth, read_scenes, read_synth_info
from refavs.synth.negatives import null_negatives
from refavs.synth.sound_ranks import sound_level_maps, sound_rank_maps
from refavs.synth.sounding import load_sounding_masks, target_sounding_seconds
from refavs.synth.stats import is_stereo, twin_ambiguous

SOUNDING_SIZE = 48
"""Side of the cached sounding-object masks (the ``lite`` model pools them to its stride-16 grid)."""


def sounding_settings() -> dict:
    """What the sounding-mask cache depends on: its size and the frame count."""
    return {"size": SOUNDING_SIZE, "resize": "nearest", "num_frames": NUM_FRAMES}


def _compute_sounding(ctx: ExtractionContext):
    def compute(folders: Sequence[str]) -> dict[str, np.ndarray]:
        root = ctx.layout.root
        return {"packed": np.stack([np.packbits(load_sounding_masks(root, f, SOUNDING_SIZE), axis=-1)
                                    for f in folders])}
    return compute


SOUNDING_KIND = CacheKind(
    name=SOUNDING, settings=lambda config, mask_size, mask_resize: sounding_settings(),
    applies=lambda root, visual, media: media and has_sounding(root), items=folder_items,
    key=lambda e, folder: folder, chunk=lambda batch, config: 4 * batch, compute=_compute_sounding,
    read=unpack_masks)
"""The cache kind of Synth's sounding-object masks: ``bool [T, 48, 48]`` per media folder."""


class SynthLabels:
    """The label source of one Ref-AVS Synth dataset folder; reads ``scenes.jsonl`` once.

    Args:
        root: the dataset folder (:func:`refavs.synth.layout.is_synth` holds).
    """

    name = "Ref-AVS Synth"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._records: list[dict] | None = None
        self._targets: tuple[dict, dict] | None = None

    @property
    def records(self) -> list[dict]:
        """scenes.jsonl's records, read on first use."""
        if self._records is None:
            self._records = read_scenes(self.root)
        return self._records

    def _tables(self) -> tuple[dict, dict]:
        """``(seconds by (folder, fid), scene by media folder)``; empty without sounding-object masks."""
        if self._targets is None:
            if has_sounding(self.root):
                self._targets = (target_sounding_seconds(self.root, self.records),
                                 folder_records(self.records))
            else:
                self._targets = ({}, {})
        return self._targets

    def targets(self, expression: Expression, folder: str, features: FeatureLookup) -> dict[str, np.ndarray]:
        seconds, scenes = self._tables()
        out: dict[str, np.ndarray] = {}
        cached = getattr(features, "cached", None)
        sounding = cached(SOUNDING, folder) if cached is not None and seconds else None
        if sounding is not None:
            out[SOUNDING] = np.asarray(sounding, dtype=np.float32)
        if expression.empty and seconds:  # a null row: its (absent) target never sounds
            out[TARGET_SECONDS] = np.zeros(NUM_FRAMES, dtype=np.float32)
        elif (folder, expression.fid) in seconds:
            out[TARGET_SECONDS] = np.asarray(seconds[(folder, expression.fid)], dtype=np.float32)
        if folder in scenes:
            out[SOUND_RANKS] = sound_rank_maps(scenes[folder])
            out[SOUND_LEVELS] = sound_level_maps(scenes[folder])
        return out

    def training_rows(self, rows: Sequence[Expression], options: RowOptions,
                      log: Callable[[str], None]) -> list[Expression]:
        kept = list(rows)
        if options.drop_twin_ambiguous:
            stereo = is_stereo(read_synth_info(self.root))
            twins = {e["uid"] for scene in self.records for e in scene["expressions"]
                     if twin_ambiguous(scene, e, stereo)}
            kept = [r for r in kept if r.uid not in twins]
            log(f"{len(rows) - len(kept)} twin-ambiguous training expressions left out, {len(kept)} kept")
        if options.null_negatives:
            negatives = null_negatives(self.root, kept, options.null_negatives, options.seed,
                                       options.null_negatives_present, records=self.records)
            log(f"{len(negatives)} null negatives added to {len(kept)} training expressions")
            kept += negatives
        return kept


def synth_labels(root: Path) -> SynthLabels | None:
    """The label-source factory of the ``refavs.label_sources`` entry point: Synth's labels for a
    Synth dataset, None for any other folder."""
    return SynthLabels(root) if is_synth(root) else None
