"""The one error type of :mod:`refavs.inference` (kept in a module of its own, free of heavy imports)."""

from __future__ import annotations


class InferenceError(ValueError):
    """A bad input to inference: an unreadable or too short video, no audio track, an empty
    expression, a path that is not a refavs checkpoint, a start past the end of the video.

    The message is one line fit to show to a user: it names the file, row or argument and says
    what is wrong (and, where there is one, what to do about it).
    """
