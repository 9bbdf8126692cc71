"""Scenes: which objects a clip holds, where they are in each frame, and when each sounds.

A :class:`Scene` is the full description of one clip, JSON-serialisable, and split into a
*visual* part per object (category, look, column, centre per frame) and an *audio* part
(the seconds it sounds in, its loudness, its pitch/timbre/rhythm). Frames, masks and audio
are pure functions of the scene (:mod:`refavs.synth.render`, :mod:`refavs.synth.audio`), so
``scenes.jsonl`` reproduces every file of the dataset.

Placement: the frame is a grid of 3 columns (left, centre, right) x 2 rows. An object alone
in its column sits at mid height (row ``middle``), two objects of one column sit at the
``top`` and ``bottom``. Within its cell an object is jittered and may drift or bob a little,
never enough to reach a neighbouring cell, so objects never overlap and an object's column
(hence "on the left") holds for the whole clip.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.synth.categories import COLOURS, Category
from refavs.synth.presets import SceneConfig

COLUMNS: tuple[str, ...] = ("left", "centre", "right")
"""Columns of the placement grid, left to right."""

COLUMN_X: tuple[float, ...] = (1 / 6, 1 / 2, 5 / 6)
"""Horizontal centre of each column, as a fraction of the frame side."""

ROW_Y: dict[str, tuple[float, float]] = {"top": (0.22, 0.30), "middle": (0.30, 0.70), "bottom": (0.70, 0.78)}
"""Range of the vertical centre of an object per row, as fractions of the frame side."""

GRID_ROWS = 2
"""Rows of the placement grid (a column holds at most this many objects)."""

SOUND_PATTERNS: tuple[str, ...] = ("silent", "whole", "stops", "starts", "bursts")
"""How an object's sounding seconds are drawn (see :class:`~refavs.synth.presets.SceneConfig`)."""

MIN_RUN = 2
"""Shortest sounding (or silent) stretch of the ``stops`` and ``starts`` patterns, in seconds."""


@dataclass(frozen=True)
class ObjectVisual:
    """What can be seen of one object.

    Attributes:
        category: the category name (its look follows from it).
        shape, colour, texture: the object's look: its category's, repeated for readers of the
            JSON, except the colour of a train object the preset recolours
            (:attr:`~refavs.synth.presets.SynthPreset.train_recolour`).
        column: ``left``, ``centre`` or ``right`` (constant over the clip).
        row: ``top``, ``middle`` or ``bottom``.
        radius: size in pixels (the shape fits a circle of this radius).
        centers: per frame, the centre ``(x, y)`` in pixels, or None when off screen.
    """

    category: str
    shape: str
    colour: str
    texture: str
    column: str
    row: str
    radius: float
    centers: tuple[tuple[float, float] | None, ...]

    @property
    def visible(self) -> tuple[bool, ...]:
        """Per frame, whether the object is on screen."""
        return tuple(c is not None for c in self.centers)

    @property
    def first_frame(self) -> int:
        return self.visible.index(True)

    @property
    def end_frame(self) -> int:
        """One past the last frame on screen (objects are on screen over one run of frames)."""
        return len(self.visible) - self.visible[::-1].index(True)

    def to_dict(self) -> dict:
        return {"category": self.category, "shape": self.shape, "colour": self.colour, "texture": self.texture,
                "column": self.column, "row": self.row, "radius": self.radius,
                "centers": [None if c is None else [c[0], c[1]] for c in self.centers]}

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectVisual":
        return cls(d["category"], d["shape"], d["colour"], d["texture"], d["column"], d["row"],
                   float(d["radius"]), tuple(None if c is None else (float(c[0]), float(c[1])) for c in d["centers"]))


