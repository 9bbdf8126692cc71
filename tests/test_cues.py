"""The keyword cue classifier: hand examples and coverage of the real benchmark."""

from __future__ import annotations

import warnings

import pytest

from refavs.data import read_metadata
from refavs.scoring.cues import CUE_TYPES, classify_cues, classify_cues_explained


@pytest.mark.parametrize("expression, split, expected", [
    ("The object making the loudest sound.", "test_s", ("audio",)),
    ("The first object to make a sound.", "train", ("audio", "temporal")),
    ("The sounding object on the left of the ukulele.", "train", ("audio", "spatial")),
    ("The object having white and gray fur.", "val", ("visual",)),
    ("The cat appearing through the entire video.", "val", ("temporal",)),
    ("The man on the right of the sounding tabla.", "train", ("audio", "visual", "spatial")),
    ("The object making a lowest sound", "test_n", ("null",)),
])
def test_hand_examples(expression, split, expected):
    assert classify_cues(expression, split) == expected


def test_fallback_is_visual_and_reported():
    assert classify_cues_explained("The cello.", "test_s") == (("visual",), True)
    assert classify_cues_explained("The sounding cello.", "test_s") == (("audio",), False)


def test_real_benchmark_every_expression_is_tagged(real_metadata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = read_metadata(real_metadata)
    fallback = 0
    for e in rows:
        tags, used_fallback = classify_cues_explained(e.exp, e.split)
        assert tags and set(tags) <= set(CUE_TYPES)
        assert (tags == ("null",)) == (e.split == "test_n")
        fallback += used_fallback
    non_null = sum(e.split != "test_n" for e in rows)
    # the keywords, not the fall-back, tag nearly every real expression
    assert fallback / non_null < 0.05
