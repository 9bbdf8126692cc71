"""Benchmark: training throughput (clips/s) and peak memory of a model config.

Steps of forward, backward and AdamW on synthetic 10-frame clips of the config's sizes, after
a warm-up, until ``--seconds`` have passed; the median step time gives clips/s (a clip is one
expression of 10 frames). The synthetic batch is what the training loop sees: for EEMC
configs (``tiny``, ``paper``) frames, audio, text and masks (``train_step.make_batch``); for
``lite`` no frames but the cached backbone maps (``visual``: random values at the config's
grids, rounded through float16 as the cache stores them), Synth's sounding-object masks
(48x48) and target seconds, and the default batch is the ``lite`` recipe's ``batch_size`` (12;
2 for the other configs). Peak memory is the process's peak resident set on the CPU
(``VmHWM``, else ``ru_maxrss``; it includes the Python/torch baseline, reported apart as
``baseline_memory_mb``: the resident set after the imports, before the model is built) and
``torch.cuda.max_memory_allocated`` on a GPU. Where the device computes bf16 natively (a GPU
that supports it, a CPU with AVX512-BF16 or AMX: ``mixed_precision=auto`` of the recipes) the
run is repeated under bf16 autocast (``--precisions no bf16`` by default; fp16 uses a loss scaler).

``--configs tiny lite`` reports several configs side by side: each runs in its own fresh
subprocess (the peak resident set is per process and never goes down, so one process could
not tell the second config's peak from the first's; ``VmHWM`` is used rather than
``ru_maxrss`` because a child's ``ru_maxrss`` may include its parent's resident set at the
fork), one after the other with the same settings; the last line holds every config's JSON
under ``configs`` plus a ``summary`` of clips/s and peak memory per config. The runs are
sequential, so a machine whose load changes between them skews the comparison; rerun, or
compare on a quiet machine.

``--expressions-per-clip K`` (default 2, as Ref-AVS Synth ``small``; 0 skips it) also times the
same batch made of ``batch / K`` clips with K expressions each, once with the clip ids given
(EEMC's pixel-level module, or ``lite``'s clip-only part, runs once per clip, as ``refavs
train`` does with ``batch_by_clip``) and once without (once per expression), in the same run:
``shared_clips`` in the JSON; where bf16 is run, the batch by clip once more under bf16
(``bf16_step_s``).

For ``lite`` the same run also times the straightforward path against the cache: the same
batch with frames instead of cached maps, so that the frozen backbone runs at every step
(``cached_maps`` in the JSON: both step times and the speedup).

Run: ``.venv/bin/python benchmarks/train.py [--config tiny] [--batch 2] [--device cpu]``,
``benchmarks/train.py --configs tiny lite --seconds 30``, or on a GPU
``benchmarks/train.py --config paper --device cuda`` (the paper config downloads the Swin-B
ADE checkpoint once). The last line is one JSON object: per precision ``step_s``,
``clips_per_s`` and ``peak_memory_mb``, plus the settings and the device name (with
``--configs``: ``{"configs": {name: that object}, "summary": {name: {...}}, ...}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import make_batch  # noqa: E402 (a sibling benchmark's synthetic batch)


def is_lite(config) -> bool:
    return getattr(config, "architecture", None) == "lite"


def default_batch(name: str) -> int:
    """Clips per step when ``--batch`` is not given: the ``lite`` recipe's batch size, else 2."""
    if name == "lite":
        from refavs.training.config import get_train_config

        return get_train_config("lite").batch_size
    return 2


