"""The README and docs/ stay true to the repository: links and pictures exist, the README's
command table names exactly the CLI's commands, every docs page is listed, CI runs the
README's test command, and the README, the docs (but the dated history) and the code speak of
the product, not of how the work went."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refavs.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOC_PAGES]

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
"""``[text](target)`` and ``![alt](target)``, with an optional title; group 1 is the target."""

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text(encoding="utf-8")))


def local_target(target: str) -> str | None:
    """The file part of a link to something in the repository; None for web links and anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
        return None  # http(s), mailto, ... or an anchor in the same page
    return target.split("#", 1)[0].split("?", 1)[0] or None


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        local = local_target(target)
        if local is not None and not (path.parent / local).exists():
            broken.append(target)
    return broken


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next ``## ``)."""
    parts = re.split(rf"^## {re.escape(heading)}[ \t]*$", text, maxsplit=1, flags=re.M)
    assert len(parts) == 2, f"README.md has no '## {heading}' section"
    return re.split(r"^## ", parts[1], maxsplit=1, flags=re.M)[0]


def readme_command_rows() -> list[list[str]]:
    """The README command table's commands, each as its words after ``refavs``, e.g.
    ``["viz", "sample|report", "...", ...]``."""
    rows = []
    for line in section(README.read_text(encoding="utf-8"), "Commands").splitlines():
        if not line.startswith("|"):
            continue
        first = re.split(r"(?<!\\)\|", line.strip().strip("|"))[0]
        m = re.search(r"`refavs ([^`]+)`", first)
        if m:
            rows.append(m.group(1).replace("\\|", "|").split())
    return rows


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def exit_status(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
    out = capsys.readouterr().out
    return (0 if status is None else status), out


# ------------------------------------------------------------------------------------ links


def test_markdown_files_are_found():
    assert README.is_file() and DOC_PAGES, "README.md and docs/*.md are missing"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_exist(path):
    assert broken_links(path) == [], f"{path.relative_to(ROOT)}: links to files that do not exist"


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.png").write_bytes(b"")
    page.write_text("![ok](there.png) [ok](there.png#x) [web](https://example.org/x) [a](#top)\n"
                    "![missing](docs/nowhere.png) and [gone](gone.md#part)\n"
                    "```\n[in code](not-a-link.md)\n```\n`[inline](not-either.md)`\n", encoding="utf-8")
    assert broken_links(page) == ["docs/nowhere.png", "gone.md#part"]


def test_readme_lists_every_docs_page():
    linked = {(ROOT / local).resolve() for t in links(README) if (local := local_target(t))}
    missing = [p.name for p in DOC_PAGES if p.resolve() not in linked]
    assert missing == [], f"README.md links no docs page {missing}"


# ------------------------------------------------------------------------------- commands


def test_readme_command_table_matches_the_cli(capsys):
    rows = readme_command_rows()
    assert rows, "README.md's command table lists no `refavs ...` command"
    in_readme = {words[0] for words in rows}
    in_cli = set(subcommands(build_parser()))
    assert in_readme - in_cli == set(), "README.md lists commands the CLI does not have"
    assert in_cli - in_readme == set(), "the CLI has commands README.md's command table does not list"
    status, out = exit_status(["--help"], capsys)
    assert status == 0
    for name in in_cli:
        assert re.search(rf"^\s+{re.escape(name)}(\s|$)", out, re.M), f"`refavs --help` does not list {name}"


def test_every_command_in_the_readme_has_help(capsys):
    parser = build_parser()
    for words in readme_command_rows():
        command = words[0]
        assert exit_status([command, "--help"], capsys)[0] == 0, f"`refavs {command} --help` failed"
        nested = subcommands(subcommands(parser)[command])
        if nested:  # e.g. `refavs data check`, `refavs viz sample|report`
            assert len(words) > 1, f"README.md names no subcommand of `refavs {command}`"
            for sub in words[1].split("|"):
                assert sub in nested, f"`refavs {command} {sub}` is not a command"
                assert exit_status([command, sub, "--help"], capsys)[0] == 0


def test_python_dash_m_refavs_runs():
    assert (ROOT / "refavs" / "__main__.py").is_file()
    done = subprocess.run([sys.executable, "-m", "refavs", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "COMMAND" in done.stdout


# ---------------------------------------------------------------------------------- set-up


def test_ci_runs_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    command = lines[-1]
    assert "pytest" in command
    readme = README.read_text(encoding="utf-8").splitlines()
    assert command in readme, f"README.md does not hold .ci/run's test command verbatim: {command}"


# ------------------------------------------------------------------- the product speaks of itself

PROCESS_TALK = [re.compile(p, re.I) for p in (
    r"\bissues?\s+#?\d+",                          # "issue 14", "issue #5", "issue 14's goals"
    r"\bsessions?\b",                              # the work's sessions (HTTP / Gradio ones are allowed below)
    r"\blandings?\b",
    r"\bsince the (last|previous)\b",
    r"\bprevious (landing|main job|recipe|change|version|commit)\b",
    r"\bthe (job|recipe|checkpoints?) before\b",
    r"\bclosing note\b",
    r"\buntil \d{4}-\d{2}-\d{2}\b",                # "the main job until 2026-11-28": history
)]
"""Talk of how the work went rather than of what the product is. History belongs, dated, in
docs/experiments.md only."""

ALLOWED_TALK = [re.compile(p, re.I) for p in (
    r"\b(GitHub )?issue\s+#\d+ of the reference( code's| repository)?",   # a fact about the benchmark's code
    r"\b(HTTP|HTTPS|Gradio|browser|web|client)[ -]sessions?\b",          # a session of a web client
)]

HISTORY_PAGE = ROOT / "docs" / "experiments.md"


def process_talk(text: str) -> list[str]:
    """The lines of ``text`` that speak of the process, each as ``line number: line``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        kept = line
        for allowed in ALLOWED_TALK:
            kept = allowed.sub("", kept)
        if any(p.search(kept) for p in PROCESS_TALK):
            found.append(f"{number}: {line.strip()}")
    return found


def product_texts() -> list[Path]:
    """README.md, docs/*.md but the dated history, and every module of the package."""
    return [README, *(p for p in DOC_PAGES if p != HISTORY_PAGE), *sorted((ROOT / "refavs").rglob("*.py"))]


def test_process_talk_is_caught():
    text = ("Of issue 14's goals, five are met.\nSince the previous landing, medium recolours.\n"
            "The tiny EEMC was the main job until 2026-11-28.\nNo session of this project had a GPU.\n"
            "See issue #3.\nThe recipe before it took 14.1 minutes.\n"
            "The reference code's loader fails (GitHub issue #2 of the reference repository).\n"
            "Each Gradio session keeps its upload; an HTTP session is reused.\n"
            "The main job's goals: test_s J >= 0.70.\n")
    assert [line.split(":")[0] for line in process_talk(text)] == ["1", "2", "3", "4", "5", "6"]


def test_the_product_speaks_of_itself():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in product_texts()
             for line in process_talk(path.read_text(encoding="utf-8"))]
    assert found == [], ("these lines speak of the process (issue numbers, sessions, landings, what changed "
                         "since); state what is, and keep history, dated, in docs/experiments.md:\n"
                         + "\n".join(found))
