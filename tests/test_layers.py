"""The layers hold: the import contract of pyproject.toml passes, and imports sit where they say why.

Layers, lowest first: data, metrics, scoring < features < models < training, inference, baselines
< synth, viz < demo, app < cli; no package's modules import each other in a circle
(``[tool.importlinter]`` in pyproject.toml). A module imports at its top what it needs; an
import inside a function is for something heavy or optional, and a comment on its line (or the
line above) says which.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "refavs"


def test_the_import_contract_holds():
    pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(no_cache=True))"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and run.stdout.count("KEPT") >= 2


def function_imports(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, statement, commented)`` of every import inside a function of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[int, tuple[int, str, bool]] = {}
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                statement = "\n".join(lines[sub.lineno - 1:sub.end_lineno])
                above = lines[sub.lineno - 2].strip() if sub.lineno > 1 else ""
                found[sub.lineno] = (sub.lineno, ast.unparse(sub), "#" in statement or above.startswith("#"))
    return sorted(found.values())


def test_every_function_level_import_says_why():
    bare = [f"{path.relative_to(REPO)}:{line}: {statement}" for path in sorted(PACKAGE.rglob("*.py"))
            for line, statement, commented in function_imports(path) if not commented]
    assert not bare, ("imports inside functions without a comment saying what heavy or optional module they "
                      "keep out of the module's import (else move them to the top):\n" + "\n".join(bare))


def test_the_check_finds_a_bare_function_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\n\ndef f():\n    import json\n    # pulls in torch\n    import torch\n"
                      "    from a import (b,\n                   c)  # optional: a\n    return json, torch\n")
    assert [(line, commented) for line, _, commented in function_imports(module)] == [(5, False), (7, True),
                                                                                      (8, True)]