def make_lite_batch(config, batch: int, seed: int = 0):
    """A synthetic batch as the ``lite`` training loop gets it from the feature cache: no frames,
    backbone maps (and the refinement's guide) at the config's grids (float16 values as float32), audio, text, masks,
    sounding-object masks and target seconds."""
    import torch

    from refavs.data.batch import ClipBatch
    from refavs.data.labels import SOUNDING, TARGET_SECONDS
    from refavs.synth.labels import SOUNDING_SIZE

    g = torch.Generator().manual_seed(seed)
    t, tokens = config.num_frames, config.text_tokens
    text_mask = torch.ones(batch, tokens, dtype=torch.bool)
    text_mask[:, tokens // 2:] = False
    visual = {name: torch.randn(batch, t, *shape, generator=g).half().float()
              for name, shape in config.visual_maps.items()}
    return ClipBatch(
        pixel_values=None,
        audio=torch.randn(batch, t, config.audio_dim, generator=g),
        text=torch.randn(batch, tokens, config.text_dim, generator=g),
        text_mask=text_mask,
        masks=(torch.rand(batch, t, config.mask_size, config.mask_size, generator=g) > 0.5).float(),
        uids=[f"clip{i}" for i in range(batch)],
        clips=[f"clip{i}" for i in range(batch)],
        visual=visual,
        targets={SOUNDING: (torch.rand(batch, t, SOUNDING_SIZE, SOUNDING_SIZE, generator=g) > 0.5).float(),
                 TARGET_SECONDS: (torch.rand(batch, t, generator=g) > 0.5).float()})


def synthetic_batch(config, batch: int):
    return make_lite_batch(config, batch) if is_lite(config) else make_batch(config, batch)


def _status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_mb() -> float:
    """The process's resident set now, in MB (0 where ``/proc`` is missing)."""
    return _status_mb("VmRSS") or 0.0


def peak_resident_mb() -> float:
    """The process's peak resident set in MB: ``VmHWM``, the high-water mark of this process's own
    memory (reset by ``exec``), else ``ru_maxrss``, which in a child started by ``exec`` may also
    count the parent's resident set at the fork."""
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    shared = {"audio": batch.audio[first].clone(), "clips": [f"clip{i}" for i in first]}
    if batch.pixel_values is not None:
        shared["pixel_values"] = batch.pixel_values[first].clone()
    if batch.visual is not None:
        shared["visual"] = {name: v[first].clone() for name, v in batch.visual.items()}
    return dataclasses.replace(batch, **shared)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="named model config (default tiny)")
    parser.add_argument("--configs", nargs="+", default=None, metavar="CONFIG",
                        help="several configs side by side, each in its own subprocess (e.g. tiny lite)")
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per step (default: 12, the recipe's, for lite; 2 otherwise)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=("no", "bf16", "fp16"),
                        help="mixed-precision settings to run (default: no, plus bf16 where the device has it natively)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed length per precision (default 20)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--expressions-per-clip", type=int, default=2,
                        help="also time batches of whole clips with this many expressions each (0: skip)")
    args = parser.parse_args(argv)
    if args.configs and len(args.configs) > 1:
        return compare(args, argv if argv is not None else sys.argv[1:])
    if args.configs:
        args.config = args.configs[0]
    if args.batch is None:
        args.batch = default_batch(args.config)
    k = args.expressions_per_clip
    if k < 0 or (k and args.batch % k):
        parser.error(f"--expressions-per-clip {k} must divide --batch {args.batch} (or be 0)")

    import torch

    from refavs.models.build import build_model
    from refavs.models.registry import get_model_config

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from refavs.training.evaluate import resolve_precision

    # bf16 beside float32 where the device has it natively (what the lite recipe's auto takes)
    precisions = args.precisions or (["no", "bf16"] if resolve_precision("auto", device) == "bf16" else ["no"])
    torch.manual_seed(0)
    baseline = resident_mb()
    model = build_model(get_model_config(args.config)).to(device).train()
    lite = is_lite(model.config)
    batch = synthetic_batch(model.config, args.batch).to(device)
    results = {}
    for precision in precisions:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        (times,) = time_steps(model, [batch], device, precision, args.warmup, args.seconds)
        step_s = statistics.median(times)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_resident_mb()
        results[precision] = {"step_s": round(step_s, 4), "clips_per_s": round(args.batch / step_s, 2),
                              "peak_memory_mb": round(peak, 1), "steps": len(times)}
        print(f"{args.config} {precision}: {step_s:.3f} s/step, {args.batch / step_s:.2f} clips/s, "
              f"peak {peak:.0f} MB ({len(times)} steps)")
    shared = cache = None
    if lite:  # the straightforward path: the frozen backbone run on the frames at every step
        size = model.config.image_size
        frames = torch.randn(args.batch, model.config.num_frames, 3, size, size, generator=torch.Generator().manual_seed(1))
        from_frames = dataclasses.replace(batch, pixel_values=frames.to(device), visual=None)
        cached_s, frames_s = map(statistics.median, time_steps(model, [batch, from_frames], device, "no",
                                                               args.warmup, 2 * args.seconds))
        cache = {"step_s": round(cached_s, 4), "from_frames_step_s": round(frames_s, 4),
                 "speedup": round(frames_s / cached_s, 2)}
        print(f"{args.config}: {cached_s:.3f} s/step on cached backbone maps, {frames_s:.3f} s running the backbone "
              f"on the frames ({frames_s / cached_s:.2f}x)")
    if k:
        grouped = clip_batch(batch, k)
        ungrouped = dataclasses.replace(grouped, clips=None)
        per_clip, per_expression = map(statistics.median, time_steps(model, [grouped, ungrouped], device, "no",
                                                                     args.warmup, 2 * args.seconds))
        shared = {"expressions_per_clip": k, "step_s": round(per_clip, 4),
                  "per_expression_step_s": round(per_expression, 4), "speedup": round(per_expression / per_clip, 2)}
        print(f"{args.config} batch of {args.batch // k} clips x {k} expressions: {per_clip:.3f} s/step with the "
              f"clip-only part once per clip, {per_expression:.3f} s once per expression "
              f"({per_expression / per_clip:.2f}x)")
        if "bf16" in results:  # the recipe's batch under the recipe's precision (lite: auto)
            (bf16_times,) = time_steps(model, [grouped], device, "bf16", args.warmup, args.seconds)
            shared["bf16_step_s"] = round(statistics.median(bf16_times), 4)
            print(f"{args.config} batch of {args.batch // k} clips x {k} expressions under bf16: "
                  f"{shared['bf16_step_s']:.3f} s/step ({per_clip / shared['bf16_step_s']:.2f}x float32)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    counts = model.parameter_counts()
    print(json.dumps({"config": args.config, "batch": args.batch, "frames": model.config.num_frames,
                      "device": name, "torch": torch.__version__, "results": results, "shared_clips": shared,
                      "cached_maps": cache,
                      "baseline_memory_mb": round(baseline, 1), "trainable_parameters": counts["trainable"],
                      "memory": "cuda max_memory_allocated" if device.type == "cuda" else "peak resident set",
                      "inputs": "cached backbone maps" if lite else "frames"}))
    return 0


def _without_configs(argv: list[str]) -> list[str]:
    """``argv`` less ``--config X`` and ``--configs X Y ...`` (each child gets its own ``--config``)."""
    out, skip = [], False
    for arg in argv:
        if skip and not arg.startswith("-"):
            continue
        skip = False
        if arg in ("--config", "--configs"):
            skip = True
            continue
        if arg.startswith(("--config=", "--configs=")):
            continue
        out.append(arg)
    return out


def compare(args, argv: list[str]) -> int:
    """Run every config of ``--configs`` in its own subprocess; print their JSON side by side."""
    rest = _without_configs(list(argv))
    runs = {}
    for name in args.configs:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--config", name, *rest]
        print(f"running {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1]:
            print(line)
        if proc.returncode or not lines:
            print(f"{name}: benchmark failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode or 1
        runs[name] = json.loads(lines[-1])
    summary = {}
    for name, run in runs.items():
        result = run["results"].get("no") or next(iter(run["results"].values()))
        on_cpu = run["memory"] == "peak resident set"
        summary[name] = {"batch": run["batch"], "clips_per_s": result["clips_per_s"], "step_s": result["step_s"],
                         "peak_memory_mb": result["peak_memory_mb"], "baseline_memory_mb": run["baseline_memory_mb"],
                         "memory_growth_mb": round(result["peak_memory_mb"] - run["baseline_memory_mb"], 1)
                         if on_cpu else None}
    for name, row in summary.items():
        growth = "" if row["memory_growth_mb"] is None else f" (+{row['memory_growth_mb']:.0f} MB over the imports)"
        print(f"{name:>8}: batch {row['batch']}, {row['clips_per_s']} clips/s, peak {row['peak_memory_mb']:.0f} MB"
              f"{growth}", file=sys.stderr)
    print(json.dumps({"configs": runs, "summary": summary,
                      "memory": "each config's own subprocess: peak resident set (VmHWM) on a CPU, "
                                "torch.cuda.max_memory_allocated on a GPU"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
