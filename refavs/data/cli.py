"""``refavs data check``: validate a dataset folder in the official layout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from refavs.data.check import PROBLEM_KINDS, check_dataset
from refavs.data.layout import SPLITS


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect datasets in the official Ref-AVS Bench layout",
                                 description="Inspect datasets in the official Ref-AVS Bench layout.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    kinds = "\n".join(f"  {k:<20} {v}" for k, v in PROBLEM_KINDS.items())
    check = data_sub.add_parser(
        "check", help="validate a dataset folder and list every problem",
        description="Validate a dataset folder (metadata.csv, media/, gt_mask/) and list every problem "
                    "with its file or metadata row, then a summary count.\n\nProblem kinds:\n" + kinds +
                    "\n\nExit status: 0 clean, 1 problems found, 2 bad arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("data_dir", metavar="DIR", type=Path, help="the dataset folder (holds metadata.csv)")
    check.add_argument("--split", dest="splits", nargs="+", choices=SPLITS, metavar="S",
                       help=f"check only rows of these splits ({', '.join(SPLITS)}); default: all")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.add_argument("--workers", type=int, default=4, help="threads decoding files (default 4)")
    check.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    if not args.data_dir.is_dir():
        print(f"refavs data check: error: {args.data_dir} is not a folder", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("refavs data check: error: --workers must be at least 1", file=sys.stderr)
        return 2
    report = check_dataset(args.data_dir, args.splits, workers=args.workers,
                           progress=not args.no_progress and not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for problem in report.problems:
            print(problem)
        print(f"checked {report.n_expressions} expressions, {report.n_clips} clips, "
              f"{report.n_mask_folders} mask folders in {report.root}")
        if report.ok:
            print("no problems found")
        else:
            counts = ", ".join(f"{k}: {n}" for k, n in report.summary().items())
            print(f"{len(report.problems)} problem(s): {counts}")
    return 0 if report.ok else 1