@dataclass(frozen=True)
class ObjectAudio:
    """What can be heard of one object.

    Attributes:
        seconds: the seconds (0..9) in which it sounds, ascending; empty for a silent object.
            Always a subset of the frames it is on screen in.
        level_db: its loudness relative to the reference level (0, -8 or -16 dB).
        pitch_hz, timbre, rhythm: its category's sound, repeated for readers of the JSON.
    """

    seconds: tuple[int, ...]
    level_db: float
    pitch_hz: float
    timbre: str
    rhythm: str

    @property
    def sounds(self) -> bool:
        return bool(self.seconds)

    @property
    def onset(self) -> int | None:
        """First sounding second, None when silent."""
        return self.seconds[0] if self.seconds else None

    def to_dict(self) -> dict:
        return {"seconds": list(self.seconds), "level_db": self.level_db, "pitch_hz": self.pitch_hz,
                "timbre": self.timbre, "rhythm": self.rhythm}

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectAudio":
        return cls(tuple(int(s) for s in d["seconds"]), float(d["level_db"]), float(d["pitch_hz"]),
                   d["timbre"], d["rhythm"])


@dataclass(frozen=True)
class SceneObject:
    """One object: its index in the clip (the metadata's ``fid``), what it looks and sounds like."""

    fid: int
    visual: ObjectVisual
    audio: ObjectAudio

    def to_dict(self) -> dict:
        return {"fid": self.fid, "visual": self.visual.to_dict(), "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "SceneObject":
        return cls(int(d["fid"]), ObjectVisual.from_dict(d["visual"]), ObjectAudio.from_dict(d["audio"]))


@dataclass(frozen=True)
class Background:
    """A clip's backdrop: a gradient between two muted colours plus a faint wave pattern.

    Attributes:
        colour_a, colour_b: RGB at the two ends of the gradient.
        direction: ``horizontal``, ``vertical`` or ``diagonal``.
        wave_amplitude: amplitude (0..255 units) of a sinusoidal pattern added on top.
        wave_cycles: cycles of that pattern across the frame, along x and y.
        wave_phase: its phase in radians.
        grain: standard deviation (0..255 units) of the per-frame pixel noise.
    """

    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    direction: str
    wave_amplitude: float
    wave_cycles: tuple[float, float]
    wave_phase: float
    grain: float

    def to_dict(self) -> dict:
        return {"colour_a": list(self.colour_a), "colour_b": list(self.colour_b), "direction": self.direction,
                "wave_amplitude": self.wave_amplitude, "wave_cycles": list(self.wave_cycles),
                "wave_phase": self.wave_phase, "grain": self.grain}

    @classmethod
    def from_dict(cls, d: dict) -> "Background":
        return cls(tuple(d["colour_a"]), tuple(d["colour_b"]), d["direction"], float(d["wave_amplitude"]),
                   tuple(d["wave_cycles"]), float(d["wave_phase"]), float(d["grain"]))


@dataclass(frozen=True)
class Scene:
    """Everything about one clip except its expressions.

    Attributes:
        vid: the clip id (``syn-<split code><index>_0_10000``).
        split: the split the clip belongs to.
        size: frame side in pixels.
        seed: seeds the pixel grain, the noise-based timbres and the background noise.
        background: the backdrop.
        noise_rms: RMS of the background noise of the audio.
        objects: the objects, indexed by ``fid``.
    """

    vid: str
    split: str
    size: int
    seed: int
    background: Background
    noise_rms: float
    objects: tuple[SceneObject, ...]

    def to_dict(self) -> dict:
        return {"vid": self.vid, "split": self.split, "size": self.size, "seed": self.seed,
                "background": self.background.to_dict(), "noise_rms": self.noise_rms,
                "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(d["vid"], d["split"], int(d["size"]), int(d["seed"]), Background.from_dict(d["background"]),
                   float(d["noise_rms"]), tuple(SceneObject.from_dict(o) for o in d["objects"]))


def _place(rng: np.random.Generator, n: int, config: SceneConfig) -> list[tuple[int, str]]:
    """Columns (0..2) and rows for ``n`` objects, in object order."""
    columns = len(COLUMNS)
    if n <= columns and rng.random() < config.distinct_columns_prob:
        cells = [int(c) for c in rng.choice(columns, size=n, replace=False)]
    else:
        cells = [int(c) for c in rng.choice(columns * GRID_ROWS, size=n, replace=False)]
    per_column = {c: sum(1 for cell in cells if cell % columns == c) for c in range(columns)}
    placed = []
    for cell in cells:
        col = cell % columns
        row = "middle" if per_column[col] == 1 else ("top" if cell // columns == 0 else "bottom")
        placed.append((col, row))
    return placed


def _centers(rng: np.random.Generator, col: int, row: str, size: int, config: SceneConfig,
             visible: Sequence[bool]) -> tuple[tuple[float, float] | None, ...]:
    x0 = COLUMN_X[col] + rng.uniform(-config.jitter, config.jitter)
    y0 = rng.uniform(*ROW_Y[row])
    motion = ("static", "drift", "bob")[int(rng.choice(3, p=_normalise(config.motion_weights)))]
    t = np.arange(NUM_FRAMES, dtype=np.float64)
    xs, ys = np.full(NUM_FRAMES, x0), np.full(NUM_FRAMES, y0)
    if motion == "drift":
        dx, dy = rng.uniform(-config.drift, config.drift, size=2)
        xs = x0 + dx * t / (NUM_FRAMES - 1)
        ys = y0 + dy * t / (NUM_FRAMES - 1)
    elif motion == "bob":
        period = float(rng.integers(4, 7))
        phase = rng.uniform(0, 2 * np.pi)
        ys = y0 + config.bob * np.sin(2 * np.pi * t / period + phase)
    return tuple((round(float(x) * size, 2), round(float(y) * size, 2)) if v else None
                 for x, y, v in zip(xs, ys, visible))


def _visibility(rng: np.random.Generator, config: SceneConfig) -> tuple[int, int]:
    """On-screen frames ``[first, end)``: throughout, appearing later, or leaving early."""
    kind = int(rng.choice(3, p=_normalise(config.visibility_weights)))
    if kind == 1:
        return int(rng.integers(2, 6)), NUM_FRAMES
    if kind == 2:
        return 0, int(rng.integers(5, 9))
    return 0, NUM_FRAMES


def _sound_seconds(rng: np.random.Generator, first: int, end: int, config: SceneConfig,
                   forbid_silent: bool = False) -> tuple[int, ...]:
    """Sounding seconds within the on-screen frames ``[first, end)`` for one drawn pattern."""
    weights = np.array(config.sound_pattern_weights, dtype=np.float64)
    if forbid_silent:
        weights[SOUND_PATTERNS.index("silent")] = 0.0
    pattern = SOUND_PATTERNS[int(rng.choice(len(SOUND_PATTERNS), p=weights / weights.sum()))]
    long_enough = end - first >= 2 * MIN_RUN
    if pattern == "silent":
        return ()
    if pattern in ("stops", "starts") and long_enough:
        cut = int(rng.integers(first + MIN_RUN, end - MIN_RUN + 1))
        return tuple(range(first, cut)) if pattern == "stops" else tuple(range(cut, end))
    if pattern == "bursts":
        seconds: set[int] = set()
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.integers(1, 4))
            start = int(rng.integers(first, max(first, end - length) + 1))
            seconds.update(range(start, min(end, start + length)))
        return tuple(sorted(seconds))
    return tuple(range(first, end))


def _background(rng: np.random.Generator, config: SceneConfig) -> Background:
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0, config.background_saturation_max, size=2)
    val = rng.uniform(*config.background_value_range, size=2)
    hues = (hue, (hue + rng.uniform(-0.15, 0.15)) % 1.0)
    colours = [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)) for h, s, v in zip(hues, sat, val)]
    direction = ("horizontal", "vertical", "diagonal")[int(rng.integers(3))]
    return Background(colour_a=colours[0], colour_b=colours[1], direction=direction,
                      wave_amplitude=round(float(rng.uniform(0, 10)), 3),
                      wave_cycles=(round(float(rng.uniform(0.5, 3)), 3), round(float(rng.uniform(0.5, 3)), 3)),
                      wave_phase=round(float(rng.uniform(0, 2 * np.pi)), 3),
                      grain=round(float(rng.uniform(1, 4)), 3))


