"""Benchmark: training throughput (clips/s) and peak memory of a model config.

Steps of forward, backward and AdamW on synthetic 10-frame clips of the config's sizes
(``train_step.make_batch``), after a warm-up, until ``--seconds`` have passed; the median step
time gives clips/s. Peak memory is the process's maximum resident set on the CPU
(``ru_maxrss``) and ``torch.cuda.max_memory_allocated`` on a GPU. On a GPU the run is repeated
with mixed precision (``--precisions no bf16`` by default; fp16 uses a loss scaler).

Run: ``.venv/bin/python benchmarks/train.py [--config tiny] [--batch 2] [--device cpu]``, or on a
GPU ``benchmarks/train.py --config paper --device cuda`` (the paper config downloads the Swin-B
ADE checkpoint once). The last line is one JSON object: per precision ``step_s``,
``clips_per_s`` and ``peak_memory_mb``, plus the settings and the device name.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import make_batch  # noqa: E402 (a sibling benchmark's synthetic batch)


def time_steps(model, batch, device, precision: str, warmup: int, seconds: float) -> list[float]:
    import torch

    from refavs.training.config import TrainConfig
    from refavs.training.evaluate import autocast
    from refavs.training.trainer import build_optimizer

    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], TrainConfig(lr=1e-4))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    times: list[float] = []
    start = time.perf_counter()
    step = 0
    while step < warmup or time.perf_counter() - start < seconds or len(times) < 3:
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
            times.append(time.perf_counter() - t)
        else:
            start = time.perf_counter()
        step += 1
    return times


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
    args = parser.parse_args(argv)

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
        times = time_steps(model, batch, device, precision, args.warmup, args.seconds)
        step_s = statistics.median(times)
        peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results[precision] = {"step_s": round(step_s, 4), "clips_per_s": round(args.batch / step_s, 2),
                              "peak_memory_mb": round(peak, 1), "steps": len(times)}
        print(f"{args.config} {precision}: {step_s:.3f} s/step, {args.batch / step_s:.2f} clips/s, "
              f"peak {peak:.0f} MB ({len(times)} steps)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(json.dumps({"config": args.config, "batch": args.batch, "frames": model.config.fusion.num_frames,
                      "device": name, "torch": torch.__version__, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
