"""Bounds on what a user gives to inference, so that no single request takes unbounded time or memory.

Every path a user comes in by checks them, with the same messages: ``refavs predict``
(``--expression`` and every CSV row), :class:`refavs.inference.RefAVSPipeline` and the web
demo (``refavs app``). ``docs/inference.md`` has the table of every bound on an input, where it is
enforced and what the user sees.

This module imports nothing heavy, so the command line and the web page can state the limits.
"""

from __future__ import annotations

MAX_EXPRESSION_CHARS = 500
"""The longest expression accepted, in characters (code points, spaces included).

Every real sentence fits comfortably: the longest of the Ref-AVS benchmark's 20,459
expressions has 109 characters. The model reads only the first ``TextFeatureConfig.max_tokens``
tokens of an expression (25, about 100 to 125 characters of English) and drops the rest, so a
longer text adds nothing to the prediction, only work: without a bound, a pasted paragraph
would hold the web demo's single worker."""

MAX_FRAME_SIDE = 4096
"""The largest width or height, in pixels, of a video's frames that is decoded (4K DCI is
4096x2160; UHD 3840x2160 fits). Ten frames of this size take at most 500 MB as RGB; the model
itself sees them resized to its own square of a few hundred pixels."""


def expression_length_error(expression: str, max_tokens: int, name: str = "the expression") -> str | None:
    """The one-line message refusing ``expression`` when it is longer than :data:`MAX_EXPRESSION_CHARS`,
    else None.

    Args:
        expression: the text as given.
        max_tokens: tokens the model reads (its text feature config's ``max_tokens``).
        name: how the message names the input (``--expression``, ``the expression``).
    """
    if len(expression) <= MAX_EXPRESSION_CHARS:
        return None
    return (f"{name} is {len(expression):,} characters long, over the limit of {MAX_EXPRESSION_CHARS:,} "
            f"characters (the model reads only the first {max_tokens} tokens of an expression)")


def frame_size_error(width: int, height: int) -> str | None:
    """The message refusing frames of ``width x height`` pixels when a side exceeds
    :data:`MAX_FRAME_SIDE`, else None."""
    if max(width, height) <= MAX_FRAME_SIDE:
        return None
    return (f"the frames are {width}x{height} pixels; the largest side accepted is {MAX_FRAME_SIDE} pixels "
            f"(scale the video down first, e.g. ffmpeg -i in.mp4 -vf scale=-2:1080 out.mp4)")
