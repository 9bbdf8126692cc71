"""The object categories of Ref-AVS Synth: what each looks like and what it sounds like.

Every category has a look of its own (a shape, a colour and a texture; no two categories
share a shape *and* a colour, so they stay apart at 96 px even when JPEG blurs the texture)
and a sound of its own (a pitch, a timbre and a rhythm; pitches of the twelve seen
categories are four semitones apart, the four unseen ones fall between them and differ in
timbre from their neighbours).

*Seen* categories appear in train, val, test_s and test_n; *unseen* ones only in test_u.
The unseen looks combine colours and shapes that the seen categories use, so an expression
of test_u ("the green circle", "the sounding object") needs no word training did not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shape = Literal["circle", "square", "triangle", "diamond", "star", "cross", "hexagon"]
Texture = Literal["solid", "striped", "dotted", "checkered"]
Timbre = Literal["sine", "square", "saw", "pluck", "bell", "noise", "vibrato", "chirp"]
Rhythm = Literal["steady", "pulse2", "pulse4"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon")
"""Shapes an object can have (the words expressions use for them)."""

TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
"""Surface patterns: plain colour, horizontal bands, a grid of dots, a checkerboard."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 235),
    "yellow": (245, 215, 40),
    "purple": (160, 70, 210),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
}
"""Object colours by name, saturated (or bright) so they stand out on the muted backgrounds."""

TIMBRES: tuple[str, ...] = ("sine", "square", "saw", "pluck", "bell", "noise", "vibrato", "chirp")
"""Sound sources: pure tone, odd harmonics, all harmonics, decaying saw, inharmonic bell partials,
band-pass noise around the pitch, a tone with a 6 Hz vibrato, a rising sweep per note."""

RHYTHMS: tuple[str, ...] = ("steady", "pulse2", "pulse4")
"""How a sounding second is filled: one held note, two notes, four short notes."""


@dataclass(frozen=True)
class Look:
    """What a category looks like.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: a key of :data:`COLOURS`.
        texture: one of :data:`TEXTURES`.
    """

    shape: Shape
    colour: str
    texture: Texture

    def to_dict(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "texture": self.texture}


@dataclass(frozen=True)
class Sound:
    """What a category sounds like.

    Attributes:
        pitch_hz: fundamental frequency (the centre of the band for ``noise``).
        timbre: one of :data:`TIMBRES`.
        rhythm: one of :data:`RHYTHMS`.
    """

    pitch_hz: float
    timbre: Timbre
    rhythm: Rhythm

    def to_dict(self) -> dict[str, float | str]:
        return {"pitch_hz": self.pitch_hz, "timbre": self.timbre, "rhythm": self.rhythm}


@dataclass(frozen=True)
class Category:
    """One object category.

    Attributes:
        name: the word used in uids and (outside test_u) in expressions; no ``_``.
        look: its shape, colour and texture.
        sound: its pitch, timbre and rhythm.
        seen: True for train/val/test_s/test_n categories, False for test_u ones.
    """

    name: str
    look: Look
    sound: Sound
    seen: bool

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits whose clips may contain this category."""
        return ("train", "val", "test_s", "test_n") if self.seen else ("test_u",)

    def to_dict(self) -> dict:
        return {"name": self.name, "look": self.look.to_dict(), "sound": self.sound.to_dict(),
                "seen": self.seen, "splits": list(self.splits)}


def _cat(name: str, shape: str, colour: str, texture: str, pitch: float, timbre: str, rhythm: str,
         seen: bool = True) -> Category:
    return Category(name, Look(shape, colour, texture), Sound(pitch, timbre, rhythm), seen)


CATEGORIES: tuple[Category, ...] = (
    # seen: pitches a major third (4 semitones) apart, from G3 to E7
    _cat("horn", "diamond", "orange", "solid", 196.0, "saw", "steady"),
    _cat("drum", "square", "red", "checkered", 247.0, "noise", "pulse4"),
    _cat("dog", "circle", "orange", "dotted", 311.0, "square", "pulse2"),
    _cat("guitar", "hexagon", "green", "striped", 392.0, "pluck", "pulse4"),
    _cat("trumpet", "triangle", "yellow", "dotted", 494.0, "square", "steady"),
    _cat("violin", "diamond", "purple", "striped", 622.0, "vibrato", "steady"),
    _cat("piano", "square", "white", "striped", 784.0, "pluck", "pulse2"),
    _cat("flute", "triangle", "blue", "solid", 988.0, "sine", "steady"),
    _cat("siren", "cross", "red", "solid", 1245.0, "vibrato", "pulse2"),
    _cat("bell", "circle", "yellow", "solid", 1568.0, "bell", "pulse2"),
    _cat("bird", "star", "blue", "dotted", 1976.0, "chirp", "pulse4"),
    _cat("whistle", "star", "white", "solid", 2489.0, "sine", "pulse2"),
    # unseen (test_u only): pitches between the seen ones, timbres unlike their neighbours
    _cat("cello", "circle", "green", "checkered", 220.0, "saw", "pulse2", seen=False),
    _cat("frog", "triangle", "green", "dotted", 440.0, "square", "pulse4", seen=False),
    _cat("harp", "hexagon", "purple", "solid", 880.0, "bell", "steady", seen=False),
    _cat("clock", "cross", "yellow", "checkered", 2217.0, "noise", "pulse4", seen=False),
)
"""The category table: 12 seen categories, then 4 unseen ones."""


def seen_categories() -> tuple[Category, ...]:
    """Categories of train, val, test_s and test_n."""
    return tuple(c for c in CATEGORIES if c.seen)


def unseen_categories() -> tuple[Category, ...]:
    """Categories of test_u only."""
    return tuple(c for c in CATEGORIES if not c.seen)


def categories_for_split(split: str) -> tuple[Category, ...]:
    """The pool a split's clips draw their objects from."""
    return unseen_categories() if split == "test_u" else seen_categories()


def get_category(name: str) -> Category:
    """The category called ``name``; KeyError naming the known ones otherwise."""
    for c in CATEGORIES:
        if c.name == name:
            return c
    raise KeyError(f"unknown category {name!r}; known: {', '.join(c.name for c in CATEGORIES)}")


def check_table(categories: tuple[Category, ...] = CATEGORIES) -> None:
    """Raise ValueError if the table breaks one of the rules the generator relies on."""
    names = [c.name for c in categories]
    if len(set(names)) != len(names) or any("_" in n for n in names):
        raise ValueError("category names must be unique and free of '_' (uids are <vid>_<category>_<n>)")
    looks = [(c.look.shape, c.look.colour) for c in categories]
    if len(set(looks)) != len(looks):
        raise ValueError("two categories share a shape and a colour")
    pitches = [c.sound.pitch_hz for c in categories]
    if len(set(pitches)) != len(pitches):
        raise ValueError("two categories share a pitch")
    for c in categories:
        if (c.look.shape not in SHAPES or c.look.colour not in COLOURS or c.look.texture not in TEXTURES
                or c.sound.timbre not in TIMBRES or c.sound.rhythm not in RHYTHMS):
            raise ValueError(f"category {c.name} uses an unknown shape, colour, texture, timbre or rhythm")
