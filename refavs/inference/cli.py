"""``refavs predict``: a checkpoint, a video file and an expression -> masks, an overlay video and a
summary; or a CSV of many.

Exit status: 0 on success; 2 with one line ``refavs predict: error: ...`` for a bad input (file,
argument, checkpoint, CSV); 1 when some rows of a batch failed (each reported on stderr and in
``OUT/summary.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
import warnings
from pathlib import Path

from refavs.console import fail
from refavs.inference.errors import InferenceError
from refavs.inference.limits import MAX_EXPRESSION_CHARS

PROG = "predict"
FRAME_MODES: tuple[str, ...] = ("10", "all")
DEFAULT_FRAMES = "all"
"""What ``refavs predict --video`` does without ``--frames``: ``10`` (the benchmark protocol's
clip); ``--end``, ``--fps``, ``--masks`` or ``--no-overlay`` ask for ``all``."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        PROG, help="segment what an expression refers to in your own video (or a CSV of videos)",
        description="Run a trained EEMC checkpoint on a video file. --frames 10 (the benchmark protocol): 10 frames "
                    "at 1 fps over the 10 s from --start (frame t is the frame shown at start + t + 0.5 s; shorter "
                    "videos are looped) and the audio of the same window; writes OUT/masks/0.png ... 9.png "
                    "(probabilities, the scorer's 8-bit format), OUT/overlay.mp4 (or .gif) and OUT/summary.json. "
                    "--frames all: every frame of the video (or of --start..--end, or --fps frames a second), each "
                    "with the mask of its second from 10-second windows laid over the video; writes "
                    "OUT/masks/000000.png ... (or --masks rle: OUT/masks.rle.jsonl.gz), OUT/overlay.mp4 with the "
                    "video's sound and OUT/summary.json, streamed (OUT/INCOMPLETE marks an unfinished folder). "
                    "With --csv (columns video, expression, optional start and id; 10 frames), each row goes into "
                    "OUT/<id or nnn-stem>/ and OUT/summary.json indexes them; complete rows are skipped on a re-run. "
                    "See docs/inference.md.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder (config.json + model.safetensors), training run folder (uses RUN/best) "
                        "or Hugging Face hub id")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="a video file (any container/codec FFmpeg reads)")
    source.add_argument("--csv", type=Path, help="batch mode: a CSV with columns video,expression[,start][,id]")
    p.add_argument("--expression", help="what to segment, e.g. \"the object making the loudest sound\" (with --video; "
                                        f"at most {MAX_EXPRESSION_CHARS} characters)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--frames", choices=FRAME_MODES, default=None,
                   help="all: every frame of the video (the default with --video); 10: one 10 s clip at 1 fps, the "
                        "benchmark protocol (the default with --csv)")
    p.add_argument("--start", type=float, default=0.0,
                   help="where the 10 s clip (or, with --frames all, the span) starts, in seconds (default 0; in "
                        "batch mode, for rows without one)")
    p.add_argument("--end", type=float, default=None,
                   help="--frames all: where the span ends, in seconds (default: the end of the video)")
    p.add_argument("--fps", type=float, default=None,
                   help="--frames all: output frames per second (default: every frame, at the video's own rate)")
    p.add_argument("--masks", choices=("png", "rle", "none"), default=None,
                   help="--frames all: masks/000000.png ... (png, the default), one gzipped JSON-lines file of COCO "
                        "run-length encodings at the frame size (rle), or none")
    p.add_argument("--no-overlay", action="store_true", help="--frames all: do not write overlay.mp4")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when available)")
    p.add_argument("--allow-silent", action="store_true", help="run videos without an audio track on silence")
    p.add_argument("--overlay-format", choices=("mp4", "gif"), default="mp4",
                   help="overlay video format (default mp4; gif is used anyway when no H.264 encoder is available)")
    p.add_argument("--overwrite", action="store_true", help="batch mode: recompute rows whose outputs are complete")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (batch mode and --frames all; shown only when stderr is a terminal)")
    p.set_defaults(func=run)


_fail = functools.partial(fail, PROG)


