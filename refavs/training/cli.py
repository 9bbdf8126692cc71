"""``refavs train`` and ``refavs eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from refavs.console import fail as _fail
from refavs.data.layout import SPLITS
from refavs.data.masks import MediaError
from refavs.data.metadata import MetadataError
from refavs.models.registry import MODEL_CONFIGS, get_model_config
from refavs.models.segmenter import SegmenterLoadError
from refavs.scoring.table import format_report
from refavs.training.config import TrainConfig, get_train_config, recipe_for


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``key=value`` items for the training config (its field names) and for the model config (the rest)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"name"}
    train, model = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        (train if key in train_fields else model).append(item)
    return train, model


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an EEMC model (one process, or many under torchrun / accelerate launch)",
        description="Train EEMC on a dataset in the official layout. Features are extracted into the cache "
                    "first when missing. Writes RUN/run.json, RUN/log.jsonl, RUN/checkpoints/, RUN/last and "
                    "RUN/best (best val J). key=value items override the training recipe (its fields: epochs, "
                    "lr, batch_size, mixed_precision, max_steps, ...) or the model config (dotted fields, e.g. "
                    "fusion.num_heads=4). Many GPUs: torchrun --nproc-per-node 8 -m refavs train ...")
    p.add_argument("--config", default="tiny", choices=sorted(MODEL_CONFIGS),
                   help="model config (default tiny; lite: the CPU model of the main job)")
    p.add_argument("--recipe", help="training recipe (default: the one named like the model config's base, "
                                    "paper or tiny)")
    p.add_argument("--data-dir", type=Path, required=True, help="the dataset folder")
    p.add_argument("--out", type=Path, required=True, help="the run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from RUN/last")
    p.add_argument("--trust-old-state", action="store_true",
                   help="with --resume: convert RUN/last's trainer_state.pt, the pickled trainer state of "
                        "older versions, into trainer_state.json + trainer_state.safetensors beside it first. "
                        "Unpickling can run any code the file names: only for a run folder you trust")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the local GPU, else cpu)")
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default: inside the dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe or model config overrides")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint: J, F, S per split, Mix, per cue type",
        description="Evaluate a trained model (a folder with config.json and model.safetensors, e.g. RUN/best) "
                    "on splits of a dataset, with the official metrics.")
    e.add_argument("--checkpoint", type=Path, required=True, help="model folder, e.g. RUN/best")
    e.add_argument("--data-dir", type=Path, required=True, help="the dataset folder")
    e.add_argument("--split", dest="splits", nargs="+", required=True, choices=SPLITS, metavar="S",
                   help=f"splits to evaluate ({', '.join(SPLITS)})")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    e.add_argument("--save-pred", type=Path, metavar="DIR",
                   help="write predictions as DIR/<uid>/<frame>.png (refavs score reads them)")
    e.add_argument("--ablate", choices=("audio", "text", "visual", "other_audio", "mono"),
                   help="zero one input modality, or (other_audio) give each clip another clip's audio, or "
                        "(mono) the same sound from both sides to a model of stereo features")
    e.add_argument("--aggregation", choices=("dataset", "reference"), default="dataset",
                   help="dataset (default) or reference (batches of 4 clips in metadata order)")
    e.add_argument("--batch-size", type=int, default=4, help="clips per batch (default 4, as the reference)")
    e.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when available)")
    e.add_argument("--mixed-precision", choices=("no", "bf16", "fp16", "auto"), default="no",
                   help="autocast: no (default), bf16, fp16 (GPU) or auto (bf16 where the device has it natively)")
    e.add_argument("--cache-dir", type=Path, help="feature cache folder (default: inside the dataset)")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from refavs.features.cache import FeatureCacheError  # pulls in torch
    from refavs.features.text import TextEncoderError  # pulls in torch
    from refavs.models.checkpoint import CheckpointError  # pulls in torch
    from refavs.training.checkpoint import ResumeError  # pulls in torch
    from refavs.training.trainer import TrainingError, train  # pulls in torch

    if args.trust_old_state:
        if not args.resume:
            return _fail("train", "--trust-old-state converts the state of a run to resume: add --resume", 2)
        try:
            _convert_old_state(args.out)
        except (ResumeError, OSError) as err:
            return _fail("train", str(err), 1)
    train_items, model_items = split_overrides(args.overrides)

    recipe = args.recipe or recipe_for(args.config)
    try:
        model_config = get_model_config(args.config, model_items)
        train_config = get_train_config(recipe, train_items)
    except ValueError as err:
        return _fail("train", str(err), 2)
    try:
        result = train(model_config, train_config, args.data_dir, args.out, resume=args.resume, device=args.device,
                       cache_dir=args.cache_dir, progress=not args.no_progress and sys.stderr.isatty())
    except (TrainingError, ResumeError, CheckpointError, FeatureCacheError, MediaError, MetadataError,
            SegmenterLoadError, TextEncoderError, OSError) as err:  # OSError: weights not fetched, a full disk
        return _fail("train", str(err), 1)
    best = "n/a" if result.best_J is None else f"{result.best_J:.4f}"
    print(f"trained {result.global_step} steps in {result.seconds / 60:.1f} min; best val J {best}; "
          f"best checkpoint {result.best}")
    return 0


def _convert_old_state(run_dir: Path) -> None:
    """Convert the pickled trainer state of ``RUN/last`` (``--trust-old-state``) unless already done."""
    from refavs.training.checkpoint import (  # pulls in torch
        OLD_STATE_FILE, STATE_FILE, STATE_TENSORS_FILE, convert_old_state, last_checkpoint)

    checkpoint = last_checkpoint(run_dir)
    if convert_old_state(checkpoint):
        print(f"converted {checkpoint / OLD_STATE_FILE} into {STATE_FILE} + {STATE_TENSORS_FILE}", file=sys.stderr)


def run_eval(args: argparse.Namespace) -> int:
    import torch  # pulls in torch

    from refavs.features.cache import FeatureCacheError  # pulls in torch
    from refavs.models.build import load_pretrained  # pulls in torch
    from refavs.models.checkpoint import CheckpointError  # pulls in torch
    from refavs.training.evaluate import evaluate  # pulls in torch
    from refavs.training.trainer import TrainingError, prepare_features  # pulls in torch

    if args.batch_size < 1:
        return _fail("eval", "--batch-size must be at least 1", 2)
    if not (args.data_dir / "metadata.csv").is_file():
        return _fail("eval", f"{args.data_dir}/metadata.csv not found (--data-dir)", 2)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load_pretrained(args.checkpoint, device=device)
        features, store = prepare_features(args.data_dir, model.config, args.splits, args.cache_dir)
        report = evaluate(model, args.data_dir, args.splits, store, features.image, batch_size=args.batch_size,
                          device=device, aggregation=args.aggregation, ablate=args.ablate,
                          save_pred=args.save_pred, mixed_precision=args.mixed_precision,
                          progress=sys.stderr.isatty() and not args.json)
    except (CheckpointError, TrainingError, FeatureCacheError, MediaError, MetadataError, OSError, ValueError) as err:
        return _fail("eval", str(err), 1)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        title = f"{args.checkpoint}" + (f" (ablated: {args.ablate})" if args.ablate else "")
        print(format_report(report, title=title))
    return 0
