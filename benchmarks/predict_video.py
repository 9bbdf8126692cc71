"""Benchmark: ``refavs predict --frames all`` on a whole video (seconds of video per second of work,
peak memory).

The video is generated: ``--seconds`` (default 60; ``--long``: 600) of ``--size`` (640x360) at
``--fps`` (30), H.264 + AAC (libx264 and FFmpeg's AAC encoder, through
:class:`refavs.data.video_writer.VideoStreamWriter`): coloured shapes moving over a slowly
shifting background, and two tones that come and go. The model is ``--checkpoint`` (default
the shipped ``checkpoints/lite-synth-medium``).

The prediction runs in a fresh subprocess, so that its peak memory is its own:
``RefAVSPipeline.from_pretrained`` (``load_s``), then ``pipe.predict_video(video, expression)``
saved with ``save_video_prediction`` (masks as PNGs, or ``--masks``; the overlay with the
audio): ``work_s`` is that, end to end (decoding, the windows, the masks, the overlay, the
summary), and ``realtime_factor`` = ``video_s / work_s`` (above 1: faster than real time).
``peak_rss_mb`` is the subprocess's peak resident memory (``ru_maxrss``), model included.

``--synth N`` measures quality instead: N Ref-AVS Synth ``test_s`` clips (preset ``medium``),
each made into a 30 fps video (``clip_video``: every frame held for its second), run with the
clip's first expression both ways: J of every frame of the whole-video prediction against its
second's ground truth, and J of the 10-frame prediction; the last line gives both means, the
largest difference per clip and how many clips have every frame's mask equal to its second's,
and ``j_blend``: the same frames with the probabilities interpolated between the two nearest
seconds instead of carried.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/predict_video.py [--long] [--threads 2]``.
The last line is one JSON object: ``video_s``, ``frames``, ``realtime_factor``, ``peak_rss_mb``,
``work_s``, ``load_s``, the summary's ``timings`` (``decode`` and ``features`` and ``model`` of
the windows, ``write``: the rest, mostly decoding every frame, drawing and encoding the
overlay), ``windows``, the video's settings and ``threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from refavs.inference.video import probe_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "lite-synth-medium"
EXPRESSION = "the object making the loudest sound"
AUDIO_RATE = 48_000

_RUN_SNIPPET = """
import json, resource, sys, time
import torch
threads = int(sys.argv[5])
if threads:
    torch.set_num_threads(threads)
