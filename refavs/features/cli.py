"""``refavs features``: extract and cache the audio and text features of a dataset."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from refavs.data.layout import SPLITS
from refavs.data.masks import MediaError
from refavs.data.metadata import MetadataError
from refavs.features.config import FEATURE_PRESETS, get_feature_config

PROG = "refavs features"
MIB = 1 << 20
"""Bytes in a mebibyte (the verification's report)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features", help="extract audio and text features once into a cache",
        description="Extract the audio features of every clip and the text features of every expression "
                    "of a dataset, once, into a cache keyed by the encoders and their settings "
                    "(<data-dir>/.refavs_cache/ unless --cache-dir). Resumable: an interrupted run "
                    "continues where it stopped; a finished split is skipped. Exit status: 0 done, "
                    "1 a file or the metadata could not be used, 2 bad arguments.")
    p.add_argument("--data-dir", type=Path, required=True, help="the dataset folder (holds metadata.csv)")
    p.add_argument("--config", default="tiny", choices=sorted(FEATURE_PRESETS),
                   help="feature preset: paper (VGGish + distilroberta, downloads weights once), "
                        "tiny (log-mel + packaged MiniLM, offline), vggish-random (tests); default tiny")
    p.add_argument("--vggish-weights", metavar="PATH_OR_URL",
                   help="VGGish state dict (torch port, e.g. a downloaded vggish-10086976.pth) instead of "
                        "the preset's URL")
    p.add_argument("--vggish-pca", metavar="PATH_OR_URL",
                   help="VGGish PCA parameters (e.g. vggish_pca_params-970ea276.pth) instead of the preset's URL")
    p.add_argument("--text-model", metavar="NAME_OR_PATH",
                   help="Hugging Face text encoder (hub name, local folder or package:<pkg>/<folder>) "
                        "instead of the preset's")
    p.add_argument("--splits", nargs="+", choices=SPLITS, metavar="S",
                   help=f"extract only these splits ({', '.join(SPLITS)}); default: all present")
    p.add_argument("--cache-dir", type=Path, help="keep the cache here instead of inside the dataset")
    p.add_argument("--batch-size", type=int, default=16,
                   help="clips per audio encoder call and per cache chunk (default 16)")
    p.add_argument("--text-batch-size", type=int,
                   help="expressions per text encoder call (default: the preset's, 64)")
    p.add_argument("--media", action="store_true",
                   help="also cache decoded, resized frames (uint8) and bit-packed target masks, so training "
                        "decodes no JPEG/PNG (disk: 10 x size x size x 3 bytes per clip)")
    p.add_argument("--verify", action="store_true",
                   help="compare every cached array file of the preset (these splits, every kind on disk) "
                        "with the size and checksum its index records, name each damaged one and extract "
                        "its split again (without --verify only sizes are compared)")
    p.add_argument("--device", default="cpu", help="torch device for the encoders (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refavs.features.cache import FeatureCacheError, extract_features  # pulls in torch
    from refavs.features.text import TextEncoderError  # pulls in torch

    def fail(message: str, status: int) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return status

    if not args.data_dir.is_dir():
        return fail(f"--data-dir {args.data_dir} is not a folder", 2)
    if not (args.data_dir / "metadata.csv").is_file():
        return fail(f"--data-dir {args.data_dir} holds no metadata.csv", 2)
    if args.batch_size < 1:
        return fail("--batch-size must be at least 1", 2)
    if args.text_batch_size is not None and args.text_batch_size < 1:
        return fail("--text-batch-size must be at least 1", 2)
    config = get_feature_config(args.config)
    text_changes = {k: v for k, v in (("batch_size", args.text_batch_size), ("model", args.text_model)) if v}
    audio_changes = {k: v for k, v in (("vggish_weights", args.vggish_weights), ("vggish_pca", args.vggish_pca)) if v}
    if audio_changes and config.audio.encoder != "vggish":
        return fail(f"--vggish-weights/--vggish-pca need a VGGish preset; {args.config} uses "
                    f"{config.audio.encoder}", 2)
    config = config.replace(text=dataclasses.replace(config.text, **text_changes),
                            audio=dataclasses.replace(config.audio, **audio_changes))
    try:
        report = extract_features(args.data_dir, config, args.splits, args.cache_dir, args.batch_size,
                                  args.device, progress=not args.no_progress and sys.stderr.isatty(),
                                  media=args.media, verify=args.verify)
    except (MediaError, MetadataError, FeatureCacheError, TextEncoderError) as err:
        return fail(str(err), 1)
    except (OSError, ValueError) as err:  # weights that cannot be fetched or read; a full disk, an I/O error
        return fail(str(err), 1)
    if report.check is not None:
        check = report.check
        print(f"verified {check.files} cached files, {check.bytes / MIB:.1f} MiB in {check.seconds:.2f} s: "
              f"{len(check.damaged)} damaged" + (f"; {len(check.unverified)} split folder(s) hold no checksums "
                                                 "(read as they are)" if check.unverified else ""))
    for damage in report.damaged:
        action = ("its index removed; run again with --media to extract it" if damage in report.removed
                  else "extracted again")
        print(f"damaged: {damage}; {action}")
    for split, info in report.splits.items():
        print(f"{split:7s} {info['clips']:6d} clips ({info['clips_computed']} extracted), "
              f"{info['expressions']:6d} expressions ({info['texts_computed']} extracted)")
    print(f"audio features: {report.paths.audio}")
    print(f"text features:  {report.paths.text}")
    if args.media:
        print(f"frames:         {report.paths.frames}")
        print(f"masks:          {report.paths.masks}")
    print(f"done in {report.seconds:.1f} s")
    return 0
