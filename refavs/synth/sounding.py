"""Sounding-object ground truth of Ref-AVS Synth (AVSBench-style), written beside the official layout.

::

    <root>/gt_sounding/<folder>/00000.png ... 00009.png

one binary PNG per second ``t`` of every media folder: the union of the masks of the objects
that sound in second ``t`` (their ``audio.seconds`` in scenes.jsonl hold ``t``), at the size of
the object masks, empty when nothing sounds. ``<folder>`` is the media folder (``<vid>``, and
``null_c-<vid>`` for test_n clips, whose media live there only). The PNGs follow the
conventions of ``gt_mask`` (8-bit gray, 0 / 255, encoded as :func:`refavs.data.writer.write_masks`
does; written by :mod:`refavs.synth.files`).
The official reader never looks at ``gt_sounding/``.

These labels exist only for Ref-AVS Synth, whose generator knows when each object sounds.
The real Ref-AVS Bench has none: :func:`has_sounding` is False there, and callers (e.g. an
auxiliary "which object sounds" loss) must switch the option off rather than expect the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from refavs.data.layout import MASK_SIZE, NUM_FRAMES
from refavs.data.masks import MaskResize, MediaError, load_mask
from refavs.synth.layout import SOUNDING_DIR, has_sounding, read_scenes, sounding_mask_path, sounding_masks_dir


def sounding_union(object_masks: np.ndarray, seconds: Sequence[Sequence[int]]) -> np.ndarray:
    """``[10, H, W]`` bool: per second, the union of the masks of the objects sounding in it.

    Args:
        object_masks: ``[objects, 10, H, W]`` bool, the masks of a clip's objects (by fid).
        seconds: per object (same order), the seconds it sounds in.
    """
    object_masks = np.asarray(object_masks, dtype=bool)
    out = np.zeros(object_masks.shape[1:], dtype=bool)
    for masks, secs in zip(object_masks, seconds):
        for t in secs:
            out[t] |= masks[t]
    return out


def load_sounding_masks(data_dir: str | Path, folder: str, size: int = MASK_SIZE,
                        resize: MaskResize = "reference") -> np.ndarray:
    """The sounding-object masks of a media folder, ``[10, size, size]`` bool.

    Each PNG is read like a ground-truth mask (:func:`refavs.data.masks.load_mask`: ``resize``
    ``"reference"`` is the reference loader's bilinear rule, ``"nearest"`` keeps the exact shape).

    Raises:
        MediaError: the folder, or one of its PNGs, is missing or unreadable (the message names it).
            Only Ref-AVS Synth has these files (see :func:`has_sounding`).
    """
    directory = sounding_masks_dir(data_dir, folder)
    if not directory.is_dir():
        hint = ("" if has_sounding(data_dir) else
                f" ({data_dir} has no {SOUNDING_DIR}/: only Ref-AVS Synth 1.1+ writes sounding-object masks; "
                f"switch the option off for other datasets)")
        raise MediaError(f"{directory}: no sounding-object masks for media folder {folder}{hint}")
    return np.stack([load_mask(sounding_mask_path(data_dir, folder, t), size, resize) for t in range(NUM_FRAMES)])


def target_sounding_seconds(data_dir: str | Path,
                            records: Sequence[dict] | None = None) -> dict[tuple[str, int], np.ndarray]:
    """Per ``(folder, fid)`` of ``gt_mask/<folder>/fid_<fid>``: bool ``[10]``, the seconds that object sounds in.

    Read from scenes.jsonl (each object's ``audio.seconds``). The keys mirror ``gt_mask``: a
    clip's objects under ``(vid, fid)``; for a null folder (test_n's, and the replaced-track
    folders ``null_m-``/``null_c-``) also ``(<folder>, 0)``, the null expressions' empty target, which never sounds (all False). So the folder and fid an
    expression's mask is read from give its target's sounding seconds.

    Only Ref-AVS Synth has scenes.jsonl: FileNotFoundError naming it elsewhere (the real benchmark).
    ``records``: scenes.jsonl's records when the caller has read them already (not read again).
    """
    out: dict[tuple[str, int], np.ndarray] = {}
    for rec in read_scenes(data_dir) if records is None else records:
        for obj in rec["objects"]:
            secs = np.zeros(NUM_FRAMES, dtype=bool)
            secs[list(obj["audio"]["seconds"])] = True
            out[(rec["vid"], int(obj["fid"]))] = secs
        for folder in (rec["folder"], *(extra["folder"] for extra in rec.get("null_folders", ()))):
            if folder != rec["vid"]:
                out[(folder, 0)] = np.zeros(NUM_FRAMES, dtype=bool)
    return out