def _normalise(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _colours(rng: np.random.Generator, cats: Sequence[Category], lookalikes: tuple[int, int] | None,
             recolour: float) -> list[str]:
    """Each object's colour: its category's, or with chance ``recolour`` another drawn uniformly
    (the second look-alike copies the first's). Draws nothing when ``recolour`` is 0."""
    colours = [c.look.colour for c in cats]
    if recolour <= 0:
        return colours
    for i, cat in enumerate(cats):
        if rng.random() < recolour:
            others = [name for name in COLOURS if name != cat.look.colour]
            colours[i] = others[int(rng.integers(len(others)))]
    if lookalikes is not None:
        colours[lookalikes[1]] = colours[lookalikes[0]]
    return colours


def sample_scene(rng: np.random.Generator, vid: str, split: str, size: int, pool: Sequence[Category],
                 config: SceneConfig, recolour: float = 0.0) -> Scene:
    """Draw one clip's scene.

    Args:
        rng: the clip's own generator (seeded from the dataset seed, split and clip index).
        vid: the clip id.
        split: its split.
        size: frame side in pixels.
        pool: the categories its objects are drawn from.
        config: sampling settings.
        recolour: chance that an object takes another colour than its category's (the train
            split's :attr:`~refavs.synth.presets.SynthPreset.train_recolour`; 0 draws nothing,
            so scenes are those of a generator without the option).
    """
    n = 1 + int(rng.choice(len(config.object_count_weights), p=_normalise(config.object_count_weights)))
    cats = [pool[int(rng.integers(len(pool)))] for _ in range(n)]
    lookalikes: tuple[int, int] | None = None
    if n >= 2 and rng.random() < config.lookalike_prob:
        i, j = (int(k) for k in rng.choice(n, size=2, replace=False))
        cats[j] = cats[i]
        lookalikes = (i, j)
    silent_twin: int | None = None
    if lookalikes is not None and rng.random() < config.lookalike_split_sound_prob:
        silent_twin = lookalikes[int(rng.integers(2))]
    colours = _colours(rng, cats, lookalikes, recolour)
    radius = round(config.radius * size, 2)
    objects = []
    for fid, ((col, row), cat, colour) in enumerate(zip(_place(rng, n, config), cats, colours)):
        first, end = _visibility(rng, config)
        visible = [first <= t < end for t in range(NUM_FRAMES)]
        centers = _centers(rng, col, row, size, config, visible)
        if silent_twin is not None and fid in lookalikes:
            # of two identical-looking objects exactly one sounds: only listening tells them apart
            seconds = () if fid == silent_twin else _sound_seconds(rng, first, end, config, forbid_silent=True)
        else:
            seconds = _sound_seconds(rng, first, end, config)
        level = float(config.levels_db[int(rng.integers(len(config.levels_db)))])
        look, sound = cat.look, cat.sound
        objects.append(SceneObject(
            fid=fid,
            visual=ObjectVisual(cat.name, look.shape, colour, look.texture, COLUMNS[col], row, radius, centers),
            audio=ObjectAudio(seconds, level, sound.pitch_hz, sound.timbre, sound.rhythm)))
    return Scene(vid=vid, split=split, size=size, seed=int(rng.integers(2**31 - 1)),
                 background=_background(rng, config),
                 noise_rms=round(float(rng.uniform(*config.noise_rms_range)), 5),
                 objects=tuple(objects))
