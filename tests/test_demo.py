"""The README's main job, reduced (the tiny Synth preset): it runs and its report holds the scores."""

from __future__ import annotations

import json

from refavs.cli import main


def test_demo_runs_and_reuses_its_data(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "generating Ref-AVS Synth" in printed and "no problems" in printed and "Mix" in printed
    report = json.loads((out / "report.json").read_text())
    every, nothing = report["baselines"]["every-object"], report["baselines"]["nothing"]
    assert nothing["splits"]["test_n"]["S"] == 0.0 and nothing["splits"]["test_n"]["J"] == 1.0
    assert every["splits"]["test_s"]["J"] > nothing["splits"]["test_s"]["J"]
    assert every["splits"]["test_n"]["S"] > 0.0     # it segments the null clips' real objects
    assert "needs_audio" in every["splits"]["test_s"]["cues"]
    assert (out / "report.md").read_text().startswith("# refavs demo")
    assert main(["demo", "--out", str(out), "--preset", "tiny"]) == 0
    assert "reusing Ref-AVS Synth" in capsys.readouterr().out
