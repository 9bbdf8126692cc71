"""Benchmark: one epoch of dataset iteration with the feature cache vs recomputing encoders per sample.

On a synthetic dataset in the official layout (written with ``refavs.data.writer``), same run:

- ``extract``: ``extract_features`` for every split (the one-off cost; encoder loading excluded
  and reported apart), then the media cache (frames + masks) likewise.
- ``cached``: one epoch of ``RefAVSDataset`` over every expression through a DataLoader
  (batch 2, no workers), reading audio/text features, frames and masks from the cache.
- ``cached_features_only``: the same without the media cache (frames and masks decoded
  from JPEG/PNG each item, features from the cache).
- ``recompute``: the reference way: each item decodes its frames and masks and runs the
  audio and text encoders on its own wav and expression.

Each epoch is repeated until 2 s have passed and the mean is taken (a cached epoch of 48
items lasts well under 0.1 s, too short to time once on a shared machine). ``speedup`` is
recompute time / cached time; ``speedup_features_only`` compares with the cache of audio and
text features alone (frames and masks decoded in both), which isolates the encoders' share.

Run: ``.venv/bin/python benchmarks/features.py [--clips 24] [--config tiny] [--vggish]``.
The last line printed is one JSON object with ``cached_clips_per_s``,
``recompute_clips_per_s``, ``speedup`` (goal >= 20), ``extract_clips_per_s`` and the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(root: Path, clips: int, frame_size: int, seed: int = 0) -> int:
    """``clips`` clips over train/val/test_s/test_u, two expressions each; returns the expression count."""
    from refavs.data.layout import NUM_FRAMES, DatasetLayout
    from refavs.data.records import Expression
    from refavs.data.writer import write_audio, write_frames, write_masks, write_metadata

    layout = DatasetLayout(root)
    rng = np.random.default_rng(seed)
    splits = ("train", "val", "test_s", "test_u")
    words = ["dog", "drum", "guitar", "cat", "piano", "bell", "violin", "car"]
    rows = []
    yy, xx = np.mgrid[:frame_size, :frame_size]
    for i in range(clips):
        vid = f"synth{i:04d}_0_10000"
        base = rng.integers(0, 255, size=(1, 1, 1, 3))
        noise = rng.integers(-30, 30, size=(NUM_FRAMES, frame_size, frame_size, 3))
        frames = np.clip(base + noise + (xx[None, :, :, None] % 64), 0, 255).astype(np.uint8)
        write_frames(layout, vid, frames)
        t = np.arange(10 * 16_000) / 16_000
        tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.size)
        write_audio(layout, vid, tone.astype(np.float32))
        for fid in range(2):
            c = frame_size // 4 + fid * frame_size // 2
            masks = ((yy - c) ** 2 + (xx - c) ** 2 < (frame_size // 6) ** 2)[None].repeat(NUM_FRAMES, 0)
            write_masks(layout, vid, fid, masks)
            a, b = rng.choice(words, 2, replace=False)
            rows.append(Expression(vid, f"{vid}_{a}_{fid}", splits[i % len(splits)], fid,
                                   f"the {a} that sounds {'first' if fid == 0 else 'after the'} {b}"))
    write_metadata(layout.metadata, rows)
    return len(rows)


class LiveFeatures:
    """The reference's way: run the encoders inside ``__getitem__`` for every sample."""

    def __init__(self, layout, audio, text):
        self.layout, self.audio_encoder, self.text_encoder = layout, audio, text

    def audio(self, folder: str) -> np.ndarray:
        return self.audio_encoder.embed_files([self.layout.audio(folder)])[0].numpy()

    def text_of(self, expression: str):
        feats, mask = self.text_encoder.encode([expression])
        return feats[0].numpy(), mask[0].numpy()


