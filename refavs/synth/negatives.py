"""Extra null training expressions for Ref-AVS Synth: another clip's sentence that names nothing here.

The real benchmark's training split holds null rows of one kind (608: a clip's frames with a
replaced audio track and a sentence about a sound, :mod:`refavs.synth.null_tracks`), and so
does Synth's. Sentences that fail by their look, place or relation (test_n's ``condition`` and
``absent`` kinds) are in no training split. Synth knows every scene, so it can make exact
negatives of those too: take the meaning of an expression of one training clip, resolve it on the scene of
another (:func:`refavs.synth.expressions.resolve`), and keep the pair when it refers to
NOTHING there ("the sounding guitar" in a clip whose guitar is silent, "the red circle" in one
without). The sentence is the donor's verbatim, so its text features are already cached.

A negative is an :class:`~refavs.data.records.Expression` of the receiving clip with
``empty=True``: its target masks are empty and its target never sounds. On data without
``scenes.jsonl`` (the real benchmark) there is nothing to resolve: :func:`null_negatives`
raises, and the trainer leaves the option off there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from refavs.data.records import Expression
from refavs.synth.expressions import NOTHING, Meaning, resolve
from refavs.synth.layout import read_scenes
from refavs.synth.null_tracks import names_an_object
from refavs.synth.scene import Scene

NEGATIVE_TAG = "neg"
"""The category part of a negative's uid: ``<vid>_neg_<n>`` (media folder ``<vid>``)."""

MAX_DRAWS_PER_NEGATIVE = 20
"""Donor draws tried per wanted negative before giving up on a clip's share."""


def null_negatives(data_dir: str | Path, expressions: Sequence[Expression], share: float,
                   seed: int = 0, present: bool = False,
                   records: Sequence[dict] | None = None) -> list[Expression]:
    """About ``share * len(expressions)`` null expressions for the clips of ``expressions``.

    Each clip receives its share (``share`` times its own expressions, rounded with a seeded
    draw); donors are the other clips' expressions among ``expressions``, drawn uniformly with
    a generator seeded by ``seed``; a donor is kept when its meaning refers to nothing in the
    receiving clip's scene and its sentence is not already one of that clip's. With ``present``,
    only donors whose head (its look, the column left aside) matches an object of the receiving
    clip are kept: the sentence names something that is there, and its sound, its place or its
    relation is what fails ("the guitar that stays silent" while the guitar plays), as for most
    of test_n's sentences.

    Raises:
        FileNotFoundError: ``data_dir`` has no scenes.jsonl (not Ref-AVS Synth).
        ValueError: ``share`` is negative, or an expression's clip or meaning is not in scenes.jsonl.

    ``records``: scenes.jsonl's records when the caller has read them already (not read again).
    """
    if share < 0:
        raise ValueError(f"null negatives: share must be >= 0, got {share}")
    if share == 0 or not expressions:
        return []
    records = {rec["vid"]: rec for rec in (read_scenes(data_dir) if records is None else records)}
    meanings: dict[str, Meaning] = {}
    for rec in records.values():
        for e in rec["expressions"]:
            meanings[e["uid"]] = Meaning.from_dict(e["meaning"])
    by_clip: dict[str, list[Expression]] = {}
    replaced = _null_folders(records)   # a replaced-track folder's null rows: neither donors nor receivers
    expressions = [e for e in expressions if e.folder not in replaced]
    for e in expressions:
        if e.vid not in records:
            raise ValueError(f"{data_dir}: clip {e.vid} of expression {e.uid} is not in scenes.jsonl")
        if e.uid not in meanings:
            raise ValueError(f"{data_dir}: expression {e.uid} has no meaning in scenes.jsonl")
        by_clip.setdefault(e.vid, []).append(e)

    rng = np.random.default_rng([seed, 0x4E45])   # "NE": its own stream, apart from the data order
    donors = list(expressions)
    out: list[Expression] = []
    for vid in sorted(by_clip):
        own = by_clip[vid]
        wanted = share * len(own)
        count = int(wanted) + int(rng.random() < wanted - int(wanted))
        scene = Scene.from_dict(records[vid])
        texts = {e.exp for e in own}
        made = 0
        for _ in range(count * MAX_DRAWS_PER_NEGATIVE):
            if made == count:
                break
            donor = donors[int(rng.integers(len(donors)))]
            if donor.vid == vid or donor.exp in texts:
                continue
            meaning = meanings[donor.uid]
            if resolve(meaning, scene) is not NOTHING:
                continue
            if present and not names_an_object(meaning, scene):
                continue
            texts.add(donor.exp)
            made += 1
            out.append(Expression(vid=vid, uid=f"{vid}_{NEGATIVE_TAG}_{made}", split=own[0].split, fid=0,
                                  exp=donor.exp, empty=True))
    return out


def _null_folders(records: dict[str, dict]) -> set[str]:
    """The replaced-track media folders of ``records`` (``null_folders`` entries)."""
    return {extra["folder"] for rec in records.values() for extra in rec.get("null_folders", ())}
