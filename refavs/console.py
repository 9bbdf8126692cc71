"""What every ``refavs`` command prints when it fails: one line on stderr, and an exit status."""

from __future__ import annotations

import sys


def fail(command: str, message: str, status: int = 2) -> int:
    """Print ``refavs COMMAND: error: MESSAGE`` on stderr and return ``status`` (the exit status)."""
    print(f"refavs {command}: error: {message}", file=sys.stderr)
    return status
