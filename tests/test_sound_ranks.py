"""Level and pitch rank maps of Ref-AVS Synth's sounding objects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refavs.synth.sound_ranks import IGNORE, sound_rank_maps


def obj(level, pitch, seconds, box):
    return {"audio": {"level_db": level, "pitch_hz": pitch, "seconds": seconds},
            "visual": {"boxes": [box] * 10}}


def test_ranks_are_painted_in_the_boxes_of_sounding_seconds():
    record = {"vid": "v", "size": 96, "objects": [
        obj(0.0, 200.0, [0, 1], [0, 0, 48, 48]),       # loudest, lowest
        obj(-16.0, 800.0, [1], [48, 48, 96, 96]),      # quietest, highest
        obj(-8.0, 400.0, [], [0, 48, 48, 96]),         # silent: no label anywhere
    ]}
    maps = sound_rank_maps(record, size=48)
    assert maps.shape == (10, 2, 48, 48) and maps.dtype == np.float32
    assert np.all(maps[0, :, :24, :24] == [[[1.0]], [[0.0]]])   # level rank 1, pitch rank 0
    assert np.all(maps[0, :, 24:, 24:] == IGNORE)                # the second object is silent at 0
    assert np.all(maps[1, :, 24:, 24:] == [[[0.0]], [[1.0]]])
    assert np.all(maps[:, :, 24:, :24] == IGNORE)                # the silent object
    assert np.all(maps[2:] == IGNORE)


def test_equal_levels_rank_one_half_and_bad_records_are_named():
    record = {"vid": "v", "size": 96, "objects": [obj(-8.0, 200.0, [3], [0, 0, 10, 10]),
                                                  obj(-8.0, 400.0, [3], [50, 50, 60, 60])]}
    maps = sound_rank_maps(record, size=48)
    assert set(np.unique(maps[3, 0])) == {IGNORE, 0.5}
    with pytest.raises(ValueError, match="scene v"):
        sound_rank_maps({"vid": "v", "objects": []})


def test_level_maps_paint_each_object_on_a_fixed_scale():
    from refavs.synth.sound_ranks import level_scale, pitch_scale, sound_level_maps

    record = {"vid": "v", "size": 96, "objects": [
        obj(0.0, 196.0, [0, 1], [0, 0, 48, 48]),
        obj(-16.0, 2489.0, [1], [48, 48, 96, 96]),
    ]}
    maps = sound_level_maps(record, size=48)
    assert maps.shape == (10, 2, 48, 48)
    # unlike the ranks, one object alone keeps its own level: the scale is the same in every clip
    assert np.allclose(maps[0, :, :24, :24], np.array([level_scale(0.0), pitch_scale(196.0)])[:, None, None])
    assert np.all(maps[0, :, 24:, 24:] == IGNORE) and np.all(maps[2:] == IGNORE)
    assert level_scale(0.0) == 1.0 and math.isclose(level_scale(-16.0), 1 / 3, rel_tol=1e-6)
    assert 0 < pitch_scale(196.0) < pitch_scale(2489.0) < 1
    assert maps[1, 0, 30, 30] < maps[1, 0, 10, 10] and maps[1, 1, 30, 30] > maps[1, 1, 10, 10]
    with pytest.raises(ValueError, match="scene v"):
        sound_level_maps({"vid": "v", "size": 96, "objects": [{"audio": {"seconds": [1]}, "visual": {"boxes": []}}]})
