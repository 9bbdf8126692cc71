"""Expressions: meanings, what they refer to in a scene, and the words that say them.

A :class:`Meaning` is a small structure: a *head* (:class:`Descriptor`: the objects spoken
of, by category, colour, shape, texture and column), a *clause* that narrows them down (a
filter such as "that stops sounding" or a superlative such as "the loudest"), and optionally
a *relation* to an *anchor* meaning ("the object to the left of the sounding bell").

:func:`resolve` applies a meaning to a scene with everything known: it returns the one object
referred to, :data:`NOTHING` (a null expression) or :data:`AMBIGUOUS` (never written).
:func:`silent_candidates` applies it knowing everything *except the audio*: the objects that
remain possible. An expression ``needs_audio`` when that leaves more than one object (or,
for a null expression, any object at all): only listening decides.

Every clause is defined once, in :data:`CLAUSES`: its wordings, its cue types, the rule that
decides it and what must be seen for it to be possible. Each meaning is said with one of
several templates, so one meaning has several wordings and one wording pattern serves many
meanings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterable, Sequence

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.scoring.cues import CUE_TYPES
from refavs.synth.categories import COLOURS, SHAPES, Category
from refavs.synth.scene import COLUMNS, MIN_RUN, ObjectVisual, Scene, SceneObject


class _Outcome:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOTHING = _Outcome("NOTHING")
"""The meaning refers to no object of the scene (a null expression)."""

AMBIGUOUS = _Outcome("AMBIGUOUS")
"""The meaning fits several objects, or is a close call (such expressions are never written)."""

Resolution = int | _Outcome
"""The referred object's fid, or NOTHING, or AMBIGUOUS."""


@dataclass(frozen=True)
class Descriptor:
    """Which objects a phrase speaks of, by what can be seen. None = any.

    Attributes:
        category: a category name ("the bell").
        colour: a colour name ("the red object").
        shape: a shape name ("the circle").
        texture: ``striped``, ``dotted`` or ``checkered`` ("the striped object").
        column: ``left``, ``centre`` or ``right`` ("... on the left").
    """

    category: str | None = None
    colour: str | None = None
    shape: str | None = None
    texture: str | None = None
    column: str | None = None

    def matches(self, v: ObjectVisual) -> bool:
        return ((self.category is None or v.category == self.category)
                and (self.colour is None or v.colour == self.colour)
                and (self.shape is None or v.shape == self.shape)
                and (self.texture is None or v.texture == self.texture)
                and (self.column is None or v.column == self.column))

    @property
    def is_generic(self) -> bool:
        """True when it names no look (it may still name a column)."""
        return self.category is None and self.colour is None and self.shape is None and self.texture is None

    def cues(self) -> set[str]:
        cues = set() if self.is_generic else {"visual"}
        return cues | ({"spatial"} if self.column else set())

    def noun(self) -> str:
        """The noun phrase without position: "bell", "red circle", "striped object", "object"."""
        if self.category:
            return self.category
        if self.shape:
            return f"{self.colour} {self.shape}" if self.colour else self.shape
        if self.colour:
            return f"{self.colour} object"
        if self.texture:
            return f"{self.texture} object"
        return "object"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------------------------
# Clauses. A filter has a "holds" test (the object fits) and a "clearly not" test (it plainly
# does not fit); an object that is neither is a close call that makes the meaning AMBIGUOUS.

