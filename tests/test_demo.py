"""The README's main job, reduced (tiny Synth preset, a few steps): it runs end to end and its
report holds every number the full job reports (the lite model by default, EEMC tiny on request)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from refavs.cli import main
from refavs.data.metadata import read_metadata
from refavs.demo import GOALS, REPORT_KIND, predictions_dir


def report_uid(out, split: str) -> str:
    return read_metadata(out / "data", [split])[0].uid


def test_demo_end_to_end_and_rerun(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--preset", "tiny", "max_steps=2", "log_every_steps=1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for step in ("generating Ref-AVS Synth", "no problems", "training lite EEMC", "evaluating", "| goal |"):
        assert step in printed
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == REPORT_KIND
    assert set(report["splits"]) == {"val", "test_s", "test_u", "test_n"}
    assert {"J", "F"} <= set(report["splits"]["test_s"]) and "S" in report["splits"]["test_n"]
    assert set(report["mix"]) == {"J", "F"}
    assert {"J", "J_without_audio"} <= set(report["needs_audio"])
    for split in ("test_s", "test_u"):  # and per test split
        assert {"J", "J_without_audio", "n_expressions"} <= set(report["needs_audio"]["splits"][split])
    assert report["needs_audio"]["n_expressions"] > 0 and report["minutes"] > 0
    assert report["train"]["steps"] == 2
    # the text ablation of the test splits: how much the model reads the expression
    assert set(report["without_text"]) == {"test_s", "test_u"}
    assert set(report["without_audio"]) == {"test_s", "test_u", "test_n"}      # null rows without audio too
    assert "text features zeroed: test_s J" in printed and "## lite EEMC, text zeroed" in (out / "report.md").read_text()
    assert list(report["goals"]) == [g.name for g in GOALS]
    assert all(isinstance(g["met"], bool) for g in report["goals"].values())
    # per clause kind of test_s and per null kind of test_n, each with the audio zeroed too
    assert isinstance(report["clauses_test_s"], dict) and isinstance(report["null_kinds_test_n"], dict)
    for split in ("test_s", "test_n"):
        assert {"clauses", "null_kinds"} <= set(report["splits"][split])
        assert "empty_share" in report["splits"][split]
    # the baseline that segments every object beside the model, and the picture of predictions
    assert report["baseline_every_object"]["test_n"]["S"] > 0
    with Image.open(out / "predictions.png") as img:
        assert img.width > 300 and img.height > 300
    assert (out / "report.md").read_text().startswith("# refavs demo")
    pred = out / "predictions" / "lite"                  # named for the model config trained
    assert pred == predictions_dir(out, "lite") and sorted(p.name for p in (out / "predictions").iterdir()) == ["lite"]
    assert (pred / report_uid(out, "test_s")).is_dir() and not (pred / report_uid(out, "val")).exists()
    # a second run reuses the data, the features and the finished run
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "reusing Ref-AVS Synth" in again and "resuming lite EEMC" in again
    # the first run took val's scores from training, the rerun (nothing left to train) scored val
    # itself: the same checkpoint, the same numbers (up to the 8-bit rounding of the saved
    # probabilities, which the rerun scores and training did not)
    rescored = json.loads((out / "report.json").read_text())["splits"]["val"]
    first = report["splits"]["val"]
    assert rescored["n_expressions"] == first["n_expressions"] > 0
    for key in ("J", "F"):
        assert rescored[key] == pytest.approx(first[key], abs=1e-3)


def test_demo_trains_eemc_tiny_on_request(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "tiny", "--config", "tiny", "max_steps=1"]) == 0
    assert "training EEMC tiny" in capsys.readouterr().out
    assert json.loads((out / "run" / "run.json").read_text())["model_config"]["name"] == "tiny"
    assert [p.name for p in (out / "predictions").iterdir()] == ["tiny"]


def test_demo_trains_lite_stereo_on_stereo_synth_and_scores_it_as_mono(tmp_path, capsys):
    import soundfile as sf

    from refavs.data import DatasetLayout, folder_from_uid

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "tiny", "--config", "lite-stereo", "max_steps=1"]) == 0
    printed = capsys.readouterr().out
    assert "medium" not in printed and "(tiny, stereo, seed 0)" in printed and "training lite-stereo EEMC" in printed
    assert json.loads((out / "data" / "synth.json").read_text())["preset"]["stereo"] is True
    audio, _ = sf.read(DatasetLayout(out / "data").audio(folder_from_uid(report_uid(out, "test_s"))), always_2d=True)
    assert audio.shape[1] == 2
    report = json.loads((out / "report.json").read_text())
    assert set(report["as_mono"]) == {"test_s"} and "J" in report["as_mono"]["test_s"]
    assert "the same sound from both sides" in (out / "report.md").read_text()
    assert [p.name for p in (out / "predictions").iterdir()] == ["lite-stereo"]