began = time.perf_counter()
from refavs.inference import RefAVSPipeline
from refavs.inference.whole_video import save_video_prediction
pipe = RefAVSPipeline.from_pretrained(sys.argv[1])
loaded = time.perf_counter()
run = pipe.predict_video(sys.argv[2], sys.argv[4])
paths = save_video_prediction(run, sys.argv[3], masks=sys.argv[6])
done = time.perf_counter()
summary = json.loads(paths["summary"].read_text())
print(json.dumps({"load_s": loaded - began, "work_s": done - loaded, "frames": summary["frame_count"],
                  "windows": len(summary["windows"]), "timings": summary["timings"],
                  "threads": torch.get_num_threads(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_video(path: Path, seconds: float, width: int = 640, height: int = 360, fps: int = 30) -> Path:
    """A generated H.264/AAC video: three shapes moving over a shifting background, two tones
    (440 Hz all along, 660 Hz every other 3 seconds). Streamed: memory does not grow with length."""
    from refavs.data.video_writer import VideoStreamWriter

    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                     np.full_like(xx, 96)], axis=-1).astype(np.int16)
    shapes = [((255, 60, 60), 0.21, 0.3), ((60, 220, 255), 0.13, 0.55), ((250, 230, 60), 0.34, 0.78)]
    side = max(8, height // 6)
    circle = (np.mgrid[0:side, 0:side] - side / 2 + 0.5) ** 2
    disc = circle.sum(axis=0) <= (side / 2) ** 2
    with VideoStreamWriter(path, fps, width, height, audio_rate=AUDIO_RATE, audio_channels=2) as writer:
        for i in range(int(round(seconds * fps))):
            t0, t1 = i / fps, (i + 1) / fps
            t = np.arange(int(round(t0 * AUDIO_RATE)), int(round(t1 * AUDIO_RATE))) / AUDIO_RATE
            high = (np.floor(t / 3) % 2 == 0) * 0.2 * np.sin(2 * np.pi * 660 * t)
            low = 0.2 * np.sin(2 * np.pi * 440 * t)
            writer.write_audio(np.stack([low + high, low + 0.5 * high]).astype(np.float32))
            frame = base.copy()
            frame[..., 2] = (96 + 40 * np.sin(t0 / 4)).astype(np.int16)
            for k, (colour, speed, row) in enumerate(shapes):
                x = int((0.5 + 0.45 * np.sin(t0 * speed * 2 * np.pi + k)) * (width - side))
                y = int(row * (height - side))
                patch = frame[y:y + side, x:x + side]
                if k == 1:
                    patch[disc] = colour
                else:
                    patch[...] = colour
            writer.write_frame(frame.astype(np.uint8))
    return path


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """J of one frame (1 when both are empty)."""
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def blend(probabilities: np.ndarray, when: float) -> np.ndarray:
    """The probabilities at ``when`` seconds interpolated linearly between the two seconds whose
    middles surround it (the alternative to carrying each second's map to its frames)."""
    at = min(max(when - 0.5, 0.0), len(probabilities) - 1.0)
    lo = int(np.floor(at))
    hi = min(lo + 1, len(probabilities) - 1)
    w = at - lo
    return (1 - w) * probabilities[lo] + w * probabilities[hi]


def synth_agreement(clips: int, checkpoint: str, fps: int = 30) -> dict:
    """Per-frame J of the whole-video prediction against the 10-frame prediction's, on Synth test_s."""
    from refavs.data.layout import DatasetLayout
    from refavs.data.masks import load_clip_masks
    from refavs.data.records import Expression
    from refavs.inference import RefAVSPipeline
    from refavs.synth.generate import generate
    from refavs.synth.layout import read_scenes
    from refavs.synth.presets import get_preset
    from refavs.synth.video import clip_video

    pipe = RefAVSPipeline.from_pretrained(checkpoint)
    rows = []
    with tempfile.TemporaryDirectory(prefix="refavs-predict-video-synth-") as tmp:
        root = Path(tmp) / "data"
        generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=clips, test_u=0,
                                                                        test_n=0), workers=1)
        layout = DatasetLayout(root)
        for rec in read_scenes(root):
            e = rec["expressions"][0]
            truth = load_clip_masks(layout, Expression(rec["vid"], e["uid"], "test_s", int(e["target"]),
                                                       e["exp"])).astype(bool)
            video = clip_video(root, rec["folder"], Path(tmp) / "clip.mp4", fps)
            result = pipe(video, e["exp"])
            ten = result.masks
            frames = [(f.time, f.second, f.mask) for f in pipe.predict_video(video, e["exp"])]
            blended = [blend(result.probabilities, when) > result.settings.threshold for when, _, _ in frames]
            rows.append({"uid": e["uid"], "frames": len(frames),
                         "j_frames": float(np.mean([jaccard(m, truth[s]) for _, s, m in frames])),
                         "j_blend": float(np.mean([jaccard(m, truth[s]) for m, (_, s, _) in zip(blended, frames)])),
                         "j_ten": float(np.mean([jaccard(ten[t], truth[t]) for t in range(len(ten))])),
                         "equal": all(np.array_equal(m, ten[s]) for _, s, m in frames)})
    return {"clips": len(rows), "j_frames": float(np.mean([r["j_frames"] for r in rows])),
            "j_ten": float(np.mean([r["j_ten"] for r in rows])),
            "j_blend": float(np.mean([r["j_blend"] for r in rows])),
            "max_abs_diff": max(abs(r["j_frames"] - r["j_ten"]) for r in rows),
            "clips_with_equal_masks": sum(r["equal"] for r in rows), "fps": fps, "checkpoint": checkpoint}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="checkpoint or run folder (default: the shipped checkpoints/lite-synth-medium)")
    parser.add_argument("--long", action="store_true", help="a 10-minute video (--seconds 600)")
    parser.add_argument("--seconds", type=float, default=None, help="video length (default 60, or 600 with --long)")
    parser.add_argument("--size", default="640x360", help="frame size WxH (default 640x360)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the video (default 30)")
    parser.add_argument("--masks", choices=("png", "rle", "none"), default="png", help="mask output (default png)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--video", type=Path, default=None, help="use this video instead of generating one")
    parser.add_argument("--synth", type=int, default=0, metavar="N",
                        help="measure per-frame J against the 10-frame prediction on N Synth test_s clips instead")
    args = parser.parse_args(argv)
    if args.synth:
        result = synth_agreement(args.synth, args.checkpoint)
        print(f"{result['clips']} test_s clips at 30 fps: J per frame {result['j_frames']:.4f}, 10-frame J "
              f"{result['j_ten']:.4f}, interpolated {result['j_blend']:.4f}, largest difference {result['max_abs_diff']:.4f}, "
              f"{result['clips_with_equal_masks']} clips with every mask equal", file=sys.stderr)
        print(json.dumps(result))
        return 0
    seconds = args.seconds or (600.0 if args.long else 60.0)
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="refavs-predict-video-bench-") as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        video = args.video or make_video(tmp / "video.mp4", seconds, width, height, args.fps)
        made = time.perf_counter() - began
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        proc = subprocess.run([sys.executable, "-c", _RUN_SNIPPET, args.checkpoint, str(video), str(tmp / "out"),
                               EXPRESSION, str(args.threads), args.masks], stdout=subprocess.PIPE, text=True,
                              env=env)
        if proc.returncode:
            raise SystemExit(f"the prediction subprocess failed (exit {proc.returncode})")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        info = probe_video(video)
        video_bytes = video.stat().st_size

    video_s = info.duration
    factor = video_s / result["work_s"]
    print(f"{video_s:.0f} s of {info.width}x{info.height} at {info.fps:g} fps: {result['frames']} frames in "
          f"{result['work_s']:.1f} s ({factor:.2f}x real time), peak {result['peak_rss_mb']:.0f} MB, "
          f"load {result['load_s']:.1f} s, {result['threads']} threads", file=sys.stderr)
    print(json.dumps({
        "video_s": round(video_s, 3), "frames": result["frames"], "realtime_factor": round(factor, 3),
        "peak_rss_mb": round(result["peak_rss_mb"], 1), "work_s": round(result["work_s"], 3),
        "load_s": round(result["load_s"], 3), "timings": result["timings"], "windows": result["windows"],
        "threads": result["threads"], "masks": args.masks, "checkpoint": args.checkpoint,
        "video": {"size": [info.width, info.height], "fps": info.fps, "bytes": video_bytes, "codecs": "h264+aac",
                  "generate_s": round(made, 3)},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
