"""Benchmark: where the time of the ``lite`` feature pass goes, per clip, on a dataset's clips.

Runs each cache kind's own chunk computation (:mod:`refavs.features.cache.kinds`) on the first
``--clips`` media folders of a split of a dataset in the official layout (a finished main job's
``DEMO/data``), writing nothing: frame decoding (JPEG -> 160 px), the backbone
(EfficientNet-Lite0 with folded batch norms and channels-last weights) at several frame batches
(in turn, ``--rounds`` times, the fastest round of each), the 8-bit quantisation, the audio
(log-mel), the text (MiniLM, per distinct sentence), the target masks, the plug-in kinds
(Synth's sounding masks) and the frame-file digest that finds copied folders
(:func:`refavs.features.cache.kinds.frames_digest`). One torch thread by default.

Run: ``.venv/bin/python benchmarks/features_pass.py --data-dir runs/demo/data [--split train]
[--clips 64] [--threads 1]``. The last line printed is one JSON object: milliseconds per clip
(per distinct sentence for ``text``, per object for ``masks``; ``text_load_s`` in seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("runs/demo/data"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--frame-batches", type=int, nargs="+", default=[5, 10, 40], help="frames per backbone call")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the frame batches (the fastest counts)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from refavs.data.frames import load_clip_frames
    from refavs.data.layout import DatasetLayout
    from refavs.data.metadata import read_metadata
    from refavs.features.cache.kinds import (ExtractionContext, cache_kinds, folder_items, frames_digest, mask_items,
                                             text_items)
    from refavs.features.config import get_feature_config
    from refavs.features.visual import BackboneMaps, quantize

    config = get_feature_config("lite")
    layout = DatasetLayout(args.data_dir)
    rows = read_metadata(layout.root, [args.split])
    folders = folder_items(layout, rows)[:args.clips]
    rows = [e for e in rows if layout.resolve_folder(e.uid, e.vid) in set(folders)]
    n = len(folders)
    ms: dict[str, float] = {}

    def timed(name, fn, per):
        t = time.perf_counter()
        out = fn()
        ms[name] = round((time.perf_counter() - t) * 1000 / per, 2)
        return out

    timed("digest", lambda: [frames_digest(layout, f) for f in folders], n)
    clips = timed("decode", lambda: [load_clip_frames(layout, f, config.image.size) for f in folders], n)
    maps = BackboneMaps(config)
    frames = np.concatenate(clips)
    maps.of_frames(frames[:40])  # warm-up
    best: dict[int, float] = {}
    for _ in range(args.rounds):  # the batch sizes in turn, the fastest round of each
        for batch in args.frame_batches:
            maps.config = config.replace(visual=dataclasses.replace(config.visual, batch_size=batch))
            t = time.perf_counter()
            out = maps.of_frames(frames)
            best[batch] = min(best.get(batch, float("inf")), time.perf_counter() - t)
    ms.update({f"backbone_batch{b}": round(s * 1000 / n, 2) for b, s in best.items()})
    stacked = {k: v.reshape(n, -1, *v.shape[1:]) for k, v in out.items()}
    timed("quantize", lambda: [quantize(v) for v in stacked.values()], n)

    ctx = ExtractionContext(layout, config)
    kinds = {k.name: k for k in cache_kinds()}
    audio = kinds["audio"].compute(ctx)
    audio(folders[:2])  # builds the log-mel front end
    timed("audio", lambda: [audio(folders[i:i + 16]) for i in range(0, n, 16)], n)
    t = time.perf_counter()
    text = kinds["text"].compute(ctx)
    ms["text_load_s"] = round(time.perf_counter() - t, 2)
    texts = text_items(rows)[0]
    text(texts[:2])
    timed("text", lambda: [text(texts[i:i + 64]) for i in range(0, len(texts), 64)], len(texts))
    masks = mask_items(layout, rows)
    timed("masks", lambda: [kinds["masks"].compute(ctx)(masks[i:i + 64]) for i in range(0, len(masks), 64)],
          len(masks))
    for name, kind in kinds.items():
        if name not in ("audio", "text", "visual", "frames", "masks") and kind.applies(layout.root, True, True):
            compute = kind.compute(ctx)
            items = kind.items(layout, rows)
            timed(name, lambda: [compute(items[i:i + 16]) for i in range(0, len(items), 16)], max(1, len(items)))
    result = {"split": args.split, "clips": n, "expressions": len(rows), "distinct_texts": len(texts),
              "threads": torch.get_num_threads(), "ms": ms}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
