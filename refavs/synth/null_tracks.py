"""Null rows as the real benchmark has them: the clip's frames with another audio track.

The real benchmark's null rows (train 608, val 72, test_n 1,028; section 2 of the reference
page) live in media folders ``null_m-<vid>`` and ``null_c-<vid>``: the frames of a clip whose
objects are on screen, with an audio track that is not the original's, and a sentence about a
sound ("The sounding object", "The first object to make a sound") that no visible object
makes. So "nothing" is decided by listening. Ref-AVS Synth writes the same two kinds:

- ``muted`` (``null_m-<vid>``): the clip's frames with the background noise alone;
- ``changed`` (``null_c-<vid>``): the clip's frames with a track in which off-screen sources
  sound (categories of the split that are not in the clip, none with the sound of a visible
  object), in the seconds and at the levels the clip's own objects sounded.

The sentences are those of the clip that need a visible object to sound (resolved again on the
clip with every object silent, :func:`silenced`, they refer to nothing): first the clip's own
written sentences (the same words now have no target, which only the audio tells), then the
real benchmark's templates (:data:`~refavs.synth.expressions.REAL_NULL_TEMPLATES`), then other
sound sentences of the clip.

Synth's own null rows of test_n keep the original track: ``condition`` (the sentence names an
object of the clip and its sound, place or relation fails) and ``absent`` (it names a look
that is not there). :func:`null_kind_of` says which.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.synth.categories import Category
from refavs.synth.expressions import NOTHING, REAL_NULL_TEMPLATES, Descriptor, Meaning, Resolved, resolve
from refavs.synth.scene import ObjectAudio, Scene, SceneObject

MUTED, CHANGED, CONDITION, ABSENT = "muted", "changed", "condition", "absent"
NULL_KINDS: tuple[str, ...] = (MUTED, CHANGED, CONDITION, ABSENT)
"""Every kind of null row Synth writes (the metadata's ``null_kind`` column)."""

ORIGINAL = "original"
"""The ``track`` of a media folder that has the clip's own audio."""

TRACK_PREFIXES: dict[str, str] = {MUTED: "null_m", CHANGED: "null_c"}
"""Media folder prefix of each replaced track, as the real benchmark names them."""


def null_track_folder(vid: str, track: str) -> str:
    """``null_m-<vid>`` (muted) or ``null_c-<vid>`` (changed)."""
    return f"{TRACK_PREFIXES[track]}-{vid}"


def silenced(scene: Scene) -> Scene:
    """``scene`` with every object silent: what can be resolved on a clip whose track was replaced."""
    quiet = tuple(dataclasses.replace(o, audio=dataclasses.replace(o.audio, seconds=())) for o in scene.objects)
    return dataclasses.replace(scene, objects=quiet)


@dataclass(frozen=True)
class HeardSource:
    """An off-screen source of a ``changed`` track: a category the clip does not show, and when it sounds."""

    category: str
    audio: ObjectAudio

    def to_dict(self) -> dict:
        return {"category": self.category, "audio": self.audio.to_dict()}


def changed_sources(scene: Scene, pool: Sequence[Category], rng: np.random.Generator) -> list[HeardSource]:
    """The sources of a ``changed`` track: one per sounding object of ``scene`` (its seconds and
    level, another category's sound), or one source sounding throughout when none sounds.

    The categories are drawn from ``pool`` among those not in the clip whose sound (pitch and
    timbre) is not a visible object's either, so no visible object can be said to sound.
    """
    shown = {o.visual.category for o in scene.objects}
    sounds = {(o.audio.pitch_hz, o.audio.timbre) for o in scene.objects}
    others = [c for c in pool if c.name not in shown and (c.sound.pitch_hz, c.sound.timbre) not in sounds]
    if not others:
        raise ValueError(f"{scene.vid}: no category of the split is off screen to make a changed track")
    plan = [(o.audio.seconds, o.audio.level_db) for o in scene.objects if o.audio.sounds]
    if not plan:
        plan = [(tuple(range(NUM_FRAMES)), 0.0)]
    order = rng.permutation(len(others))
    out = []
    for k, (seconds, level) in enumerate(plan):
        cat = others[int(order[k % len(others)])]
        out.append(HeardSource(cat.name, ObjectAudio(tuple(seconds), float(level), cat.sound.pitch_hz,
                                                     cat.sound.timbre, cat.sound.rhythm)))
    return out


def track_scene(scene: Scene, track: str, heard: Sequence[HeardSource] = ()) -> Scene:
    """The scene whose objects' sounds make the media folder's audio (for :func:`~refavs.synth.audio.synthesize`):
    the clip's own (``original``), none (``muted``), or the off-screen sources (``changed``)."""
    if track == ORIGINAL:
        return scene
    if track == MUTED:
        return silenced(scene)
    if track == CHANGED:
        if not heard:
            raise ValueError(f"{scene.vid}: a changed track needs its off-screen sources")
        # never drawn: each source stands where the clip's sounding object whose seconds it copies
        # stands (what a stereo track pans by), so neither its timing nor its place tells it apart
        places = [o.visual for o in scene.objects if o.audio.sounds] or [scene.objects[0].visual]
        return dataclasses.replace(scene, objects=tuple(SceneObject(i, places[i % len(places)], h.audio)
                                                        for i, h in enumerate(heard)))
    raise ValueError(f"unknown track {track!r}; use {ORIGINAL}, {MUTED} or {CHANGED}")


@dataclass(frozen=True)
class NullRow:
    """A sentence of a replaced-track folder: its meaning, its words, and the resolution it had on the clip."""

    meaning: Meaning
    text: str
    source: str          # "own" (one of the clip's written sentences), "template" or "clause"


def null_track_rows(scene: Scene, options: Sequence[Resolved], own: Sequence[tuple[Meaning, str]], count: int,
                    rng: np.random.Generator, sentence) -> list[NullRow]:
    """Up to ``count`` sentences that refer to nothing once the clip's track is replaced.

    ``options``: the clip's meanings with a target (:func:`~refavs.synth.expressions.enumerate_meanings`);
    ``own``: the clip's written sentences (meaning, words); ``sentence(meaning, rng)`` words a meaning.
    Kept are those whose meaning resolves to nothing on :func:`silenced` ``(scene)``: at most half
    of ``count`` from ``own`` (same words), then templates of the real benchmark, then other sound meanings of ``options``; no sentence twice.
    """
    quiet = silenced(scene)
    rows: list[NullRow] = []
    texts: set[str] = set()

    def take(meaning: Meaning, text: str, source: str) -> None:
        if len(rows) < count and text not in texts and resolve(meaning, quiet) is NOTHING:
            rows.append(NullRow(meaning, text, source))
            texts.add(text)

    own = list(own)
    for i in rng.permutation(len(own)):
        if len(rows) >= count // 2:
            break
        take(*own[int(i)], "own")
    templates = [Meaning(Descriptor(), c) for c in REAL_NULL_TEMPLATES]
    order = [templates[int(i)] for i in rng.permutation(len(templates))]
    quota = len(rows) + (count + 1) // 2
    for meaning in order:
        if len(rows) >= quota:
            break
        take(meaning, REAL_NULL_TEMPLATES[meaning.clause], "template")
    rest = [r.meaning for r in options if r.meaning.cues() & {"audio"}]
    for i in rng.permutation(len(rest)):
        if len(rows) >= count:
            break
        take(rest[int(i)], sentence(rest[int(i)], rng), "clause")
    for meaning in order:   # a clip with few sound sentences: more of the templates
        take(meaning, REAL_NULL_TEMPLATES[meaning.clause], "template")
    return rows


def names_an_object(meaning: Meaning, scene: Scene) -> bool:
    """Whether the look ``meaning``'s head names (its column left aside) is one of ``scene``'s objects."""
    head = dataclasses.replace(meaning.head, column=None)
    return any(head.matches(o.visual) for o in scene.objects)


def null_kind_of(meaning: Meaning, scene: Scene) -> str:
    """``condition`` when the head of a null ``meaning`` names an object of ``scene``
    (:func:`names_an_object`), else ``absent``."""
    return CONDITION if names_an_object(meaning, scene) else ABSENT