def _runs(seconds: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of consecutive seconds."""
    runs: list[tuple[int, int]] = []
    for s in seconds:
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], s + 1)
        else:
            runs.append((s, s + 1))
    return runs


def _stopped(o: SceneObject) -> bool:
    """Sounded for at least MIN_RUN seconds in a row, then was silent for at least MIN_RUN seconds to the end."""
    runs = _runs(o.audio.seconds)
    return bool(runs) and runs[-1][1] <= NUM_FRAMES - MIN_RUN and runs[-1][1] - runs[-1][0] >= MIN_RUN


def _started_late(o: SceneObject) -> bool:
    """Silent for the first MIN_RUN seconds or more, then sounded for at least MIN_RUN seconds in a row."""
    runs = _runs(o.audio.seconds)
    return bool(runs) and runs[0][0] >= MIN_RUN and runs[0][1] - runs[0][0] >= MIN_RUN


def _appears(v: ObjectVisual) -> bool:
    """Off screen for the first MIN_RUN frames or more, then on screen."""
    return v.first_frame >= MIN_RUN


def _leaves(v: ObjectVisual) -> bool:
    """Gone for the last MIN_RUN frames or more."""
    return v.end_frame <= NUM_FRAMES - MIN_RUN


def _always_on_screen(v: ObjectVisual) -> bool:
    """On screen in every frame (it can sound the whole time)."""
    return all(v.visible)


def _room_to_stop(v: ObjectVisual) -> bool:
    """On screen long enough for a run of MIN_RUN seconds that ends at least MIN_RUN seconds before the end."""
    return min(v.end_frame, NUM_FRAMES - MIN_RUN) - v.first_frame >= MIN_RUN


def _room_to_start(v: ObjectVisual) -> bool:
    """On screen long enough for a run of MIN_RUN seconds that starts at second MIN_RUN or later."""
    return v.end_frame - max(v.first_frame, MIN_RUN) >= MIN_RUN


def _possible(v: ObjectVisual) -> bool:
    """Any look may fit (the clause is decided by the audio alone, or by nothing)."""
    return True


@dataclass(frozen=True)
class Filter:
    """A clause that keeps the head's objects passing a test ("that stops sounding").

    Attributes:
        holds: whether an object fits.
        clearly_not: whether it plainly does not fit (neither = a close call).
    """

    holds: Callable[[SceneObject], bool]
    clearly_not: Callable[[SceneObject], bool]

    def apply(self, scope: Sequence[SceneObject]) -> Resolution:
        fits = [o for o in scope if self.holds(o)]
        if any(not self.holds(o) and not self.clearly_not(o) for o in scope):
            return AMBIGUOUS
        if not fits:
            return NOTHING
        return fits[0].fid if len(fits) == 1 else AMBIGUOUS


SMALLEST, LARGEST = 1, -1
"""Which end of a superlative's key is picked (the sign its key is sorted by)."""


@dataclass(frozen=True)
class Superlative:
    """A clause that picks one of the head's sounding objects by a key ("the loudest").

    Attributes:
        key: the compared quantity of a sounding object.
        pick: :data:`SMALLEST` or :data:`LARGEST`.
    """

    key: Callable[[SceneObject], float]
    pick: int

    def apply(self, scope: Sequence[SceneObject]) -> Resolution:
        sounding = [o for o in scope if o.audio.sounds]
        if not sounding:
            return NOTHING
        if len(sounding) < 2:   # "the loudest" of one sounding object is no real comparison
            return AMBIGUOUS
        ranked = sorted(sounding, key=lambda o: self.pick * self.key(o))
        return ranked[0].fid if self.key(ranked[0]) != self.key(ranked[1]) else AMBIGUOUS


@dataclass(frozen=True)
class Clause:
    """A clause: how it narrows the head's objects down and how it is said.

    Attributes:
        name: its id (stored in the meaning).
        cues: the cue types it adds.
        templates: wordings, with ``{np}`` (noun phrase) and ``{pos}`` (" on the left" or "").
        rule: how it is decided with everything known (a :class:`Filter` or a :class:`Superlative`).
        could_hold: whether an object that looks like this could fit it, whatever the audio.
            Objects only sound while on screen, so some audio clauses need a long enough stay;
            visual clauses are decided exactly.
        anchor: whether an anchor may carry it ("the object to the left of the bell that stops
            sounding").
    """

    name: str
    cues: tuple[str, ...]
    templates: tuple[str, ...]
    rule: Filter | Superlative
    could_hold: Callable[[ObjectVisual], bool] = _possible
    anchor: bool = False

    @property
    def superlative(self) -> bool:
        """True for "the loudest" style clauses (one among the head's sounding objects)."""
        return isinstance(self.rule, Superlative)

    @property
    def uses_audio(self) -> bool:
        """Whether deciding it takes hearing the clip."""
        return "audio" in self.cues

    def apply(self, scope: Sequence[SceneObject]) -> Resolution:
        """What it refers to among ``scope`` (the head's objects), knowing everything."""
        return self.rule.apply(scope)


CLAUSES: dict[str, Clause] = {c.name: c for c in (
    Clause("none", (),
           ("the {np}{pos}", "the {np} that can be seen{pos}", "the {np} shown{pos}"),
           Filter(lambda o: True, lambda o: False),
           anchor=True),
    Clause("sounding", ("audio",),
           ("the sounding {np}{pos}", "the {np}{pos} that is making a sound", "the {np}{pos} making sound"),
           Filter(lambda o: o.audio.sounds, lambda o: not o.audio.sounds),
           anchor=True),
    Clause("silent", ("audio",),
           ("the silent {np}{pos}", "the {np}{pos} that makes no sound", "the {np}{pos} that stays quiet"),
           Filter(lambda o: not o.audio.sounds, lambda o: o.audio.sounds),
           anchor=True),
    Clause("keeps_sounding", ("audio", "temporal"),
           ("the {np}{pos} that keeps making sound", "the {np}{pos} that sounds the whole time",
            "the {np}{pos} making sound all the time"),
           Filter(lambda o: len(o.audio.seconds) == NUM_FRAMES,
                  lambda o: len(o.audio.seconds) <= NUM_FRAMES - MIN_RUN),
           could_hold=_always_on_screen, anchor=True),
    Clause("stops_sounding", ("audio", "temporal"),
           ("the {np}{pos} that stops sounding", "the {np}{pos} that falls silent",
            "the {np}{pos} that stops making sound"),
           Filter(_stopped, lambda o: not o.audio.sounds or o.audio.seconds[-1] == NUM_FRAMES - 1),
           could_hold=_room_to_stop, anchor=True),
    Clause("starts_sounding", ("audio", "temporal"),
           ("the {np}{pos} that starts sounding later", "the {np}{pos} that is silent at first and then sounds",
            "the {np}{pos} that begins to make sound later"),
           Filter(_started_late, lambda o: not o.audio.sounds or o.audio.seconds[0] == 0),
           could_hold=_room_to_start),
    Clause("appears", ("visual", "temporal"),
           ("the {np}{pos} that appears later", "the {np}{pos} that comes into view",
            "the {np}{pos} that enters the scene later"),
           Filter(lambda o: _appears(o.visual), lambda o: o.visual.first_frame == 0),
           could_hold=_appears),
    Clause("leaves", ("visual", "temporal"),
           ("the {np}{pos} that leaves the scene", "the {np}{pos} that disappears",
            "the {np}{pos} that goes out of view"),
           Filter(lambda o: _leaves(o.visual), lambda o: o.visual.end_frame == NUM_FRAMES),
           could_hold=_leaves),
    Clause("loudest", ("audio",),
           ("the {np}{pos} making the loudest sound", "the loudest {np}{pos}", "the {np}{pos} that sounds the loudest"),
           Superlative(lambda o: o.audio.level_db, LARGEST),
           anchor=True),
    Clause("quietest", ("audio",),
           ("the {np}{pos} making the quietest sound", "the quietest sounding {np}{pos}",
            "the {np}{pos} with the softest sound"),
           Superlative(lambda o: o.audio.level_db, SMALLEST)),
    Clause("lowest_pitch", ("audio",),
           ("the {np}{pos} with the lowest pitch", "the {np}{pos} making the lowest sound",
            "the lowest-pitched {np}{pos}"),
           Superlative(lambda o: o.audio.pitch_hz, SMALLEST)),
    Clause("highest_pitch", ("audio",),
           ("the {np}{pos} with the highest pitch", "the {np}{pos} making the highest sound",
            "the highest-pitched {np}{pos}"),
           Superlative(lambda o: o.audio.pitch_hz, LARGEST)),
    Clause("first_sound", ("audio", "temporal"),
           ("the first {np}{pos} to make a sound", "the {np}{pos} that sounds first",
            "the {np}{pos} that starts making sound first"),
           Superlative(lambda o: o.audio.onset, SMALLEST),
           anchor=True),
    Clause("last_sound", ("audio", "temporal"),
           ("the last {np}{pos} to start making a sound", "the {np}{pos} that starts sounding last",
            "the {np}{pos} that is the last to make a sound"),
           Superlative(lambda o: o.audio.onset, LARGEST)),
)}
"""Every clause, by name; enumeration and statistics go through them in this order."""

POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": (" on the left", " on the left side"),
    "centre": (" in the middle", " in the centre"),
    "right": (" on the right", " on the right side"),
}
"""Wordings of a head's column."""

