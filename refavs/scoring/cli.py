"""``refavs score``: score any method's predictions against the benchmark's ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from refavs.data.layout import SPLITS
from refavs.data.masks import MediaError
from refavs.data.metadata import MetadataError
from refavs.scoring.score import MissingPredictionsError, score_predictions
from refavs.scoring.table import format_report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score predictions stored as PNGs against a dataset's ground truth",
        description="Score any method's predictions. Predictions are stored as PRED_DIR/<uid>/<frame>.png, "
                    "frame 0..9, 8-bit grayscale where value / 255 is the probability of the referred "
                    "object; any size (resized to 256x256 bilinearly). Prints J, F, S per split, Mix J/F "
                    "(mean of test_s and test_u), J/F per cue type, J per clause kind (metadata column clause) "
                    "and S / empty share per kind of null row (column null_kind, else the null_m / null_c "
                    "folder prefix).")
    p.add_argument("--data-dir", required=True, type=Path, help="the dataset folder (holds metadata.csv and gt_mask/)")
    p.add_argument("--split", dest="splits", required=True, nargs="+", choices=SPLITS, metavar="S",
                   help=f"splits to score ({', '.join(SPLITS)})")
    p.add_argument("--pred-dir", required=True, type=Path, help="folder of predictions <uid>/<frame>.png")
    p.add_argument("--aggregation", choices=("dataset", "reference"), default="dataset",
                   help="dataset: per-frame averages over the whole split (default); reference: the "
                        "reference code's averaging over batches of 4 clips in metadata order")
    p.add_argument("--allow-missing", action="store_true",
                   help="score expressions without a prediction as empty masks (and say how many) "
                        "instead of failing")
    p.add_argument("--mask-resize", choices=("reference", "nearest"), default="reference",
                   help="how ground-truth masks are brought to 256x256: reference = bilinear then > 0 "
                        "(default, comparable numbers); nearest = exact nearest neighbour")
    p.add_argument("--cues", dest="cue_source", choices=("auto", "column", "keywords"), default="auto",
                   help="cue tags per expression: the metadata's cue column when present (auto, default), "
                        "always the column, or always the keyword classifier")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--workers", type=int, default=4, help="threads loading PNGs (default 4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.data_dir / "metadata.csv").is_file():
        print(f"refavs score: error: {args.data_dir}/metadata.csv not found (--data-dir)", file=sys.stderr)
        return 2
    if not args.pred_dir.is_dir():
        print(f"refavs score: error: {args.pred_dir} is not a folder (--pred-dir)", file=sys.stderr)
        return 2
    try:
        report = score_predictions(args.data_dir, args.splits, args.pred_dir, args.aggregation,
                                   args.allow_missing, args.mask_resize, args.cue_source,
                                   workers=max(1, args.workers), progress=sys.stderr.isatty() and not args.json)
    except (MissingPredictionsError, MediaError, MetadataError, ValueError) as err:
        print(f"refavs score: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    missing = sum(s.n_missing for s in report.splits.values())
    if missing:
        print(f"refavs score: {missing} expression(s) without a prediction scored as empty masks",
              file=sys.stderr)
    return 0
