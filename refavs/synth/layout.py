"""Ref-AVS Synth on disk: the names of the files it adds to the official layout, and their readers.

::

    <root>/scenes.jsonl                       one record per clip: its scene and its expressions
    <root>/synth.json                         generator version, seed, preset, counts (written last)
    <root>/gt_sounding/<folder>/0000t.png     per second t, the union of the masks of the objects sounding in it

Everything that asks "is this folder Ref-AVS Synth?" asks :func:`is_synth`. The generator
(:mod:`refavs.synth.generate`) writes these files; the label source (:mod:`refavs.synth.labels`)
and the statistics read them through this module.
"""

from __future__ import annotations

import json
from pathlib import Path

SCENES_FILE = "scenes.jsonl"
"""One JSON record per clip, in clip order (its scene, objects, sound and expressions)."""

SYNTH_FILE = "synth.json"
"""The generator's options and counts; written last, so its presence marks a finished dataset."""

SOUNDING_DIR = "gt_sounding"
"""Folder (beside ``gt_mask``) holding the sounding-object masks of every media folder."""


def is_synth(root: str | Path) -> bool:
    """True when ``root`` is a finished Ref-AVS Synth dataset (it has ``synth.json``)."""
    return (Path(root) / SYNTH_FILE).is_file()


def has_sounding(root: str | Path) -> bool:
    """True when ``root`` is a finished Ref-AVS Synth dataset with sounding-object masks.

    Generator versions before 1.1 did not write ``gt_sounding/``; the real benchmark has none.
    """
    return is_synth(root) and (Path(root) / SOUNDING_DIR).is_dir()


def sounding_masks_dir(root: str | Path, folder: str) -> Path:
    """``<root>/gt_sounding/<folder>``: the sounding-object masks of one media folder."""
    return Path(root) / SOUNDING_DIR / folder


def sounding_mask_path(root: str | Path, folder: str, t: int) -> Path:
    """The PNG of second ``t`` (``0000t.png``, as in ``gt_mask``)."""
    return sounding_masks_dir(root, folder) / f"{t:05d}.png"


def read_synth_info(root: str | Path) -> dict:
    """synth.json of a dataset folder; FileNotFoundError naming it when absent (not a Synth dataset)."""
    path = Path(root) / SYNTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a finished Ref-AVS Synth dataset "
                                f"(`refavs synth --out {root}` writes it last)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_scenes(root: str | Path) -> list[dict]:
    """The records of scenes.jsonl, in clip order; FileNotFoundError naming it when absent."""
    path = Path(root) / SCENES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a Ref-AVS Synth dataset")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def folder_records(records: list[dict]) -> dict[str, dict]:
    """Per media folder, the scene as it is heard there: ``{folder: record}``.

    A clip's record describes its own folder (``record["folder"]``); a folder whose track was
    replaced (``record["track"]`` or an entry of ``record["null_folders"]``, muted or changed, see
    :mod:`refavs.synth.null_tracks`) gets a copy in which no visible object sounds, with that
    folder's ``folder``, ``track``, ``expressions`` and ``heard`` (the off-screen sources of a
    changed track). Records written before 1.2 have neither
    key: their folder has the clip's own track.
    """
    out: dict[str, dict] = {}
    for rec in records:
        out[rec["folder"]] = rec if rec.get("track", "original") == "original" else _heard_as(rec, rec)
        for extra in rec.get("null_folders", ()):
            out[extra["folder"]] = _heard_as(rec, extra)
    return out


def _heard_as(rec: dict, folder: dict) -> dict:
    """``rec`` with every object silent and the folder, track and expressions of ``folder``."""
    objects = [{**o, "audio": {**o["audio"], "seconds": []}} for o in rec["objects"]]
    return {**rec, "objects": objects, "folder": folder["folder"], "track": folder["track"],
            "heard": folder.get("heard", []), "expressions": folder["expressions"], "null_folders": []}
