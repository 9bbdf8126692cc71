"""``refavs viz``: draw a dataset sample or an evaluation report as a PNG (matplotlib)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from refavs.console import fail
from refavs.data.layout import SPLITS
from refavs.data.metadata import MetadataError
from refavs.viz.report import ReportError, ReportStyle, render_report
from refavs.viz.sample import SampleError, SampleStyle, render_sample


def _dpi(text: str) -> int:
    value = int(text)
    if not 20 <= value <= 600:
        raise argparse.ArgumentTypeError(f"must be between 20 and 600, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "viz", help="draw a dataset sample or an evaluation report as a PNG",
        description="Pictures, drawn with matplotlib (Agg) and written atomically.\n\n"
                    "  sample: one expression, its 10 frames with the ground-truth mask (green outline)\n"
                    "          and a prediction (magenta, with each frame's J), and the clip's log-mel\n"
                    "          spectrogram on the frames' time axis;\n"
                    "  report: the per-split table and J / F per cue type of `refavs score --json`,\n"
                    "          `refavs eval --json` or the main job's report.json (with its goals and\n"
                    "          the with / without audio comparison).\n\n"
                    "Exit status: 0 written, 2 bad arguments or inputs (one line on stderr).",
        epilog="examples:\n"
               "  refavs viz sample --data-dir runs/demo/data --split test_s --index 0 --out sample.png\n"
               "  refavs viz sample --data-dir runs/demo/data --uid UID --pred runs/demo/predictions/lite "
               "--out sample.png\n"
               "  refavs viz report --report runs/demo/report.json --out report.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="viz_command", metavar="WHAT", required=True)

    s = kinds.add_parser("sample", help="one expression: frames with masks, spectrogram, the expression",
                         description="Draw one expression of a dataset in the official layout: the expression, "
                                     "its 10 frames with the ground-truth mask and optionally a prediction, and "
                                     "the log-mel spectrogram of the clip's audio over 10 s.")
    s.add_argument("--data-dir", type=Path, required=True, help="the dataset folder (holds metadata.csv)")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--uid", help="the expression's uid")
    which.add_argument("--split", choices=SPLITS, metavar="S", help=f"a split ({', '.join(SPLITS)}), with --index")
    s.add_argument("--index", type=int, help="with --split: the expression's position in the split "
                                              "(0-based, metadata order; default 0)")
    s.add_argument("--pred", type=Path, metavar="PRED_DIR",
                   help="predictions folder in the scorer's layout (PRED_DIR/<uid>/<frame>.png): draw the "
                        "prediction and each frame's J")
    s.add_argument("--out", type=Path, required=True, help="the PNG to write")
    s.add_argument("--dpi", type=_dpi, default=100, help="pixels per inch (default 100: 1500 px wide)")
    s.set_defaults(func=run_sample)

    r = kinds.add_parser("report", help="an evaluation report: per-split table, per-cue bar charts",
                         description="Draw an evaluation report: the JSON printed by `refavs score --json` or "
                                     "`refavs eval --json`, or the main job's report.json. The JSON's `kind` "
                                     "field (refavs-score, refavs-split-score, refavs-demo-report) says which; "
                                     "any other JSON is refused.")
    r.add_argument("--report", type=Path, required=True, help="the report JSON file")
    r.add_argument("--out", type=Path, required=True, help="the PNG to write")
    r.add_argument("--dpi", type=_dpi, default=100, help="pixels per inch (default 100: 1500 px wide)")
    r.set_defaults(func=run_report)


_error = functools.partial(fail, "viz")


def _check_out(out: Path) -> str | None:
    if out.suffix.lower() != ".png":
        return f"--out {out} must end in .png"
    if out.exists() and out.is_dir():
        return f"--out {out} is a folder"
    return None


def run_sample(args: argparse.Namespace) -> int:
    problem = _check_out(args.out)
    if problem:
        return _error(problem)
    if not (args.data_dir / "metadata.csv").is_file():
        return _error(f"{args.data_dir}/metadata.csv not found (--data-dir)")
    if args.uid is not None and args.index is not None:
        return _error("--index goes with --split, not with --uid")
    if args.pred is not None and not args.pred.is_dir():
        return _error(f"{args.pred} is not a folder (--pred)")
    try:
        out = render_sample(args.data_dir, args.out, uid=args.uid, split=args.split,
                            index=args.index, pred_dir=args.pred,
                            style=SampleStyle(dpi=args.dpi))
    except MetadataError as err:
        more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
        return _error(f"{err.problems[0]}{more}; see `refavs data check {args.data_dir}`")
    except SampleError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot write {args.out}: {err}")
    print(f"wrote {out}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    problem = _check_out(args.out)
    if problem:
        return _error(problem)
    try:
        out = render_report(args.report, args.out, style=ReportStyle(dpi=args.dpi))
    except ReportError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot write {args.out}: {err}")
    print(f"wrote {out}")
    return 0
