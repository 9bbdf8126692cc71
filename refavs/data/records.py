"""Typed records of the benchmark's metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from refavs.data.layout import folder_from_uid

CLAUSE_COLUMN = "clause"
"""Optional metadata column: the kind of clause a sentence uses (``loudest``, ``appears``,
``relation``, ``none`` for a plain description, ...). Ref-AVS Synth writes it; scores are then
also given per clause."""

NULL_KIND_COLUMN = "null_kind"
"""Optional metadata column of null rows: why the sentence refers to nothing (Ref-AVS Synth:
``muted``, ``changed``, ``condition``, ``absent``); empty on other rows."""

NULL_FOLDER_KINDS: dict[str, str] = {"null_m-": "null_m", "null_c-": "null_c"}
"""Without a ``null_kind`` column, the kind of a null row is its media folder's prefix, as the
real benchmark names them (``null_m-<vid>``, ``null_c-<vid>``; what m and c stand for is not
documented)."""


@dataclass(frozen=True)
class Expression:
    """One row of metadata.csv: one expression about one object of one clip.

    Attributes:
        vid: the clip id (``<youtube id>_<start ms>_<end ms>`` in the real benchmark).
        uid: the expression id, ``<vid>_<category>_<n>`` (``null_c-<vid>_null_<n>`` for test_n).
        split: one of :data:`refavs.data.layout.SPLITS`.
        fid: index of the referred object inside the clip; picks ``gt_mask/<folder>/fid_<fid>``.
        exp: the expression, verbatim except surrounding whitespace.
        row: line number of the row in metadata.csv (the header is line 1).
        extra: any further columns of the row (e.g. ``cue``, ``needs_audio`` of Ref-AVS Synth),
            read-only; the official reader ignores them.
        empty: the expression refers to nothing in its clip, so its target masks are all empty
            whatever ``fid`` says (training negatives of :mod:`refavs.synth.negatives`; never
            read from metadata.csv, whose null rows point at empty masks on disk instead).
    """

    vid: str
    uid: str
    split: str
    fid: int
    exp: str
    row: int = 0
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    empty: bool = False

    @property
    def clause(self) -> str | None:
        """The kind of clause of the sentence (the :data:`CLAUSE_COLUMN` column), or None."""
        return (self.extra.get(CLAUSE_COLUMN) or "").strip() or None

    @property
    def null_kind(self) -> str | None:
        """Why a null row refers to nothing: the :data:`NULL_KIND_COLUMN` column, else its media
        folder's prefix (:data:`NULL_FOLDER_KINDS`); None for a row that is not null."""
        kind = (self.extra.get(NULL_KIND_COLUMN) or "").strip()
        if kind:
            return kind
        for prefix, name in NULL_FOLDER_KINDS.items():
            if self.uid.startswith(prefix):
                return name
        return None

    @property
    def folder(self) -> str:
        """The media folder derived from the uid (see :func:`~refavs.data.layout.folder_from_uid`)."""
        return folder_from_uid(self.uid)
