"""Benchmark: scoring a split under several variants in one pass against one evaluation per variant.

On a finished main job's folder (``refavs demo --out DEMO``: its data, feature cache and best
checkpoint), same run, same split, one torch thread by default:

- ``old``: what the main job's evaluation step did per split: ``evaluate`` three times, the
  model as it is (writing its prediction PNGs), then with the audio zeroed, then with the text
  zeroed; each call loads every batch again and runs the whole model on it.
- ``new``: :func:`refavs.training.evaluate.evaluate_variants` with the same three variants:
  each batch loaded once, the unablated and the text-zeroed rows in one forward (the clip path
  once for both), the audio-zeroed rows in a second one (``merge="all"``: ``new_all``, one forward);
  PNGs encoded on a background thread.
- ``png``: what writing the prediction PNGs costs on its own: the unablated ``evaluate`` with
  and without ``save_pred`` (``png_s`` is the difference), and the new path's PNG share.

Both give the same numbers (checked: the largest difference of J, F, S over the variants and
cue groups is printed as ``max_diff``). The order old / new is alternated over ``--repeats``.

Run: ``.venv/bin/python benchmarks/evaluate.py --demo runs/demo [--split test_s] [--limit 300]
[--threads 1] [--mixed-precision no]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path


def trimmed_data(data_dir: Path, split: str, limit: int | None, out: Path) -> Path:
    """``data_dir`` itself, or with ``limit`` a view of it (links) whose metadata.csv holds the
    first ``limit`` rows of ``split``."""
    if not limit:
        return data_dir
    import csv

    out.mkdir(parents=True, exist_ok=True)
    for entry in data_dir.iterdir():
        if entry.name != "metadata.csv":
            (out / entry.name).symlink_to(entry.resolve())
    with open(data_dir / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["split"] == split][:limit]
        fields = reader.fieldnames
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out


def max_difference(a, b) -> float:
    """Largest |difference| of J, F, S over the splits and cue groups of two ScoreReports."""
    worst = 0.0
    for split, sa in a.splits.items():
        sb = b.splits[split]
        pairs = [(sa.result, sb.result)] + [(sa.cues[k], sb.cues[k]) for k in sa.cues]
        for ra, rb in pairs:
            for m in ("J", "F", "S"):
                x, y = getattr(ra, m), getattr(rb, m)
                if not (math.isnan(x) and math.isnan(y)):
                    worst = max(worst, abs(x - y))
    return worst


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished `refavs demo --out` folder")
    parser.add_argument("--split", default="test_s")
    parser.add_argument("--limit", type=int, default=None, help="only the split's first N expressions")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--mixed-precision", default="no")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the lite recipe's eval_batch_size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-png", action="store_true", help="leave out the PNG-cost measurement")
    parser.add_argument("--all", action="store_true", help="also every variant in one forward (merge='all')")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from refavs.features.cache import FeatureStore
    from refavs.features.config import get_feature_config
    from refavs.models.build import load_pretrained
    from refavs.training.config import get_train_config
    from refavs.training.evaluate import evaluate, evaluate_variants

    demo = args.demo
    best = demo / "run" / "best"
    model = load_pretrained(best, device="cpu")
    if args.mixed_precision == "no":
        model = model.float()
    features = get_feature_config(model.config.feature_preset)
    store = FeatureStore.open(demo / "data", features)
    batch = args.batch_size or get_train_config("lite").eval_batch_size
    scratch = Path(tempfile.mkdtemp(prefix="refavs-bench-eval-"))
    try:
        data = trimmed_data(demo / "data", args.split, args.limit, scratch / "data")
        kwargs = dict(batch_size=batch, mixed_precision=args.mixed_precision)
        split = [args.split]
        times: dict[str, list[float]] = {"old": [], "new": [], "new_none": [], "new_all": []}
        diffs = []

        def old(i):
            t = time.perf_counter()
            flat = dict(forward_rows=None, pred_workers=0, **kwargs)  # one forward per batch, PNGs in line
            reports = {None: evaluate(model, data, split, store, features.image, save_pred=scratch / f"old{i}", **flat),
                       "audio": evaluate(model, data, split, store, features.image, ablate="audio", **flat),
                       "text": evaluate(model, data, split, store, features.image, ablate="text", **flat)}
            times["old"].append(time.perf_counter() - t)
            return reports

        def new(i, merge="clip"):
            t = time.perf_counter()
            reports = evaluate_variants(model, data, split, store, features.image, save_pred=scratch / f"{merge}{i}",
                                        merge=merge, **kwargs)
            times["new" if merge == "clip" else f"new_{merge}"].append(time.perf_counter() - t)
            return reports

        for i in range(args.repeats):
            order = (old, new) if i % 2 == 0 else (new, old)
            got = {f.__name__: f(i) for f in order}
            got["none"] = new(i, "none")
            if args.all:
                got["all"] = new(i, "all")
            for other in ("new", "none", "all"):
                if other in got:
                    diffs.append(max(max_difference(got["old"][v], got[other][v]) for v in got["old"]))
            for name in ("old", "clip", "none", "all"):
                shutil.rmtree(scratch / f"{name}{i}", ignore_errors=True)

        png = {}
        if not args.skip_png:  # the unablated pass alone: without PNGs, PNGs in line, PNGs on a thread
            def timed(**kw):
                t = time.perf_counter()
                evaluate(model, data, split, store, features.image, **kwargs, **kw)
                return time.perf_counter() - t
            bare = timed(forward_rows=None)
            inline = timed(forward_rows=None, save_pred=scratch / "png0", pred_workers=0)
            threaded = timed(forward_rows=None, save_pred=scratch / "png1", pred_workers=1)
            chunked = timed()
            png = {"evaluate_s": round(bare, 2), "evaluate_png_inline_s": round(inline, 2),
                   "evaluate_png_thread_s": round(threaded, 2), "png_inline_s": round(inline - bare, 2),
                   "png_thread_s": round(threaded - bare, 2), "evaluate_forward_rows_auto_s": round(chunked, 2)}
        n = sum(1 for line in open(data / "metadata.csv", encoding="utf-8") if f",{args.split}," in line)
        result = {"split": args.split, "expressions": n, "threads": torch.get_num_threads(),
                  "mixed_precision": args.mixed_precision, "batch_size": batch,
                  "old_s": round(min(times["old"]), 2), "new_s": round(min(times["new"]), 2),
                  "new_none_s": round(min(times["new_none"]), 2),
                  **({"new_all_s": round(min(times["new_all"]), 2)} if times["new_all"] else {}),
                  "speedup": round(min(times["old"]) / min(times["new"]), 3),
                  "speedup_none": round(min(times["old"]) / min(times["new_none"]), 3),
                  "max_diff": max(diffs), "png": png}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