@contextlib.contextmanager
def _warnings_as_lines():
    """Show warnings as one ``refavs predict: warning: ...`` line each."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"refavs {PROG}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def run(args: argparse.Namespace) -> int:
    if args.video is not None and args.expression is None:
        return _fail("--expression is required with --video")
    if args.csv is not None and args.expression is not None:
        return _fail("--expression goes with --video; with --csv every row gives its own")
    whole_only = [name for name, given in (("--end", args.end is not None), ("--fps", args.fps is not None),
                                           ("--masks", args.masks is not None), ("--no-overlay", args.no_overlay))
                  if given]
    frames = args.frames or ("10" if args.csv is not None and not whole_only else DEFAULT_FRAMES)
    if whole_only and (frames != "all" or args.csv is not None):
        return _fail(f"{', '.join(whole_only)} go{'es' if len(whole_only) == 1 else ''} with --video and --frames all")
    if frames == "all" and args.csv is not None:
        return _fail("--frames all goes with --video; batch mode predicts 10-frame clips")
    if frames == "all" and args.overlay_format != "mp4":
        return _fail("--frames all writes overlay.mp4 (with sound); --overlay-format gif is for 10-frame clips")
    with _warnings_as_lines():
        try:
            if args.csv is not None:
                return _run_batch(args)
            return _run_whole(args) if frames == "all" else _run_single(args)
        except InferenceError as err:  # a bad input: 2; a disk that failed a write (also an OSError): 1
            return _fail(str(err), 1 if isinstance(err, OSError) else 2)
        except OSError as err:  # a full disk, an I/O error: the writers name the file
            return _fail(str(err), 1)


def _device(requested: str | None) -> str:
    import torch  # pulls in torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def _run_single(args: argparse.Namespace) -> int:
    # pulls in torch
    from refavs.inference.pipeline import RefAVSPipeline, check_expression_text, resolve_checkpoint, sampling_for
    from refavs.inference.video import decode_video  # pulls in numpy, which `refavs --help` does without
    from refavs.models.checkpoint import load_config  # pulls in torch

    check_expression_text(args.expression, name="--expression")
    folder = resolve_checkpoint(args.checkpoint)
    began = time.perf_counter()
    clip = decode_video(args.video, start=args.start, allow_silent=args.allow_silent,
                        config=sampling_for(load_config(folder)))  # bad inputs fail before the model loads
    decoded = time.perf_counter() - began
    pipe = RefAVSPipeline.from_pretrained(folder, device=_device(args.device))
    result = pipe(clip, args.expression)
    result.timings["decode"] = decoded
    paths = result.save(args.out, overlay_format=args.overlay_format)
    areas = result.frame_areas
    best = max(range(len(areas)), key=areas.__getitem__)
    verdict = (f"present (largest mask {areas[best]:.1%} of frame {best})" if result.present
               else "not found (no frame's mask reaches "
                    f"{result.settings.presence_min_area:.1%} of the frame)")
    print(f"{args.video}: {verdict}; wrote {paths['masks']}/0.png ... {len(areas) - 1}.png, "
          f"{paths['overlay']}, {paths['summary']}")
    return 0


def _run_whole(args: argparse.Namespace) -> int:
    # pulls in torch
    from refavs.inference.pipeline import RefAVSPipeline, check_expression_text, resolve_checkpoint
    from refavs.inference.video import check_end, check_start, probe_video  # pulls in numpy
    from refavs.inference.whole_video import INCOMPLETE_FILE, save_video_prediction  # pulls in numpy

    check_expression_text(args.expression, name="--expression")
    check_end(check_start(args.start), args.end)
    probe_video(args.video)  # a bad file fails before the model loads
    folder = resolve_checkpoint(args.checkpoint)
    pipe = RefAVSPipeline.from_pretrained(folder, device=_device(args.device))
    run = pipe.predict_video(args.video, args.expression, start=args.start, end=args.end, fps=args.fps,
                             allow_silent=args.allow_silent)
    try:
        paths = save_video_prediction(run, args.out, masks=args.masks or "png", overlay=not args.no_overlay,
                                      progress=not args.no_progress and sys.stderr.isatty())
    except KeyboardInterrupt:
        print(f"refavs {PROG}: interrupted; {args.out} is incomplete ({args.out / INCOMPLETE_FILE})", file=sys.stderr)
        return 130
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    count, shown = summary["frame_count"], sum(summary["frame_present"])
    verdict = (f"present in {shown} of {count} frames" if summary["present"]
               else f"not found in any of {count} frames")
    wrote = [str(p) for p in (paths["masks"], paths["overlay"], paths["summary"]) if p is not None]
    print(f"{args.video}: {verdict} ({len(summary['windows'])} windows, {summary['timings']['total']:.1f} s); "
          f"wrote {', '.join(wrote)}")
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    from refavs.inference.batch import read_batch_csv, run_batch  # pulls in torch
    from refavs.inference.pipeline import RefAVSPipeline, resolve_checkpoint, sampling_for  # pulls in torch
    from refavs.inference.video import check_start, decode_video  # pulls in numpy
    from refavs.models.checkpoint import load_config  # pulls in torch

    check_start(args.start)
    rows = read_batch_csv(args.csv)
    folder = resolve_checkpoint(args.checkpoint)
    sampling = sampling_for(load_config(folder))
    pipes: list[RefAVSPipeline] = []  # built on the first row that needs it

    def predict(row, start, out):
        began = time.perf_counter()
        clip = decode_video(row.video, start=start, allow_silent=args.allow_silent, config=sampling)
        decoded = time.perf_counter() - began
        if not pipes:
            pipes.append(RefAVSPipeline.from_pretrained(folder, device=_device(args.device)))
        result = pipes[0](clip, row.expression)
        result.timings["decode"] = decoded
        result.save(out, overlay_format=args.overlay_format)
        return result.summary()

    args.out.mkdir(parents=True, exist_ok=True)
    report = run_batch(rows, args.out, folder, sampling.num_frames, predict, default_start=args.start,
                       overwrite=args.overwrite, progress=not args.no_progress and sys.stderr.isatty(),
                       csv_path=str(args.csv))
    counts = report.counts()
    print(f"{len(report.rows)} rows: {counts['written']} written, {counts['skipped']} skipped (already complete), "
          f"{counts['failed']} failed; index {args.out / 'summary.json'}")
    return 1 if counts["failed"] else 0
