"""How loud and how high each sounding object is, as maps: Ref-AVS Synth training labels.

"The loudest", "the quietest", "the highest-pitched" and "the lowest-pitched" compare the
sounding objects of a clip. The sounding-object masks (:mod:`refavs.synth.sounding`) say which
objects sound, not how they compare; these maps do. For second ``t`` and each object that sounds
in it, its box (``scenes.jsonl``'s ``boxes``) is painted with its **rank** among the clip's
sounding objects, from 0 (the quietest / lowest) to 1 (the loudest / highest), in two channels:
level (``level_db``) and pitch (``pitch_hz``). Pixels of no sounding object are
:data:`IGNORE` (no label). When every sounding object has the same level (or pitch), that
channel is 0.5 on all of them.

:func:`sound_level_maps` paints the same boxes with the object's level and pitch on a fixed
scale instead (:func:`level_scale`, :func:`pitch_scale`): what is heard of the object itself,
from which a model can make the comparisons.

Computed from the scene record on the fly (a few boxes per clip): nothing is cached. Only
Ref-AVS Synth has scenes; the real benchmark has no such labels and the loss term is absent.
"""

from __future__ import annotations

import numpy as np

from refavs.data.layout import NUM_FRAMES

IGNORE = -1.0
"""Value of pixels without a label (no sounding object there)."""

RANK_KEYS: tuple[str, ...] = ("level_db", "pitch_hz")
"""The channels, in order: the object's level, then its pitch (keys of its ``audio`` record)."""

RANK_SIZE = 48
"""Side of the maps (the size of the cached sounding-object masks)."""


LEVEL_RANGE_DB: tuple[float, float] = (-24.0, 0.0)
"""Levels mapped to 0 and 1 by :func:`level_scale` (Synth's steps are 0, -8 and -16 dB)."""

PITCH_RANGE_HZ: tuple[float, float] = (160.0, 3200.0)
"""Pitches mapped to 0 and 1 (log scale) by :func:`pitch_scale` (Synth's categories: 196-2489 Hz)."""


def level_scale(level_db: float) -> float:
    """``level_db`` on [0, 1]: linear in dB over :data:`LEVEL_RANGE_DB`, clipped."""
    lo, hi = LEVEL_RANGE_DB
    return float(np.clip((level_db - lo) / (hi - lo), 0.0, 1.0))


def pitch_scale(pitch_hz: float) -> float:
    """``pitch_hz`` on [0, 1]: linear in octaves over :data:`PITCH_RANGE_HZ`, clipped."""
    lo, hi = PITCH_RANGE_HZ
    return float(np.clip(np.log2(pitch_hz / lo) / np.log2(hi / lo), 0.0, 1.0))


def _ranks(values: list[float]) -> list[float]:
    """Each value's place among the distinct values, scaled to [0, 1] (0.5 when all are equal)."""
    distinct = sorted(set(values))
    if len(distinct) < 2:
        return [0.5] * len(values)
    return [distinct.index(v) / (len(distinct) - 1) for v in values]


def sound_rank_maps(record: dict, size: int = RANK_SIZE) -> np.ndarray:
    """``float32 [10, 2, size, size]`` rank maps of one clip from its scenes.jsonl ``record``.

    Raises:
        ValueError: the record lacks the size, the objects' boxes or their audio.
    """
    return _paint(record, size, lambda sounding: [_ranks([float(a[key]) for a in sounding]) for key in RANK_KEYS])


def sound_level_maps(record: dict, size: int = RANK_SIZE) -> np.ndarray:
    """``float32 [10, 2, size, size]``: each sounding object's box, in the seconds it sounds, painted
    with its level (:func:`level_scale`) and pitch (:func:`pitch_scale`); :data:`IGNORE` elsewhere.

    Raises:
        ValueError: the record lacks the size, the objects' boxes or their audio.
    """
    return _paint(record, size, lambda sounding: [[level_scale(float(a["level_db"])) for a in sounding],
                                                  [pitch_scale(float(a["pitch_hz"])) for a in sounding]])


def _paint(record: dict, size: int, values) -> np.ndarray:
    """The maps of ``values(audio records of the sounding objects) -> [channel][object]``."""
    try:
        frame = float(record["size"])
        objects = [(o["audio"], o["visual"]["boxes"]) for o in record["objects"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"scene {record.get('vid', '?')}: no {err} for the sound maps") from None
    out = np.full((NUM_FRAMES, len(RANK_KEYS), size, size), IGNORE, dtype=np.float32)
    sounding = [(audio, boxes) for audio, boxes in objects if audio["seconds"]]
    if not sounding:
        return out
    try:
        channels = values([audio for audio, _ in sounding])   # [channel][object]
    except (KeyError, TypeError) as err:
        raise ValueError(f"scene {record.get('vid', '?')}: no {err} for the sound maps") from None
    scale = size / frame
    for i, (audio, boxes) in enumerate(sounding):
        for t in audio["seconds"]:
            box = boxes[t]
            if box is None:
                continue
            x0, y0 = int(np.floor(box[0] * scale)), int(np.floor(box[1] * scale))
            x1, y1 = max(x0 + 1, int(np.ceil(box[2] * scale))), max(y0 + 1, int(np.ceil(box[3] * scale)))
            for c in range(len(RANK_KEYS)):
                out[t, c, y0:y1, x0:x1] = channels[c][i]
    return out