RELATIONS: dict[str, tuple[str, ...]] = {
    "left_of": ("the {np} to the left of {anchor}", "the {np} left of {anchor}",
                "the {np} on the left side of {anchor}"),
    "right_of": ("the {np} to the right of {anchor}", "the {np} right of {anchor}",
                 "the {np} on the right side of {anchor}"),
}
"""Relations to an anchor and their wordings. The target is the one head-matching object in
a column strictly on that side of the anchor's column."""

REAL_NULL_TEMPLATES: dict[str, str] = {
    "sounding": "The sounding object",
    "loudest": "The object making a loudest sound",
    "lowest_pitch": "The object making a lowest sound",
    "first_sound": "The first object to make a sound",
    "last_sound": "The last object to make a sound",
    "keeps_sounding": "The object making a continuous sound",
}
"""Six of the real benchmark's eight null sentences, verbatim, by the clause they say (the other
two speak of rhythm, which no clause decides). Synth uses them for the null rows of replaced
tracks (:mod:`refavs.synth.null_tracks`) and, so that the words alone never mean "nothing", as
one more wording of the same meaning in clips where it has a target ("The sounding object" when
one object sounds)."""

NAMED_TEXTURES: tuple[str, ...] = ("striped", "dotted", "checkered")
"""Textures expressions mention ("solid" is no cue)."""


