"""Which cues an expression uses: a documented keyword classifier.

Ref-AVS expressions refer to their object through audio, visual, temporal and spatial cues,
often several at once. The real metadata has no cue column, so the scorer tags each
expression by keywords (Ref-AVS Synth writes a ``cue`` column, which is used instead when
present). Rules, applied to the lower-cased expression with word boundaries:

- ``null``: every expression of the ``test_n`` split, and nothing else.
- ``audio``: words about sound: sound(s)/sounding, noise, loud/quiet, pitch, rhythm, tone,
  music, voice, sing/song, play(ed/ing) an instrument, speak/talk, bark, meow, ring, hear ...
- ``temporal``: words about time and order: first, last, before, after, then, while,
  keeps/continuously, start/stop, begin/end, throughout, duration, longer/shorter,
  faster/slower, entire video, again, appear/disappear, ...
- ``spatial``: words about place: left, right, middle, centre, top, bottom, front, behind,
  near, next to, beside, between, above, below, corner, side, closest, farthest ...
- ``visual``: words about looks: colours, sizes (big, small, tall ...), shapes, materials,
  clothes and body (wearing, hair, fur, glasses ...), postures (standing, sitting, lying ...),
  actions seen (holding, riding, dancing ...).
- An expression that gets none of the four (e.g. "The cat.") is tagged ``visual``: it names
  the object by its category, which is seen. :func:`classify_cues_explained` says when this
  fall-back was used; on the real benchmark it applies to few expressions (see docs/data.md).
"""

from __future__ import annotations

import re
from functools import lru_cache

CUE_TYPES: tuple[str, ...] = ("audio", "visual", "temporal", "spatial", "null")
"""Cue types in the order tables list them."""

NULL_SPLIT = "test_n"

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "audio": (
        r"sound\w*", r"noise\w*", r"nois\w+", r"loud\w*", r"quiet\w*", r"silent\w*", r"pitch\w*",
        r"rhythm\w*", r"tone\w*", r"music\w*", r"melod\w*", r"voice\w*", r"vocal\w*", r"sing\w*", r"sang",
        r"song\w*", r"play\w*", r"speak\w*", r"spoke\w*", r"talk\w*", r"say\w*", r"shout\w*", r"scream\w*",
        r"yell\w*", r"cry\w*", r"cries", r"laugh\w*", r"bark\w*", r"meow\w*", r"purr\w*", r"roar\w*",
        r"growl\w*", r"howl\w*", r"chirp\w*", r"tweet\w*", r"hiss\w*", r"buzz\w*", r"honk\w*", r"ring\w*",
        r"beep\w*", r"whistl\w*", r"hum\w*", r"moo\w*", r"neigh\w*", r"quack\w*", r"crow\w*", r"bleat\w*",
        r"audio", r"hear\w*", r"heard", r"audible", r"listen\w*", r"echo\w*", r"volume", r"acoustic", r"strum\w*",
        r"beat\w*", r"drum\w*ing", r"clap\w*", r"knock\w*", r"bang\w*", r"rumbl\w*", r"engine\w* running",
        r"call\w*", r"mak\w+ (?:a |the )?(?:\w+ )?(?:sound|noise)", r"sound-producing", r"noise-producing",
    ),
    "temporal": (
        r"first", r"last", r"before", r"after\w*", r"then", r"while", r"when", r"during", r"until",
        r"keep\w*", r"kept", r"continu\w*", r"constant\w*", r"incessant\w*", r"always", r"never",
        r"start\w*", r"stop\w*", r"begin\w*", r"began", r"end\w*", r"finish\w*", r"throughout",
        r"entire (?:video|clip|time)", r"whole (?:video|clip|time)", r"all the time", r"duration",
        r"long\w*", r"short\w*", r"fast\w*", r"slow\w*", r"quick\w*", r"rapid\w*", r"again", r"later",
        r"earlier", r"initial\w*", r"final\w*", r"previous\w*", r"next", r"second", r"third", r"once",
        r"twice", r"appear\w*", r"disappear\w*", r"leav\w*", r"enter\w*", r"arriv\w*", r"intermittent\w*",
        r"occasional\w*", r"repeated\w*", r"frequent\w*", r"simultaneous\w*", r"at the same time",
        r"briefly", r"moment\w*", r"eventually", r"still",
    ),
    "spatial": (
        r"left\w*", r"right\w*", r"middle", r"cent(?:er|re|ral)\w*", r"top", r"bottom", r"front",
        r"behind", r"back\w*", r"near\w*", r"next to", r"beside\w*", r"between", r"above", r"below",
        r"under\w*", r"over", r"on top of", r"corner", r"side", r"closest", r"close to", r"farthest",
        r"far", r"furthest", r"upper", r"lower", r"foreground", r"background", r"inside", r"outside",
        r"around", r"across", r"opposite", r"facing", r"surround\w*", r"edge", r"distan\w*",
        r"in the (?:car|room|water|cage|hand|arms)", r"position\w*", r"low(?:er|est)? position",
    ),
    "visual": (
        r"white", r"black", r"red\w*", r"green\w*", r"blue\w*", r"yellow\w*", r"orange", r"purple",
        r"pink", r"brown\w*", r"gr[ae]y\w*", r"golden", r"gold", r"silver", r"dark\w*", r"light\w*",
        r"bright\w*", r"colou?r\w*", r"striped", r"spotted", r"big+\w*", r"small\w*", r"large\w*",
        r"little", r"tiny", r"huge", r"tall\w*", r"short-haired", r"long-haired", r"fat", r"thin",
        r"round", r"square", r"wooden", r"metal\w*", r"plastic", r"glass", r"wear\w*", r"dress\w*",
        r"shirt\w*", r"hat", r"cap", r"coat", r"jacket", r"glasses", r"hair\w*", r"fur\w*", r"beard\w*",
        r"bald", r"stand\w*", r"sit\w*", r"sat", r"ly\w*ing", r"lie\w*", r"hold\w*", r"held", r"rid\w*",
        r"danc\w*", r"walk\w*", r"run\w*", r"jump\w*", r"mov\w*", r"moving", r"still", r"look\w*",
        r"old\w*", r"young\w*", r"baby", r"adult", r"man", r"woman", r"boy", r"girl", r"child\w*",
        r"kid\w*", r"person", r"people", r"infant", r"shape\w*", r"visible", r"seen", r"shown", r"empty",
        r"giant", r"wheel\w*", r"sail\w*", r"travel\w*", r"navigat\w*", r"fabric", r"leather",
    ),
}
"""Regular expressions (matched on word boundaries) per cue type."""


@lru_cache(maxsize=None)
def _patterns() -> dict[str, re.Pattern]:
    return {cue: re.compile(r"\b(?:" + "|".join(words) + r")\b") for cue, words in _KEYWORDS.items()}


def classify_cues_explained(expression: str, split: str | None = None) -> tuple[tuple[str, ...], bool]:
    """The cue tags of an expression (in :data:`CUE_TYPES` order) and whether the fall-back was used."""
    if split == NULL_SPLIT:
        return ("null",), False
    text = expression.lower().replace("_", " ")
    tags = tuple(cue for cue, pattern in _patterns().items() if pattern.search(text))
    if not tags:
        return ("visual",), True
    return tuple(c for c in CUE_TYPES if c in tags), False


def classify_cues(expression: str, split: str | None = None) -> tuple[str, ...]:
    """The cue tags of an expression: ``("null",)`` for test_n, else one or more of audio,
    visual, temporal, spatial (see the module docstring for the rules)."""
    return classify_cues_explained(expression, split)[0]
