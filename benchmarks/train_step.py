"""Benchmark: one EEMC training step, this model against the reference way of running it.

The models are the same EEMC (same config, same weights) and differ in one switch,
``compat.visual_tokens_from``:

- ``shared_pass`` (this model): the pixel-level module (Swin backbone + pixel decoder) runs once
  per step; the visual tokens come from the backbone's last stage of that same pass.
- ``separate_pass`` (the reference way): before the real pass, the whole Mask2Former runs once
  more without the prompt and only its backbone's last-stage map is kept, as the reference's
  first ``model_v(...)`` call does. Its pixel-level module thus runs twice per step.
- ``separate_pixel_pass`` (the narrowest reading of "twice"): only the pixel-level module runs
  a second time. Reported as well, so the share of the extra decoder call is visible.

A step is forward, backward and an AdamW step on a synthetic batch of 10-frame clips (random
frames, features and 0/1 targets of the config's sizes). After a warm-up, steps of the models
alternate until ``--seconds`` have passed, so all see the same machine load; the median step
time of each is reported.

Run: ``.venv/bin/python benchmarks/train_step.py [--config tiny] [--batch 2] [--seconds 30]``.
The last line printed is one JSON object with ``step_s``, ``reference_step_s`` and ``speedup``
(reference_step_s / step_s; goal >= 1.6), ``pixel_pass_step_s`` and ``pixel_pass_speedup``,
the median forward, backward and optimiser times of ours and the reference way
(``ours_forward_s``, ...), plus the settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def make_batch(config, batch: int, seed: int = 0):
    import torch

    from refavs.data.batch import ClipBatch

    g = torch.Generator().manual_seed(seed)
    f, s = config.fusion, config.segmenter
    text_mask = torch.ones(batch, f.text_tokens, dtype=torch.bool)
    text_mask[:, f.text_tokens // 2:] = False
    return ClipBatch(
        pixel_values=torch.randn(batch, f.num_frames, 3, s.image_size, s.image_size, generator=g),
        audio=torch.randn(batch, f.num_frames, f.audio_dim, generator=g),
        text=torch.randn(batch, f.text_tokens, f.text_dim, generator=g),
        text_mask=text_mask,
        masks=(torch.rand(batch, f.num_frames, config.mask_size, config.mask_size, generator=g) > 0.5).float(),
        uids=[f"clip{i}" for i in range(batch)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="named model config (default tiny)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step (default 2, as the reference)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed run length in total (default 30)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--verbose", action="store_true", help="print every step time")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="model config overrides, e.g. trainable.train_segmenter=false (the paper's frozen "
                             "Mask2Former)")
    args = parser.parse_args(argv)

    import torch

    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config
    from refavs.training.config import TrainConfig
    from refavs.training.trainer import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    modes = {"ours": "shared_pass", "reference": "separate_pass", "pixel_pass": "separate_pixel_pass"}
    models = {name: EEMC(get_model_config(args.config, [*args.overrides, f"compat.visual_tokens_from={mode}"])).train()
              for name, mode in modes.items()}
    ours = models["ours"]
    for model in models.values():
        model.load_state_dict(ours.state_dict())
    batch = make_batch(ours.config, args.batch)
    runs = {}
    for name, model in models.items():
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad],
                                    TrainConfig(lr=1e-4))  # the trainer's AdamW (fused), for every model
        runs[name] = (model, optimizer, [])

    def step(model, optimizer) -> tuple[float, float, float, float]:
        """(step, forward, backward, optimiser) seconds of one training step."""
        start = time.perf_counter()
        out = model(batch)
        forward = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        return end - start, forward - start, backward - forward, end - backward

    for model, optimizer, _ in runs.values():
        for _ in range(args.warmup):
            step(model, optimizer)
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline or min(len(t) for *_, t in runs.values()) < 3:
        for model, optimizer, times in runs.values():
            times.append(step(model, optimizer))

    if args.verbose:
        for name, (*_, times) in runs.items():
            print(f"{name} step times: {' '.join(f'{t[0]:.3f}' for t in times)}", file=sys.stderr)
    median = {name: statistics.median(t[0] for t in times) for name, (*_, times) in runs.items()}
    phases = {name: [statistics.median(t[i] for t in times) for i in (1, 2, 3)] for name, (*_, times) in runs.items()}
    counts = ours.parameter_counts()
    print(f"config {args.config}: batch {args.batch} clips x {ours.config.fusion.num_frames} frames, "
          f"{counts['trainable']:,} trainable parameters, {torch.get_num_threads()} threads", file=sys.stderr)
    for name, mode in modes.items():
        fwd, bwd, opt = phases[name]
        print(f"{mode:>20} ({name}): median {median[name]:.4f} s over {len(runs[name][2])} steps "
              f"(forward {fwd:.4f}, backward {bwd:.4f}, optimiser {opt:.4f})", file=sys.stderr)
    print(json.dumps({
        "step_s": round(median["ours"], 5), "reference_step_s": round(median["reference"], 5),
        "speedup": round(median["reference"] / median["ours"], 3),
        "pixel_pass_step_s": round(median["pixel_pass"], 5),
        "pixel_pass_speedup": round(median["pixel_pass"] / median["ours"], 3),
        **{f"{name}_{phase}_s": round(value, 5) for name in ("ours", "reference")
           for phase, value in zip(("forward", "backward", "optimizer"), phases[name])},
        "config": args.config, "overrides": args.overrides, "batch": args.batch, "frames": ours.config.fusion.num_frames,
        "steps": len(runs["ours"][2]), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
