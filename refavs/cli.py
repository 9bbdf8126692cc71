"""The ``refavs`` command. Each subcommand lives in a module with ``register(subparsers)``.

Modules are imported only when ``main`` runs, and each keeps its heavy imports inside its
``run`` function, so ``refavs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "refavs.demo",
    "refavs.data.cli",
    "refavs.features.cli",
    "refavs.scoring.cli",
    "refavs.baselines",
)
"""Modules that register subcommands, in the order ``refavs --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    from refavs import __version__

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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
