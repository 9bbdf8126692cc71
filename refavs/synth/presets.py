"""Named, typed settings of the generator: how many clips, how big, and how scenes are drawn.

``SynthPreset`` says how much to generate (clips per split, expressions per clip, frame
size); ``SceneConfig`` says how a scene is sampled (objects, placement, motion, sound
patterns, loudness). Presets ``tiny`` (smoke tests), ``small`` (a tiny model trains on it on
a 2-core CPU in minutes), ``medium`` and ``large`` share one ``SceneConfig``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from refavs.data.layout import SPLITS

MIN_SIZE, MAX_SIZE = 32, 1024
"""Frame sides (pixels) the generator accepts."""


@dataclass(frozen=True)
class SceneConfig:
    """How one clip's scene is sampled. Fractions are of the frame side; probabilities sum to 1.

    Attributes:
        object_count_weights: relative chance of 1, 2, 3, 4 objects in a clip.
        lookalike_prob: chance (clips of 2+ objects) that one object is a second copy of
            another's category, hence looks identical to it.
        lookalike_split_sound_prob: chance that of two look-alikes exactly one sounds.
        distinct_columns_prob: chance that up to three objects take three different columns
            (otherwise cells of the 3 x 2 grid are drawn freely and two may share a column).
        radius: object radius (the shape fits a circle of this radius).
        jitter: largest random offset of an object's centre from its cell's centre.
        drift: largest displacement of a moving object over the clip (each axis).
        bob: amplitude of the vertical oscillation of a bobbing object.
        motion_weights: relative chance of ``static``, ``drift``, ``bob``.
        visibility_weights: relative chance of being on screen throughout, appearing later
            (first frame 2..5), leaving early (last frame 4..7).
        sound_pattern_weights: relative chance of ``silent``, ``whole`` (every visible second),
            ``stops`` (sounds, then falls silent while still visible), ``starts`` (silent, then
            sounds to the end), ``bursts`` (one or two runs of 1..3 seconds).
        levels_db: loudness steps an object sounds at (0 dB = ``reference_rms``); adjacent
            steps differ by 8 dB, so "the loudest" is never a close call.
        reference_rms: RMS of a 0 dB note.
        noise_rms_range: RMS range of the background noise of a clip.
        background_value_range: brightness range (0..1) of the muted backgrounds.
        background_saturation_max: the backgrounds' largest saturation (objects are saturated).
    """

    object_count_weights: tuple[float, float, float, float] = (0.08, 0.34, 0.34, 0.24)
    lookalike_prob: float = 0.4
    lookalike_split_sound_prob: float = 0.75
    distinct_columns_prob: float = 0.8
    radius: float = 0.11
    jitter: float = 0.02
    drift: float = 0.03
    bob: float = 0.02
    motion_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    visibility_weights: tuple[float, float, float] = (0.7, 0.15, 0.15)
    sound_pattern_weights: tuple[float, float, float, float, float] = (0.28, 0.2, 0.16, 0.16, 0.2)
    levels_db: tuple[float, ...] = (0.0, -8.0, -16.0)
    reference_rms: float = 0.08
    noise_rms_range: tuple[float, float] = (0.001, 0.004)
    background_value_range: tuple[float, float] = (0.18, 0.5)
    background_saturation_max: float = 0.3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SynthPreset:
    """How much to generate.

    Attributes:
        name: the preset's name (recorded in synth.json).
        clips: clips per split (every split of :data:`refavs.data.layout.SPLITS`; missing ones get 0).
        expressions_per_clip: expressions written per clip (fewer when a clip allows fewer).
        train_expressions_per_clip: the same for the train split alone (None: ``expressions_per_clip``);
            each clip draws from its own generator, so the other splits stay as they are.
        train_needs_audio_share: ``needs_audio_share`` for the train split alone (None: the same),
            e.g. to keep the share of rows that need the audio when a train clip gets more slots.
        train_name_slot: each train clip also gets a sentence that only names a category ("The
            trumpet") when one of its categories is there once, beside its other slots: the
            plainest query a user types, which the kind-balanced draw of :func:`choose
            <refavs.synth.expressions.choose>` seldom writes (4 of ``medium``'s 600 val rows).
        train_recolour: chance that an object of a train clip takes another colour than its
            category's (drawn uniformly from the others; look-alikes stay alike). Its shape,
            texture, sound and name stay, and the sentences say the colour it has, so a colour
            word is seen on many shapes, not only on the one or two seen categories of that
            colour, as test_u's sentences about unseen looks need. Other splits are unchanged.
        size: default frame side in pixels (``--size`` overrides it).
        needs_audio_share: chance that an expression slot after the first asks for an
            expression that cannot be resolved without listening (the first slot always asks).
        relation_weight: weight of the ``relation`` kind ("the object to the left of ...") when a
            kind of meaning is drawn (every clause kind weighs 1).
        null_row_share: the share of null rows in train and val, as the real benchmark has them
            (4.3 % of train, 5.3 % of val): a clip gets a replaced-track folder (``null_m-`` or
            ``null_c-``, :mod:`refavs.synth.null_tracks`) with the chance that gives this share.
        null_rows_per_folder: sentences per replaced-track folder (4, as every real one).
        test_n_tracks: relative chance of a test_n clip's track being ``muted``, ``changed``
            (the real benchmark's two kinds) or the original one, whose null rows are Synth's own
            (``condition``, ``absent``).
        stereo: write two-channel tracks in which each object's sound is panned by its place in
            the frame (:func:`~refavs.synth.audio.pan_gains`); their mono mix is the mono track.
            Mono audio cannot tell two look-alikes apart, a listener with two ears can.
        scene: how scenes are sampled.
    """

    name: str
    clips: Mapping[str, int]
    expressions_per_clip: int = 2
    train_expressions_per_clip: int | None = None
    train_needs_audio_share: float | None = None
    train_name_slot: bool = False
    train_recolour: float = 0.0
    size: int = 96
    needs_audio_share: float = 0.35
    relation_weight: float = 2.0
    null_row_share: float = 0.045
    null_rows_per_folder: int = 4
    test_n_tracks: tuple[float, float, float] = (0.3, 0.3, 0.4)
    stereo: bool = False
    scene: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        clips = dict(self.clips)
        unknown = [s for s in clips if s not in SPLITS]
        if unknown:
            raise ValueError(f"preset {self.name}: unknown split(s) {', '.join(unknown)}; use {', '.join(SPLITS)}")
        if any(n < 0 for n in clips.values()):
            raise ValueError(f"preset {self.name}: clip counts must be non-negative")
        object.__setattr__(self, "clips", {s: int(clips.get(s, 0)) for s in SPLITS})
        if self.expressions_per_clip < 1:
            raise ValueError(f"preset {self.name}: expressions_per_clip must be at least 1")
        shares = [("needs_audio_share", self.needs_audio_share),
                  ("train_needs_audio_share", self.train_needs_audio_share),
                  ("train_recolour", self.train_recolour)]
        for key, share in shares:
            if share is not None and not 0.0 <= share <= 1.0:
                raise ValueError(f"preset {self.name}: {key} must be within [0, 1], got {share}")
        if self.train_expressions_per_clip is not None and self.train_expressions_per_clip < 1:
            raise ValueError(f"preset {self.name}: train_expressions_per_clip must be at least 1 (or None)")
        if not 0.0 <= self.null_row_share < 1.0:
            raise ValueError(f"preset {self.name}: null_row_share must be within [0, 1), got {self.null_row_share}")
        if self.null_rows_per_folder < 1:
            raise ValueError(f"preset {self.name}: null_rows_per_folder must be at least 1")
        if len(self.test_n_tracks) != 3 or min(self.test_n_tracks) < 0 or not sum(self.test_n_tracks) > 0:
            raise ValueError(f"preset {self.name}: test_n_tracks must be three non-negative weights "
                             f"(muted, changed, original) with a positive sum, got {self.test_n_tracks}")
        check_size(self.size)

    def expressions_for(self, split: str) -> int:
        """Expressions to write per clip of ``split``."""
        if split == "train" and self.train_expressions_per_clip is not None:
            return self.train_expressions_per_clip
        return self.expressions_per_clip

    def needs_audio_share_for(self, split: str) -> float:
        """Chance that a slot after the first asks for a ``needs_audio`` meaning in ``split``."""
        if split == "train" and self.train_needs_audio_share is not None:
            return self.train_needs_audio_share
        return self.needs_audio_share

    def null_clip_chance(self, split: str) -> float:
        """Chance that a clip of ``split`` gets a replaced-track folder: 0 outside train and val, else
        what makes its null rows ``null_row_share`` of the split's rows."""
        if split not in ("train", "val") or not self.null_row_share:
            return 0.0
        rows = self.expressions_for(split) + (1 if split == "train" and self.train_name_slot else 0)
        share = self.null_row_share
        return min(1.0, share / (1 - share) * rows / self.null_rows_per_folder)

    def test_n_track(self, rng) -> str:
        """The track of a test_n clip (``muted``, ``changed`` or ``original``), drawn from ``rng``."""
        weights = [float(w) for w in self.test_n_tracks]
        total = sum(weights)
        return ("muted", "changed", "original")[int(rng.choice(3, p=[w / total for w in weights]))]

    def with_counts(self, **clips: int) -> "SynthPreset":
        """A copy with some splits' clip counts replaced (e.g. ``with_counts(train=8)``)."""
        return dataclasses.replace(self, clips={**self.clips, **clips})

    def to_dict(self) -> dict:
        out = {"name": self.name, "clips": dict(self.clips), "expressions_per_clip": self.expressions_per_clip,
               "train_expressions_per_clip": self.train_expressions_per_clip,
               "train_needs_audio_share": self.train_needs_audio_share,
               "size": self.size, "needs_audio_share": self.needs_audio_share,
               "relation_weight": self.relation_weight, "null_row_share": self.null_row_share,
               "null_rows_per_folder": self.null_rows_per_folder, "test_n_tracks": list(self.test_n_tracks),
               "scene": self.scene.to_dict()}
        if self.train_name_slot:  # recorded only when on: datasets written before it existed still match
            out["train_name_slot"] = True
        if self.train_recolour:  # likewise
            out["train_recolour"] = self.train_recolour
        if self.stereo:  # likewise
            out["stereo"] = True
        return out

    def recolour_for(self, split: str) -> float:
        """Chance that an object of a ``split`` clip is recoloured (``train_recolour`` for train, else 0)."""
        return self.train_recolour if split == "train" else 0.0


def check_size(size: int) -> int:
    """Return ``size`` if it is a usable frame side, else raise ValueError naming the range."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels, got {size!r}")
    return size


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset("tiny", {"train": 6, "val": 3, "test_s": 3, "test_u": 3, "test_n": 3},
                        expressions_per_clip=2, size=64),
    "small": SynthPreset("small", {"train": 150, "val": 30, "test_s": 40, "test_u": 40, "test_n": 40},
                         expressions_per_clip=2, size=96),
    "medium": SynthPreset("medium", {"train": 1500, "val": 200, "test_s": 300, "test_u": 300, "test_n": 200},
                          expressions_per_clip=3, train_expressions_per_clip=6, train_needs_audio_share=0.5,
                          train_recolour=0.1, size=128),
    "large": SynthPreset("large", {"train": 6000, "val": 600, "test_s": 1000, "test_u": 1000, "test_n": 600},
                         expressions_per_clip=3, size=128),
}
"""Named presets: ``tiny`` for smoke tests (seconds), ``small`` trains a tiny model on a CPU in
minutes, ``medium`` and ``large`` for longer runs. ``medium`` (the main job's) writes 6 sentences
per train clip (the ``lite`` recipe takes 3 of them per epoch, others each epoch), half of the
slots after the first asking for the audio, as 3 slots at 0.35 do, and gives one training
object in ten another colour than its category's (docs/experiments.md)."""


def get_preset(preset: str | SynthPreset) -> SynthPreset:
    """A preset by name (or the preset itself); ValueError naming the known presets."""
    if isinstance(preset, SynthPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}") from None
