"""Trivial baselines that write predictions in the scorer's layout (``refavs baseline``).

They set the floor any method must beat and show what the metrics reward:

- ``nothing``: empty masks everywhere (perfect S on test_n, J = background share elsewhere);
- ``everything``: the whole frame;
- ``center``: a centred square covering a quarter of the frame (a location prior);
- ``every-object``: the union of every annotated object of the clip, i.e. segmenting all
  objects without listening or reading. It reads the union of ``gt_mask/<vid>/fid_*`` and
  ``gt_mask/<folder>/fid_*``: for a null expression that is the clip's real objects, which
  the expression does not refer to.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.masks import load_mask
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.scoring.predictions import write_prediction

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


def _every_object(layout: DatasetLayout, e: Expression) -> np.ndarray:
    union = np.zeros((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=bool)
    for folder in dict.fromkeys((e.vid, layout.resolve_folder(e.uid, e.vid))):
        root = layout.root / "gt_mask" / folder
        if not root.is_dir():
            continue
        for fid_dir in sorted(root.glob("fid_*")):
            for t in range(NUM_FRAMES):
                path = fid_dir / f"{t:05d}.png"
                if path.is_file():
                    union[t] |= load_mask(path)
    return union.astype(np.float32)


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
    from refavs.data.masks import MediaError
    from refavs.data.metadata import MetadataError

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
