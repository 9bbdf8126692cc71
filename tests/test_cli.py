"""The ``refavs`` command: every subcommand registers and explains its options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from refavs.cli import COMMAND_MODULES, build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_every_module_registers_a_subcommand():
    names = subcommands()
    assert len(names) >= len(COMMAND_MODULES)
    assert {"data", "score", "baseline", "features", "demo"} <= set(names)


@pytest.mark.parametrize("name", subcommands())
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: refavs " + name) and "--help" in out


def test_import_is_light():
    """Importing the package and building the parser loads neither torch nor transformers."""
    code = ("import sys, refavs, refavs.cli; refavs.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
