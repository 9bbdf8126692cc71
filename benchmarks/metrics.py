"""Benchmark: J + F + S over 1,000 frames at 256x256, vectorised accumulator vs a plain loop.

Both run in the same process on the same data: ``RefAVSMetrics`` (histogram over the
threshold grid, one pass per chunk of frames) and ``refavs.metrics.naive.naive_scores``
(per frame, per threshold, written from the definition). The data imitate predictions: an
ellipse of ground truth per frame (none in 10% of frames) and probabilities that are a noisy,
shifted, soft copy of it. Checks the two agree to 1e-6.

Run: ``.venv/bin/python benchmarks/metrics.py [--frames 1000] [--threads N]``. The last line is one
JSON object with ``vectorised_s``, ``loop_s``, ``speedup`` (goal >= 20 on a 2-core CPU) and
``max_abs_diff``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_data(frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[frames, size, size]`` probabilities and bool masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    cy, cx = rng.uniform(0.25, 0.75, (2, frames, 1, 1)).astype(np.float32)
    ry, rx = rng.uniform(0.08, 0.3, (2, frames, 1, 1)).astype(np.float32)
    dist = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    masks = dist < 1.0
    masks[rng.random(frames) < 0.1] = False
    shift = rng.uniform(-0.3, 0.3, (frames, 1, 1)).astype(np.float32)
    logits = np.clip(4.0 * (1.0 - dist - shift) + rng.normal(0, 1.0, dist.shape), -30, 30).astype(np.float32)
    probs = 1.0 / (1.0 + np.exp(-logits))
    return torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from refavs.metrics import RefAVSMetrics
    from refavs.metrics.naive import naive_scores

    probs, masks = make_data(args.frames, args.size)
    clips = probs.view(-1, 1, args.size, args.size), masks.view(-1, 1, args.size, args.size)

    start = time.perf_counter()
    metrics = RefAVSMetrics()
    metrics.update(*clips, logits=False)
    fast = metrics.compute()
    vectorised_s = time.perf_counter() - start

    start = time.perf_counter()
    j, f, s = naive_scores(probs, masks)
    loop_s = time.perf_counter() - start

    diff = max(abs(fast.J - j), abs(fast.F - f), abs(fast.S - s))
    print(f"{args.frames} frames at {args.size}x{args.size}, torch threads {torch.get_num_threads()}")
    print(f"vectorised: J {fast.J:.6f} F {fast.F:.6f} S {fast.S:.6f} in {vectorised_s:.3f} s")
    print(f"loop:       J {j:.6f} F {f:.6f} S {s:.6f} in {loop_s:.3f} s")
    if diff > 1e-6:
        raise SystemExit(f"the implementations disagree by {diff:.3g} (> 1e-6)")
    print(json.dumps({"frames": args.frames, "vectorised_s": round(vectorised_s, 4), "loop_s": round(loop_s, 3),
                      "speedup": round(loop_s / vectorised_s, 1), "max_abs_diff": diff}))


if __name__ == "__main__":
    main()
