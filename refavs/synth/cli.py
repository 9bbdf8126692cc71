"""``refavs synth``: generate a Ref-AVS Synth dataset, print its statistics, or draw its overview."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

from refavs.console import fail
from refavs.synth.figure import make_figure
from refavs.synth.generate import OutputFolderError, generate
from refavs.synth.presets import MAX_SIZE, MIN_SIZE, PRESETS, check_size, get_preset
from refavs.synth.stats import dataset_stats, format_stats


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate Ref-AVS Synth, a synthetic benchmark that can only be solved by listening",
        description="Generate Ref-AVS Synth: clips of simple shapes that sound in chosen seconds, with\n"
                    "expressions that need the audio, in the official Ref-AVS Bench layout (plus the\n"
                    "metadata columns cue and needs_audio, scenes.jsonl and synth.json). The same seed\n"
                    "and options give byte-identical files.\n\n"
                    "Exit status: 0 done, 1 the dataset could not be read or written, 2 bad arguments\n"
                    "(including an --out folder that is not empty, unless --force).",
        epilog="examples:\n  refavs synth --out data/synth --preset small --seed 0\n"
               "  refavs synth --stats data/synth\n  refavs synth --figure data/synth docs/synth.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, metavar="DIR", help="generate a dataset into DIR (new or empty)")
    action.add_argument("--stats", type=Path, metavar="DIR",
                        help="print the distributions (categories, cues, needs_audio, objects per clip, "
                             "mask area) per split of the dataset in DIR")
    action.add_argument("--figure", nargs=2, type=Path, metavar=("DIR", "OUT_PNG"),
                        help="draw a few clips of DIR (frames with targets tinted, sound strips, "
                             "log-mel spectrogram, expressions) into OUT_PNG")
    p.add_argument("--seed", type=int, default=0, help="dataset seed, a non-negative integer (default 0)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS),
                   help="how much to generate: " + "; ".join(
                       f"{name}: {sum(pr.clips.values())} clips, {pr.size} px" for name, pr in PRESETS.items())
                        + " (default small)")
    p.add_argument("--size", type=int, metavar="PX",
                   help=f"frame side in pixels, {MIN_SIZE} to {MAX_SIZE} (default: the preset's)")
    p.add_argument("--stereo", action="store_true",
                   help="two-channel tracks, each object's sound panned by its place in the frame "
                        "(their mono mix is the mono track)")
    p.add_argument("--workers", type=int, help="processes making clips (default: CPUs, at most 4); "
                                               "the files do not depend on it")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out folder (an earlier Ref-AVS Synth run there is replaced)")
    p.add_argument("--clips", nargs="+", metavar="VID", help="with --figure: the clips to draw (default: picked)")
    p.add_argument("--json", action="store_true", help="with --out or --stats: print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


_error = functools.partial(fail, "synth")


def run(args: argparse.Namespace) -> int:
    if args.stats is not None:
        return _run_stats(args)
    if args.figure is not None:
        return _run_figure(args)
    return _run_generate(args)


def _run_generate(args: argparse.Namespace) -> int:
    if args.seed < 0:
        return _error(f"--seed must be a non-negative integer, got {args.seed}")
    if args.size is not None:
        try:
            check_size(args.size)
        except ValueError as err:
            return _error(f"--size: {err}")
    if args.workers is not None and args.workers < 1:
        return _error(f"--workers must be at least 1, got {args.workers}")
    try:
        preset = dataclasses.replace(get_preset(args.preset), stereo=True) if args.stereo else args.preset
        summary = generate(args.out, seed=args.seed, preset=preset, size=args.size, workers=args.workers,
                           force=args.force, progress=not args.no_progress and not args.json and sys.stderr.isatty())
    except OutputFolderError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot write {args.out}: {err}", 1)
    if args.json:
        print(json.dumps({"root": summary.root, "seed": summary.seed, "preset": summary.preset,
                          "size": summary.size, "seconds": round(summary.seconds, 2), "counts": summary.counts},
                         indent=2))
        return 0
    total = sum(c["expressions"] for c in summary.counts.values())
    clips = sum(c["clips"] for c in summary.counts.values())
    print(f"wrote {clips} clips and {total} expressions to {summary.root} in {summary.seconds:.1f} s "
          f"(seed {summary.seed}, preset {summary.preset}, {summary.size} px)")
    for split, c in summary.counts.items():
        share = 100.0 * c["needs_audio"] / c["expressions"] if c["expressions"] else 0.0
        print(f"  {split:<7} {c['clips']:>6} clips {c['expressions']:>7} expressions  "
              f"needs_audio {share:4.0f}%")
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    if not args.stats.is_dir():
        return _error(f"--stats {args.stats} is not a folder")
    try:
        stats = dataset_stats(args.stats)
    except FileNotFoundError as err:
        return _error(str(err))
    except (ValueError, KeyError) as err:
        return _error(f"{args.stats}: unreadable scenes.jsonl or synth.json ({err})", 1)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_stats(stats))
    return 0


def _run_figure(args: argparse.Namespace) -> int:
    root, out = args.figure
    if not root.is_dir():
        return _error(f"--figure {root} is not a folder")
    if out.suffix.lower() != ".png":
        return _error(f"--figure output {out} must end in .png")
    try:
        make_figure(root, out, clips=args.clips)
    except (FileNotFoundError, KeyError) as err:
        return _error(str(err).strip("'\""))
    print(f"wrote {out}")
    return 0