@dataclass(frozen=True)
class Meaning:
    """What an expression means.

    Attributes:
        head: the objects spoken of.
        clause: a key of :data:`CLAUSES` narrowing them down (``none`` for a plain description).
        relation: a key of :data:`RELATIONS`, or None. With a relation the clause is ``none``.
        anchor: the meaning of the object the relation is taken from.
    """

    head: Descriptor
    clause: str = "none"
    relation: str | None = None
    anchor: "Meaning | None" = None

    def __post_init__(self) -> None:
        if self.clause not in CLAUSES:
            raise ValueError(f"unknown clause {self.clause!r}")
        if (self.relation is None) != (self.anchor is None) or (self.relation and self.relation not in RELATIONS):
            raise ValueError("a relation needs an anchor and an anchor a relation (left_of or right_of)")

    @property
    def kind(self) -> str:
        """``relation`` or the clause's name (used to balance what gets written)."""
        return "relation" if self.relation else self.clause

    @property
    def is_name(self) -> bool:
        """True when it only names a category ("the trumpet"): no look, place, clause or relation."""
        h = self.head
        return (h.category is not None and h.colour is None and h.shape is None and h.texture is None
                and h.column is None and self.clause == "none" and self.anchor is None)

    def cues(self) -> set[str]:
        cues = self.head.cues() | set(CLAUSES[self.clause].cues)
        if self.anchor is not None:
            cues |= {"spatial"} | self.anchor.cues()
        return cues

    def to_dict(self) -> dict:
        return {"head": self.head.to_dict(), "clause": self.clause, "relation": self.relation,
                "anchor": None if self.anchor is None else self.anchor.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Meaning":
        return cls(Descriptor(**d["head"]), d["clause"], d.get("relation"),
                   None if d.get("anchor") is None else cls.from_dict(d["anchor"]))


def _side(relation: str, target: ObjectVisual, anchor: ObjectVisual) -> bool:
    t, a = COLUMNS.index(target.column), COLUMNS.index(anchor.column)
    return t < a if relation == "left_of" else t > a


def resolve(meaning: Meaning, scene: Scene) -> Resolution:
    """What ``meaning`` refers to in ``scene``, knowing everything."""
    scope = [o for o in scene.objects if meaning.head.matches(o.visual)]
    if meaning.anchor is None:
        return CLAUSES[meaning.clause].apply(scope)
    anchor = resolve(meaning.anchor, scene)
    if not isinstance(anchor, int):
        return anchor
    a = scene.objects[anchor].visual
    fits = [o for o in scope if o.fid != anchor and _side(meaning.relation, o.visual, a)]
    if not fits:
        return NOTHING
    return fits[0].fid if len(fits) == 1 else AMBIGUOUS


def silent_candidates(meaning: Meaning, visuals: Sequence[ObjectVisual]) -> tuple[int, ...]:
    """The objects (indices into ``visuals``, i.e. fids) ``meaning`` may refer to when the audio is unknown.

    Each clause keeps the head-matching objects that could fit it (:attr:`Clause.could_hold`):
    audio clauses those on screen long enough, visual clauses exactly those that fit. With a
    relation, every possible anchor is tried and the single object on the named side of it (if
    there is one) is kept.
    """
    scope = [i for i, v in enumerate(visuals) if meaning.head.matches(v)]
    if meaning.anchor is None:
        could_hold = CLAUSES[meaning.clause].could_hold
        return tuple(i for i in scope if could_hold(visuals[i]))
    found: set[int] = set()
    for a in silent_candidates(meaning.anchor, visuals):
        fits = [i for i in scope if i != a and _side(meaning.relation, visuals[i], visuals[a])]
        if len(fits) == 1:
            found.add(fits[0])
    return tuple(sorted(found))


# ---------------------------------------------------------------------------------------------
# Enumeration and wording


@dataclass(frozen=True)
class Resolved:
    """A meaning resolved against a scene.

    Attributes:
        meaning: the meaning.
        target: the referred object's fid, or None for a null expression.
        candidates: fids still possible without the audio (see :func:`silent_candidates`).
        needs_audio: True when the audio decides (several candidates, or any candidate for a null one).
    """

    meaning: Meaning
    target: int | None
    candidates: tuple[int, ...]
    needs_audio: bool

    @property
    def cues(self) -> tuple[str, ...]:
        """Its cue types, in :data:`CUE_TYPES` order (``null`` added for a null expression)."""
        cues = self.meaning.cues() | ({"null"} if self.target is None else set())
        return tuple(c for c in CUE_TYPES if c in cues)


def _descriptors(scene: Scene, pool: Sequence[Category], use_names: bool, absent: bool) -> list[Descriptor]:
    """Heads worth saying for a scene: looks and columns present (and absent ones when ``absent``)."""
    visuals = [o.visual for o in scene.objects]
    looks: set[tuple] = set()
    for v in visuals:
        looks.update({(None, v.colour, None, None), (None, None, v.shape, None), (None, v.colour, v.shape, None),
                      (None, None, None, None)})
        if use_names:
            looks.add((v.category, None, None, None))
        if v.texture in NAMED_TEXTURES:
            looks.add((None, None, None, v.texture))
    if absent:
        looks.update((None, c, None, None) for c in COLOURS)
        looks.update((None, None, s, None) for s in SHAPES)
        looks.update((None, c.look.colour, c.look.shape, None) for c in pool)
        if use_names:
            looks.update((c.name, None, None, None) for c in pool)
    columns: list[str | None] = [None, *COLUMNS] if absent else [None, *sorted({v.column for v in visuals})]
    heads = {Descriptor(*look, column=col) for look in looks for col in columns}
    return sorted(heads, key=lambda d: tuple("" if x is None else x for x in d.to_dict().values()))


def enumerate_meanings(scene: Scene, pool: Sequence[Category], use_names: bool = True,
                       null: bool = False) -> list[Resolved]:
    """Every meaning worth writing for ``scene``: those with one target (``null=False``) or none (``null=True``).

    Args:
        scene: the clip.
        pool: the categories of the clip's split (absent ones may be named by null expressions).
        use_names: whether heads may name categories (False for test_u).
        null: list null meanings (test_n) instead of meanings with a target.
    """
    visuals = [o.visual for o in scene.objects]
    heads = _descriptors(scene, pool, use_names, absent=null)
    scopes = {h: tuple(o.fid for o in scene.objects if h.matches(o.visual)) for h in heads}
    results: dict[tuple[tuple[int, ...], str], Resolution] = {}
    candidates: dict[tuple[tuple[int, ...], str], tuple[int, ...]] = {}
    out: list[Resolved] = []

    def add(meaning: Meaning, result: Resolution, cands: tuple[int, ...]) -> None:
        if null and result is not NOTHING or not null and not isinstance(result, int):
            return
        target = result if isinstance(result, int) else None
        if target is not None and target not in cands:
            raise AssertionError(f"{scene.vid}: target {target} of {meaning} not among its candidates {cands}")
        needs_audio = len(cands) > 1 if target is not None else len(cands) > 0
        out.append(Resolved(meaning, target, cands, needs_audio))

    # the same computations as resolve() and silent_candidates(), shared by heads of equal scope
    anchors: list[tuple[Meaning, int, tuple[int, ...]]] = []
    for head in heads:
        scope = scopes[head]
        for clause in CLAUSES.values():
            if clause.name == "none" and head.is_generic and head.column is None:
                continue   # "the object" says nothing
            key = (scope, clause.name)
            if key not in results:
                results[key] = clause.apply([scene.objects[i] for i in scope])
                candidates[key] = tuple(i for i in scope if clause.could_hold(visuals[i]))
            meaning = Meaning(head, clause.name)
            add(meaning, results[key], candidates[key])
            if (isinstance(results[key], int) and head.column is None and clause.anchor
                    and not (head.is_generic and clause.name == "none")):
                anchors.append((meaning, results[key], candidates[key]))
    if null:
        return out
    targets = [h for h in heads if h.column is None and h.category is None and h.texture is None
               and (h.colour is None or h.shape is None)]
    for relation in RELATIONS:
        for anchor, fid, anchor_cands in anchors:
            for head in targets:
                scope = scopes[head]
                fits = [i for i in scope if i != fid and _side(relation, visuals[i], visuals[fid])]
                result = NOTHING if not fits else fits[0] if len(fits) == 1 else AMBIGUOUS
                found = set()
                for a in anchor_cands:
                    side = [i for i in scope if i != a and _side(relation, visuals[i], visuals[a])]
                    if len(side) == 1:
                        found.add(side[0])
                add(Meaning(head, "none", relation, anchor), result, tuple(sorted(found)))
    return out


def choose(rng: np.random.Generator, options: Sequence[Resolved], count: int,
           needs_audio_share: float, relation_weight: float = 1.0) -> list[Resolved]:
    """Pick up to ``count`` distinct meanings.

    Slot 0 asks for a ``needs_audio`` meaning, later slots with probability ``needs_audio_share``;
    when none of the asked kind is left, any is taken. Within the asked group the kind (clause or
    ``relation``) is drawn first (every clause weighs 1, ``relation`` weighs ``relation_weight``),
    then a meaning of that kind uniformly, so rare kinds get their share.
    """
    left = list(options)
    picked: list[Resolved] = []
    for slot in range(count):
        if not left:
            break
        want = slot == 0 or rng.random() < needs_audio_share
        group = [r for r in left if r.needs_audio == want] or left
        kinds = sorted({r.meaning.kind for r in group})
        weights = np.array([relation_weight if k == "relation" else 1.0 for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        of_kind = [r for r in group if r.meaning.kind == kind]
        choice = of_kind[int(rng.integers(len(of_kind)))]
        picked.append(choice)
        left = [r for r in left if r.meaning != choice.meaning]
    return picked


def name_only(rng: np.random.Generator, options: Sequence[Resolved], chosen: Sequence[Resolved]) -> list[Resolved]:
    """One meaning of ``options`` that only names a category ("the trumpet"), not among ``chosen``,
    drawn uniformly; none when the scene has no category once."""
    taken = {r.meaning for r in chosen}
    names = [r for r in options if r.meaning.is_name and r.meaning not in taken]
    return [names[int(rng.integers(len(names)))]] if names else []


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def phrase(meaning: Meaning, rng: np.random.Generator, anchor: bool = False) -> str:
    """One wording of ``meaning`` (lower case, starting with "the").

    An anchor without a clause is said plainly ("left of the red circle", not "left of the red
    circle that can be seen").
    """
    head = meaning.head
    pos = _pick(rng, POSITION_PHRASES[head.column]) if head.column else ""
    if meaning.anchor is not None:
        return _pick(rng, RELATIONS[meaning.relation]).format(
            np=head.noun(), anchor=phrase(meaning.anchor, rng, anchor=True))
    templates = CLAUSES[meaning.clause].templates
    if not anchor and head == Descriptor() and meaning.clause in REAL_NULL_TEMPLATES:
        templates = (*templates, REAL_NULL_TEMPLATES[meaning.clause][0].lower() + REAL_NULL_TEMPLATES[meaning.clause][1:])
    template = templates[0] if anchor and meaning.clause == "none" else _pick(rng, templates)
    return template.format(np=head.noun(), pos=pos)


def sentence(meaning: Meaning, rng: np.random.Generator) -> str:
    """One wording of ``meaning`` as written in metadata.csv ("The sounding bell on the left")."""
    text = phrase(meaning, rng)
    return text[0].upper() + text[1:]


def words(texts: Iterable[str]) -> set[str]:
    """Lower-case words of some texts (for vocabulary checks)."""
    return {w for t in texts for w in t.lower().replace("-", " ").split()}
