"""Benchmark: training throughput (clips/s) and peak memory of a model config.

Steps of forward, backward and AdamW on synthetic 10-frame clips of the config's sizes
(``train_step.make_batch``), after a warm-up, until ``--seconds`` have passed; the median step
time gives clips/s. Peak memory is the process's maximum resident set on the CPU
(``ru_maxrss``) and ``torch.cuda.max_memory_allocated`` on a GPU. On a GPU the run is repeated
with mixed precision (``--precisions no bf16`` by default; fp16 uses a loss scaler).

``--expressions-per-clip K`` (default 2, as Ref-AVS Synth ``small``; 0 skips it) also times the
same batch made of ``batch / K`` clips with K expressions each, once with the clip ids given
(the pixel-level module runs once per clip, as ``refavs train`` does with ``batch_by_clip``)
and once without (once per expression), in the same run: ``shared_clips`` in the JSON.

Run: ``.venv/bin/python benchmarks/train.py [--config tiny] [--batch 2] [--device cpu]``, or on a
GPU ``benchmarks/train.py --config paper --device cuda`` (the paper config downloads the Swin-B
ADE checkpoint once). The last line is one JSON object: per precision ``step_s``,
``clips_per_s`` and ``peak_memory_mb``, plus the settings and the device name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import make_batch  # noqa: E402 (a sibling benchmark's synthetic batch)


def time_steps(model, batches, device, precision: str, warmup: int, seconds: float) -> list[list[float]]:
    """Training-step times of each batch of ``batches``; their steps alternate, so with several
    batches each sees the same machine load."""
    import torch

    from refavs.training.config import TrainConfig
    from refavs.training.evaluate import autocast
    from refavs.training.trainer import build_optimizer

    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], TrainConfig(lr=1e-4))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    times: list[list[float]] = [[] for _ in batches]
    start = time.perf_counter()
    step = 0
    while step < warmup or time.perf_counter() - start < seconds or len(times[0]) < 3:
        for batch, out in zip(batches, times):
            t = time.perf_counter()
            with autocast(device, precision):
                loss = model(batch).loss
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= warmup:
                out.append(time.perf_counter() - t)
        if step < warmup:
            start = time.perf_counter()
        step += 1
    return times


def clip_batch(batch, k: int):
    """``batch`` with every run of ``k`` expressions sharing the frames of the run's first, and
    clip ids that say so (the expressions keep their own text and masks)."""
    first = [i - i % k for i in range(len(batch))]
    return dataclasses.replace(batch, pixel_values=batch.pixel_values[first].clone(), audio=batch.audio[first].clone(),
                               clips=[f"clip{i}" for i in first])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="named model config (default tiny)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step (default 2)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=("no", "bf16", "fp16"),
                        help="mixed-precision settings to run (default: no, plus bf16 on a GPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed length per precision (default 20)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--expressions-per-clip", type=int, default=2,
                        help="also time batches of whole clips with this many expressions each (0: skip)")
    args = parser.parse_args(argv)
    k = args.expressions_per_clip
    if k < 0 or (k and args.batch % k):
        parser.error(f"--expressions-per-clip {k} must divide --batch {args.batch} (or be 0)")

    import torch

    from refavs.models.config import get_model_config
    from refavs.models.eemc import EEMC

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precisions = args.precisions or (["no", "bf16"] if device.type == "cuda" else ["no"])
    torch.manual_seed(0)
    model = EEMC(get_model_config(args.config)).to(device).train()
    batch = make_batch(model.config, args.batch).to(device)
    results = {}
    for precision in precisions:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        (times,) = time_steps(model, [batch], device, precision, args.warmup, args.seconds)
        step_s = statistics.median(times)
        peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results[precision] = {"step_s": round(step_s, 4), "clips_per_s": round(args.batch / step_s, 2),
                              "peak_memory_mb": round(peak, 1), "steps": len(times)}
        print(f"{args.config} {precision}: {step_s:.3f} s/step, {args.batch / step_s:.2f} clips/s, "
              f"peak {peak:.0f} MB ({len(times)} steps)")
    shared = None
    if k:
        grouped = clip_batch(batch, k)
        ungrouped = dataclasses.replace(grouped, clips=None)
        per_clip, per_expression = map(statistics.median, time_steps(model, [grouped, ungrouped], device, "no",
                                                                     args.warmup, 2 * args.seconds))
        shared = {"expressions_per_clip": k, "step_s": round(per_clip, 4),
                  "per_expression_step_s": round(per_expression, 4), "speedup": round(per_expression / per_clip, 2)}
        print(f"{args.config} batch of {args.batch // k} clips x {k} expressions: {per_clip:.3f} s/step with the "
              f"pixel-level module once per clip, {per_expression:.3f} s once per expression "
              f"({per_expression / per_clip:.2f}x)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(json.dumps({"config": args.config, "batch": args.batch, "frames": model.config.fusion.num_frames,
                      "device": name, "torch": torch.__version__, "results": results, "shared_clips": shared}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
