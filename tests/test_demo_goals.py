"""The main job's report from hand-made scores: per clause and per null kind, the goals, and a
goal whose clause or null kind is absent from the data (n/a, not met, no crash)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from refavs.demo import AUDIO_CLAUSES, GOALS, DemoReport, _markdown, pooled_s
from refavs.metrics import MetricResult
from refavs.scoring.score import SplitScore


def result(J=0.5, F=0.5, S=0.0, n=10, empty_share=math.nan, frames=None) -> MetricResult:
    frames = 10 * n if frames is None else frames
    empty = 0 if math.isnan(empty_share) else frames
    return MetricResult(J=J, F=F, S=S, n_expressions=n, n_frames=frames, n_frames_with_object=frames - empty,
                        empty_share=empty_share, n_frames_without_object=empty)


def scores(clause_j: dict, kinds: dict, j=0.8, needs_audio_j=0.6) -> dict[str, SplitScore]:
    """test_s with J per clause, test_u, test_n with (S, empty share, n) per null kind."""
    return {
        "test_s": SplitScore("test_s", result(J=j, F=0.8), cues={"needs_audio": result(J=needs_audio_j)},
                             clauses={c: result(J=v) for c, v in clause_j.items()}),
        "test_u": SplitScore("test_u", result(J=0.6)),
        "test_n": SplitScore("test_n", result(J=0.9, S=0.03, empty_share=0.95, n=20),
                             null_kinds={k: result(S=s, empty_share=e, n=n) for k, (s, e, n) in kinds.items()}),
    }


def report(with_clauses: dict, without_clauses: dict, kinds: dict, kinds_without: dict) -> DemoReport:
    without_audio = scores(without_clauses, kinds_without, j=0.7, needs_audio_j=0.4)
    return DemoReport(out_dir=Path("out"), data_dir=Path("data"), scores=scores(with_clauses, kinds),
                      without_audio=without_audio, without_text={"test_s": SplitScore("test_s", result(J=0.5))},
                      timings={"train": 600.0}, train={"run_dir": "run", "steps": 3})


def strict_json(d: dict) -> dict:
    """The report through JSON; its goals and per clause / null kind parts without NaN."""
    for key in ("goals", "clauses_test_s", "null_kinds_test_n"):
        json.dumps(d[key], allow_nan=False)
    return json.loads(json.dumps(d))


FULL = {"loudest": 0.8, "quietest": 0.7, "highest_pitch": 0.9, "lowest_pitch": 0.6, "relation": 0.5}
FULL_WITHOUT = {"loudest": 0.5, "quietest": 0.65, "highest_pitch": 0.7, "lowest_pitch": 0.3, "relation": 0.5}


def test_goal_values_per_clause_and_null_kind():
    r = report(FULL, FULL_WITHOUT, {"muted": (0.01, 0.99, 10), "changed": (0.03, 0.9, 30)},
               {"muted": (0.3, 0.2, 10), "changed": (0.1, 0.5, 30)})
    values = r.goal_values()
    assert list(values) == [g.name for g in GOALS] and len(GOALS) == 15
    assert values["test_s J loudest drop without audio"] == pytest.approx(0.3)
    assert values["test_s J quietest drop without audio"] == pytest.approx(0.05)
    assert values["test_n S muted"] == 0.01 and values["test_n S changed"] == 0.03
    assert values["test_n empty share"] == 0.95 and values["minutes"] == pytest.approx(10.0)
    # S pooled by frames over muted (100 frames) and changed (300 frames): sqrt of the mean share
    with_audio = math.sqrt((0.01 ** 2 * 100 + 0.03 ** 2 * 300) / 400)
    without = math.sqrt((0.3 ** 2 * 100 + 0.1 ** 2 * 300) / 400)
    assert values["test_n S muted+changed without audio - with audio"] == pytest.approx(without - with_audio)
    assert pooled_s([result(S=0.5, frames=10), result(S=0.0, frames=30)]) == pytest.approx(0.25)
    d = strict_json(r.to_dict())
    goals = d["goals"]
    assert goals["test_n S muted"]["met"] and not goals["test_n S changed"]["met"]
    assert goals["test_s J loudest drop without audio"]["met"] and not goals["test_s J quietest drop without audio"]["met"]
    assert goals["minutes"]["met"] and goals["minutes"]["lower_is_better"]
    assert goals["test_s J - J without text"]["value"] == pytest.approx(0.3)
    assert goals["test_s needs_audio J - J without audio"]["value"] == pytest.approx(0.2)
    assert d["clauses_test_s"]["loudest"] == pytest.approx({"J": 0.8, "J_without_audio": 0.5, "drop": 0.3, "n": 10})
    assert d["null_kinds_test_n"]["changed"] == pytest.approx(
        {"S": 0.03, "S_without_audio": 0.1, "empty_share": 0.9, "empty_share_without_audio": 0.5, "n": 30})
    assert set(d["splits"]["test_s"]["clauses"]) == set(FULL) and set(d["splits"]["test_n"]["null_kinds"]) == {
        "muted", "changed"}
    md = _markdown(r, "medium", 0, "lite EEMC")
    assert "| loudest | 10 | 0.800 | 0.500 | 0.300 |" in md
    assert "| changed | 30 | 0.030 | 0.100 | 0.900 | 0.500 |" in md
    assert "| test_s J loudest drop without audio | >= 0.1 | 0.300 | yes |" in md
    assert "J per clause (n = expressions)" in md and "null rows per kind" in md   # format_report's tables


def test_missing_clause_and_kind_are_na_not_met():
    older = {c: v for c, v in FULL.items() if c != "quietest"}
    r = report(older, FULL_WITHOUT, {"muted": (0.01, 0.99, 10)}, {"muted": (0.3, 0.2, 10)})
    values = r.goal_values()
    for name in ("test_s J quietest drop without audio", "test_n S changed",
                 "test_n S muted+changed without audio - with audio"):
        assert values[name] is None
    assert values["test_s J loudest drop without audio"] == pytest.approx(0.3)
    d = strict_json(r.to_dict())
    assert d["goals"]["test_n S changed"] == {"goal": 0.02, "lower_is_better": True, "value": None, "met": False}
    assert d["goals"]["test_s J quietest drop without audio"]["met"] is False
    md = _markdown(r, "medium", 0, "lite EEMC")
    assert "| test_n S changed | <= 0.02 | n/a | no |" in md
    assert "| test_s J quietest drop without audio | >= 0.1 | n/a | no |" in md


def test_dataset_without_clause_or_null_kind_columns():
    """An older dataset: no clause or null_kind column, and no audio-zeroed test_n."""
    r = report({}, {}, {}, {})
    del r.without_audio["test_n"]
    values = r.goal_values()
    missing = {"test_n S muted", "test_n S changed", "test_n S muted+changed without audio - with audio",
               *(f"test_s J {c} drop without audio" for c in AUDIO_CLAUSES)}
    assert {name for name, v in values.items() if v is None} == missing
    d = r.to_dict()
    assert d["clauses_test_s"] == {} and d["null_kinds_test_n"] == {}
    assert not any(d["goals"][name]["met"] for name in missing) and d["goals"]["test_s J"]["met"]
    md = _markdown(r, "medium", 0, "lite EEMC")
    assert "J per clause kind of test_s" not in md and "Null rows of test_n per kind" not in md