def epoch(dataset, batch_size: int = 2, min_seconds: float = 0.0) -> float:
    """Seconds for one pass over ``dataset`` through a DataLoader (the mean of as many passes as
    fit in ``min_seconds``, at least one, so that a fast epoch is not timed on a few milliseconds)."""
    from torch.utils.data import DataLoader

    from refavs.data.dataset import collate

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    start = time.perf_counter()
    passes = 0
    while True:
        n = 0
        for batch in loader:
            n += len(batch)
        assert n == len(dataset)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / passes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="synthetic clips (two expressions each)")
    parser.add_argument("--frame-size", type=int, default=256, help="side of the synthetic JPEG frames")
    parser.add_argument("--config", default="tiny", help="feature preset that needs no download (tiny)")
    parser.add_argument("--vggish", action="store_true", help="also time a random-weights VGGish")
    parser.add_argument("--workdir", type=Path, help="keep the synthetic dataset here (default: a temp folder)")
    args = parser.parse_args(argv)

    import torch

    from refavs.data.dataset import RefAVSDataset
    from refavs.data.layout import DatasetLayout
    from refavs.features.audio.encoder import build_audio_featurizer
    from refavs.features.cache import FeatureStore, extract_features
    from refavs.features.config import get_feature_config
    from refavs.features.text import TextEncoder

    result: dict = {"config": args.config, "clips": args.clips, "frame_size": args.frame_size,
                    "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or Path(tmp)) / "synth"
        start = time.perf_counter()
        n_items = make_dataset(root, args.clips, args.frame_size)
        result["expressions"] = n_items
        result["make_dataset_s"] = round(time.perf_counter() - start, 2)
        config = get_feature_config(args.config)

        start = time.perf_counter()
        audio = build_audio_featurizer(config.audio)
        text = TextEncoder(config.text)
        result["encoder_load_s"] = round(time.perf_counter() - start, 2)

        report = extract_features(root, config, progress=False, audio_source=audio, text_source=text)
        result["extract_s"] = round(report.seconds, 3)
        result["extract_clips_per_s"] = round(args.clips / report.seconds, 2)
        media = extract_features(root, config, progress=False, media=True)
        result["media_extract_s"] = round(media.seconds, 3)
        result["media_extract_clips_per_s"] = round(args.clips / media.seconds, 2)

        splits = ["train", "val", "test_s", "test_u"]
        store = FeatureStore.open(root, config)
        cached = RefAVSDataset(root, splits, store, image=config.image)
        features_only = RefAVSDataset(root, splits, store, image=config.image, use_media_cache=False)
        live = RefAVSDataset(root, splits, LiveFeatures(DatasetLayout(root), audio, text), image=config.image,
                             use_media_cache=False, check_features=False)
        epoch(cached)  # warm the page cache and lazy imports alike for every variant
        live[0]
        t_cached = epoch(cached, min_seconds=2.0)
        t_features_only = epoch(features_only, min_seconds=2.0)
        t_live = epoch(live, min_seconds=2.0)
        result["cached_clips_per_s"] = round(n_items / t_cached, 2)
        result["cached_features_only_clips_per_s"] = round(n_items / t_features_only, 2)
        result["recompute_clips_per_s"] = round(n_items / t_live, 2)
        result["speedup"] = round(t_live / t_cached, 2)
        result["speedup_features_only"] = round(t_live / t_features_only, 2)

        if args.vggish:
            vconfig = get_feature_config("vggish-random")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vggish = build_audio_featurizer(vconfig.audio)
            paths = [DatasetLayout(root).audio(f"synth{i:04d}_0_10000") for i in range(args.clips)]
            start = time.perf_counter()
            for i in range(0, len(paths), 8):
                vggish.embed_files(paths[i:i + 8])
            result["vggish_random_extract_clips_per_s"] = round(args.clips / (time.perf_counter() - start), 2)
            start = time.perf_counter()
            for p in paths[:8]:
                vggish.embed_files([p])
            result["vggish_random_per_sample_clips_per_s"] = round(8 / (time.perf_counter() - start), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
