"""COCO run-length encoding of binary masks, as ``pycocotools.mask.encode`` writes it.

A mask of ``h x w`` pixels is read in column-major (Fortran) order, top to bottom and then left
to right, and stored as the lengths of its alternating runs, the first being a run of zeros
(0 when the mask starts with a one). The compact string form of the counts is pycocotools'
``rleToString``: each count, less the count two places before it from the fourth on, written as
a little-endian sequence of 5-bit groups, each group plus 48 as one ASCII character, 0x20 set
on every group but the last and the sign carried by 0x10 of the last.

``{"size": [h, w], "counts": "..."}`` is what video segmentation tools exchange (the counts as
text; pycocotools gives the same characters as bytes). :func:`decode_rle` turns it back into
the mask.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """The run lengths of a 2-D mask in column-major order, starting with a run of zeros."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D [h, w], got shape {mask.shape}")
    flat = (mask != 0).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def counts_to_string(counts: Sequence[int]) -> str:
    """pycocotools' ``rleToString``: run lengths to the compact ASCII form."""
    out: list[str] = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as C's on a signed long
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> list[int]:
    """pycocotools' ``rleFromString``: the compact ASCII form back to run lengths."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x = k = 0
        more = True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` of a 2-D mask (nonzero: in the mask)."""
    mask = np.asarray(mask)
    counts = rle_counts(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(counts)}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The ``bool [h, w]`` mask of an RLE (``counts`` as the compact string, bytes, or a list of
    run lengths, the uncompressed form)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = string_to_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if sum(counts) != h * w:
        raise ValueError(f"the run lengths add up to {sum(counts)} pixels, not {h}x{w} = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((w, h)).T
