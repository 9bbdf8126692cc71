"""Trivial baselines that write predictions in the scorer's layout (``refavs baseline``).

They set the floor any method must beat and show what the metrics reward:

- ``nothing``: empty masks everywhere (perfect S on test_n, J = background share elsewhere);
- ``everything``: the whole frame;
- ``center``: a centred square covering a quarter of the frame (a location prior);
- ``every-object``: the union of every annotated object of the clip, i.e. segmenting all
  objects without listening or reading. It reads the union of ``gt_mask/<vid>/fid_*`` and
  ``gt_mask/<folder>/fid_*``: for a null expression that is the clip's real objects, which
  the expression does not refer to.

:func:`baseline_scores` gives the numbers ``refavs baseline`` then ``refavs score`` print,
computed in memory (no PNG written or read back); ``refavs demo`` uses it.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.masks import MediaError, load_clip_masks, load_mask
from refavs.data.metadata import MetadataError, read_metadata
from refavs.data.records import Expression
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import ScoreReport, check_splits, score_split, split_rows

if TYPE_CHECKING:
    from refavs.features.cache import FeatureStore
    from refavs.scoring.score import CueSource, ScoreReport

CENTER_FRACTION = 0.5
"""Side of the ``center`` square as a fraction of the frame side (a quarter of the area)."""


def _nothing(layout: DatasetLayout, e: Expression) -> np.ndarray:
    return np.zeros((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=np.float32)


def _everything(layout: DatasetLayout, e: Expression) -> np.ndarray:
    return np.ones((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=np.float32)


def _center(layout: DatasetLayout, e: Expression) -> np.ndarray:
    probs = _nothing(layout, e)
    lo = int(round(MASK_SIZE * (1 - CENTER_FRACTION) / 2))
    probs[:, lo:MASK_SIZE - lo, lo:MASK_SIZE - lo] = 1.0
    return probs


def _cached_masks(store: "FeatureStore | None", folder: str, fid_dir: Path,
                  resize: str = "reference") -> np.ndarray | None:
    """``bool [10, 256, 256]`` masks of ``fid_dir`` from the feature cache (made by the same
    :func:`~refavs.data.masks.load_mask` call), or None when the cache does not hold them."""
    fid = fid_dir.name.removeprefix("fid_")
    if (store is None or store.mask_size != MASK_SIZE or store.mask_resize != resize or not fid.isdigit()
            or fid_dir.name != f"fid_{int(fid)}" or not store.has_masks(folder, int(fid))):
        return None
    return store.masks(folder, int(fid))


def _every_object_union(layout: DatasetLayout, vid: str, folder: str,
                        store: "FeatureStore | None" = None) -> np.ndarray:
    """``bool [10, 256, 256]``: the union of every object of ``gt_mask/<vid>`` and ``gt_mask/<folder>``
    (object masks in ``store``'s mask cache are taken from there, the others read from the PNGs)."""
    union = np.zeros((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=bool)
    for folder in dict.fromkeys((vid, folder)):
        root = layout.root / "gt_mask" / folder
        if not root.is_dir():
            continue
        for fid_dir in sorted(root.glob("fid_*")):
            cached = _cached_masks(store, folder, fid_dir)
            if cached is not None:
                union |= cached
                continue
            for t in range(NUM_FRAMES):
                path = fid_dir / f"{t:05d}.png"
                if path.is_file():
                    union[t] |= load_mask(path)
    return union


def _every_object(layout: DatasetLayout, e: Expression) -> np.ndarray:
    return _every_object_union(layout, e.vid, layout.resolve_folder(e.uid, e.vid)).astype(np.float32)


BASELINES: dict[str, Callable[[DatasetLayout, Expression], np.ndarray]] = {
    "nothing": _nothing,
    "everything": _everything,
    "center": _center,
    "every-object": _every_object,
}
"""Baseline name -> function giving an expression's ``[10, 256, 256]`` probabilities."""


def write_baseline(name: str, data_dir: str | Path, splits: Iterable[str], out_dir: str | Path,
                   workers: int = 4) -> int:
    """Write baseline ``name``'s predictions for every expression of ``splits``; returns the count."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    layout = DatasetLayout(Path(data_dir))
    expressions = read_metadata(layout.root, splits)
    predict = BASELINES[name]
    unique = list({e.uid: e for e in expressions}.values())

    def write(e: Expression) -> None:
        write_prediction(out_dir, e.uid, predict(layout, e))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(write, unique))
    return len(unique)


def _stored(probs: np.ndarray) -> np.ndarray:
    """``probs`` as ``refavs score`` reads them back from :func:`write_prediction`'s 8-bit PNGs."""
    return np.rint(np.asarray(probs, dtype=np.float32) * 255.0).astype(np.uint8).astype(np.float32) / 255.0


def baseline_scores(name: str, data_dir: str | Path, splits: Iterable[str], store: "FeatureStore | None" = None,
                    aggregation: str = "dataset", mask_resize: str = "reference",
                    cue_source: "CueSource" = "auto", workers: int = 4) -> "ScoreReport":
    """Baseline ``name``'s scores on ``splits``, computed in memory: the same numbers as
    :func:`write_baseline` followed by :func:`~refavs.scoring.score.score_predictions` on its
    folder (both given ``splits``), without writing or reading a PNG.

    Args:
        store: a :class:`~refavs.features.cache.FeatureStore` with a media cache (``refavs
            features --media``): the target masks and the ``every-object`` object masks it holds are
            taken from it (the others, e.g. objects no expression refers to and the real objects of
            test_n clips, are read from ``gt_mask``); None reads everything from ``gt_mask``.
        aggregation, mask_resize, cue_source, workers: as for ``score_predictions``.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    splits = check_splits(splits, aggregation)
    layout = DatasetLayout(Path(data_dir))
    by_split = split_rows(layout.root, splits)
    # a repeated uid has one prediction file: write_baseline's, from the uid's last row
    written = {e.uid: e for e in sorted((e for rows in by_split.values() for e in rows), key=lambda e: e.row)}
    union = lru_cache(maxsize=64)(lambda vid, folder: _every_object_union(layout, vid, folder, store))

    def predict(e: Expression) -> np.ndarray:
        e = written[e.uid]
        if name == "every-object":  # 0/1 values, stored exactly: one union per clip
            return union(e.vid, layout.resolve_folder(e.uid, e.vid)).astype(np.float32)
        return _stored(BASELINES[name](layout, e))

    def truth(e: Expression) -> np.ndarray:
        folder = layout.resolve_folder(e.uid, e.vid)
        cached = _cached_masks(store, folder, layout.mask_dir(folder, e.fid), mask_resize)
        return cached if cached is not None else load_clip_masks(layout, e, MASK_SIZE, mask_resize)

    report = ScoreReport(splits={}, aggregation=aggregation)
    for split, rows in by_split.items():
        report.splits[split] = score_split(layout.root, rows, predict, aggregation, mask_resize, cue_source,
                                           workers=workers, split=split, truth=truth)
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "baseline", help="write a trivial baseline's predictions in the scorer's layout",
        description="Write a trivial baseline's predictions as OUT/<uid>/<frame>.png for `refavs score`. "
                    "nothing: empty masks; everything: the whole frame; center: a centred square of a "
                    "quarter of the frame; every-object: the union of all annotated objects of the clip.")
    p.add_argument("name", choices=tuple(BASELINES), help="which baseline")
    p.add_argument("--data-dir", required=True, type=Path, help="the dataset folder")
    p.add_argument("--split", dest="splits", nargs="+", choices=SPLITS, metavar="S", default=list(SPLITS),
                   help="splits to predict (default: all)")
    p.add_argument("--out", required=True, type=Path, help="prediction folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.data_dir / "metadata.csv").is_file():
        print(f"refavs baseline: error: {args.data_dir}/metadata.csv not found (--data-dir)", file=sys.stderr)
        return 2
    try:
        n = write_baseline(args.name, args.data_dir, args.splits, args.out)
    except (MediaError, MetadataError, ValueError) as err:
        print(f"refavs baseline: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.name} predictions for {n} expressions to {args.out}")
    return 0
