"""``refavs import-reference`` and ``refavs model-info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from refavs.models.registry import MODEL_CONFIGS, get_model_config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-reference", help="convert a checkpoint of the reference implementation",
        description="Map a checkpoint of the reference implementation (GeWu-Lab/Ref-AVS, torch.save of "
                    "REFAVS_Model_Base.state_dict()) onto the EEMC model with the reference switches on, "
                    "and save it with save_pretrained (config.json + model.safetensors). Downloads nothing. "
                    "Exit status: 0 done, 1 the checkpoint does not fit, 2 bad arguments.")
    p.add_argument("checkpoint", type=Path, help="the reference checkpoint (.pth)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the converted model to")
    p.add_argument("--config", default="paper", choices=sorted(MODEL_CONFIGS),
                   help="base model config (the reference switches are added); default paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set fusion.num_heads=8 (repeatable)")
    p.set_defaults(func=run_import)

    q = subparsers.add_parser(
        "model-info", help="print a model config and its parameter counts per group",
        description="Print a named model config (after overrides) as JSON with its parameter counts per "
                    "trainable group. Builds the model without weights; downloads nothing.")
    q.add_argument("config", choices=sorted(MODEL_CONFIGS), help="named model config")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    q.set_defaults(func=run_info)


def run_import(args: argparse.Namespace) -> int:
    from refavs.models.checkpoint import CheckpointError  # pulls in torch
    from refavs.models.reference_import import import_reference  # pulls in torch

    if not args.checkpoint.is_file():
        print(f"refavs import-reference: error: {args.checkpoint} is not a file", file=sys.stderr)
        return 2
    try:
        model = import_reference(args.checkpoint, args.out, base=args.config, overrides=args.overrides)
    except CheckpointError as e:
        print(f"refavs import-reference: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"refavs import-reference: error: {e}", file=sys.stderr)
        return 2
    print(f"imported {args.checkpoint} as config {model.config.name!r} into {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    import torch  # pulls in torch

    from refavs.models.build import build_model  # pulls in torch

    try:
        config = get_model_config(args.config, args.overrides)
    except ValueError as e:
        print(f"refavs model-info: error: {e}", file=sys.stderr)
        return 2
    with torch.device("meta"):
        model = build_model(config, load_pretrained=False)
    groups = [g for g, params in model.parameter_groups().items() if any(p.requires_grad for p in params.values())]
    print(json.dumps({"config": config.to_dict(), "trainable_groups": groups,
                      "parameters": model.parameter_counts()}, indent=2))
    return 0
