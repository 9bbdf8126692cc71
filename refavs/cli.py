"""The ``refavs`` command. Each subcommand lives in a module with ``register(subparsers)``.

Modules are imported only when ``main`` runs, and each keeps its heavy imports inside its
``run`` function, so ``refavs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from refavs.version import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "refavs.demo",
    "refavs.data.cli",
    "refavs.synth.cli",
    "refavs.features.cli",
    "refavs.training.cli",
    "refavs.models.cli",
    "refavs.scoring.cli",
    "refavs.baselines",
    "refavs.inference.cli",
    "refavs.viz.cli",
    "refavs.app",
)
"""Modules that register subcommands, in the order ``refavs --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refavs",
        description="refavs: Referring Audio-Visual Segmentation toolkit (Ref-AVS, ECCV 2024). "
                    "Run `refavs COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"refavs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand on both sides of options; argparse keeps only the first run
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that closed early (e.g. `| head`)
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
