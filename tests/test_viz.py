"""`refavs viz`: sample and report pictures, from real data, real scores and real report code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refavs.cli import main
from refavs.data.layout import DatasetLayout
from refavs.data.masks import load_clip_masks
from refavs.data.metadata import read_metadata
from refavs.demo import GOALS, REPORT_KIND
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import SCORE_KIND, SPLIT_SCORE_KIND, score_predictions
from refavs.synth.generate import generate
from refavs.synth.presets import PRESETS
from refavs.viz.report import READERS, ReportError, ReportStyle, parse_report, render_report
from refavs.viz.sample import SampleError, SampleStyle, render_sample

TEST_SPLITS = ("test_s", "test_u", "test_n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viz") / "data"
    preset = PRESETS["tiny"].with_counts(train=0, val=0, test_s=2, test_u=2, test_n=1)
    generate(root, seed=0, preset=preset, size=64, workers=1)
    return root


@pytest.fixture(scope="module")
def preds(data) -> dict[str, Path]:
    """Predictions of three kinds for every test expression: perfect, empty, and every object."""
    from refavs.baselines import write_baseline

    out = data.parent / "preds"
    layout = DatasetLayout(data)
    for e in read_metadata(data, TEST_SPLITS):
        truth = load_clip_masks(layout, e).astype(np.float32)
        write_prediction(out / "perfect", e.uid, truth)
        write_prediction(out / "empty", e.uid, np.zeros_like(truth))
    write_baseline("every-object", data, TEST_SPLITS, out / "every", workers=1)
    return {"perfect": out / "perfect", "empty": out / "empty", "every": out / "every"}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


def _near(image: np.ndarray, colour: str, tolerance: int = 12) -> int:
    from matplotlib.colors import to_rgb

    target = np.array([round(255 * c) for c in to_rgb(colour)])
    return int((np.abs(image - target).max(axis=-1) <= tolerance).sum())


def _rows(image: np.ndarray, style: SampleStyle) -> tuple[np.ndarray, np.ndarray]:
    """The frames strip and the inside of the spectrogram, cut by the style's geometry."""
    dpi, height = style.dpi, image.shape[0]
    frames_top = round(style.title_in * dpi)
    frames = image[frames_top: frames_top + round(style.frames_in * dpi)]
    left, right = round(style.margin_left_in * dpi), round((style.margin_left_in + 10 * style.cell_in) * dpi)
    spec_top, spec_bottom = height - round((0.6 + style.spectrogram_in) * dpi), height - round(0.6 * dpi)
    return frames, image[spec_top + 5: spec_bottom - 5, left + 5: right - 5]


def test_sample_shows_masks_prediction_and_spectrogram(data, preds, tmp_path):
    style = SampleStyle()
    first = read_metadata(data, ["test_s"])[0]
    plain = render_sample(data, tmp_path / "plain.png", uid=first.uid, style=style)
    with_pred = render_sample(data, tmp_path / "pred.png", split="test_s", index=0, pred_dir=preds["every"],
                              style=style)
    a, b = _rgb(plain), _rgb(with_pred)
    assert a.shape[:2][::-1] == style.pixels == b.shape[:2][::-1] == (1500, round(style.height_in * 100))
    frames_a, spec_a = _rows(a, style)
    frames_b, _ = _rows(b, style)
    assert _near(frames_a, style.truth_colour) > 200                 # the green outline of the truth
    assert _near(frames_a, style.prediction_colour) == 0
    assert _near(frames_b, style.prediction_colour, 40) > 200        # the magenta prediction
    assert (frames_a != frames_b).any(axis=-1).sum() > 1000
    assert spec_a.std() > 20 and len(np.unique(spec_a.reshape(-1, 3), axis=0)) > 50   # not blank
    # a null expression has no outline; the size does not depend on the sample; DPI scales it
    small = SampleStyle(dpi=50)
    c = _rgb(render_sample(data, tmp_path / "null.png", split="test_n", index=0, style=small))
    assert c.shape[:2][::-1] == small.pixels == (750, round(style.height_in * 50))
    assert _near(_rows(c, small)[0], style.truth_colour) == 0
    assert not list(tmp_path.glob(".*.tmp"))                          # written atomically, nothing left over


def test_sample_errors_name_the_problem(toy_dataset, tmp_path):
    with pytest.raises(SampleError, match="uid 'nope' is not in"):
        render_sample(toy_dataset, tmp_path / "x.png", uid="nope")
    with pytest.raises(SampleError, match="index 5 is out of range.*has 2 expression"):
        render_sample(toy_dataset, tmp_path / "x.png", split="test_s", index=5)
    rows = read_metadata(toy_dataset)
    layout = DatasetLayout(toy_dataset)
    audio = layout.audio(rows[0].folder)
    audio.unlink()
    with pytest.raises(SampleError, match=f"{audio}: audio file not found"):
        render_sample(toy_dataset, tmp_path / "x.png", uid=rows[0].uid)
    frame = layout.frame(rows[2].folder, 7)
    frame.unlink()
    with pytest.raises(SampleError, match=f"{frame}: frame not found"):
        render_sample(toy_dataset, tmp_path / "x.png", uid=rows[2].uid)
    mask = layout.mask(rows[4].folder, rows[4].fid, 3)
    mask.unlink()
    with pytest.raises(SampleError, match=f"{mask}: mask not found"):
        render_sample(toy_dataset, tmp_path / "x.png", uid=rows[4].uid)
    assert not (tmp_path / "x.png").exists()


def test_sample_cli(toy_dataset, tmp_path, capsys):
    out = tmp_path / "sample.png"
    assert main(["viz", "sample", "--data-dir", str(toy_dataset), "--split", "test_u", "--index", "1",
                 "--out", str(out), "--dpi", "40"]) == 0
    with Image.open(out) as img:
        assert img.size == SampleStyle(dpi=40).pixels
    capsys.readouterr()
    for argv, message in (
        (["--uid", "nope"], "uid 'nope' is not in"),
        (["--split", "val", "--index", "9"], "index 9 is out of range"),
        (["--uid", "x", "--index", "1"], "--index goes with --split"),
        (["--split", "val", "--pred", str(tmp_path / "none")], "is not a folder (--pred)"),
    ):
        code = main(["viz", "sample", "--data-dir", str(toy_dataset), *argv, "--out", str(tmp_path / "bad.png")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad.png").exists()


@pytest.fixture(scope="module")
def reports(data, preds, tmp_path_factory) -> dict[str, Path]:
    """The three JSON kinds, each made by the code that writes it."""
    from refavs.demo import DemoReport

    folder = tmp_path_factory.mktemp("reports")
    perfect = score_predictions(data, TEST_SPLITS, preds["perfect"], workers=1)
    made = {
        "score": perfect.to_dict(),                                                      # refavs score --json
        "score-one-split": score_predictions(data, ["test_u"], preds["every"], workers=1).to_dict(),
        "eval-reference": score_predictions(data, ["test_s", "test_u"], preds["every"],  # eval prints the same
                                            aggregation="reference", workers=1).to_dict(),  # ScoreReport.to_dict
        "demo": DemoReport(out_dir=folder, data_dir=data, scores=perfect.splits,          # the main job's report.json
                           without_audio=score_predictions(data, TEST_SPLITS, preds["empty"], workers=1).splits,
                           without_text=score_predictions(data, TEST_SPLITS, preds["every"], workers=1).splits,
                           baseline=score_predictions(data, TEST_SPLITS, preds["every"], workers=1).splits,
                           timings={"train": 6.0}, train={"run_dir": "run", "steps": 3}).to_dict(),
    }
    paths = {}
    for name, obj in made.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(obj))
    return paths


REPORT_CASES = [  # (file, the kind its writer gives it, the figure's layout, splits)
    ("score", SCORE_KIND, "score", list(TEST_SPLITS)), ("score-one-split", SPLIT_SCORE_KIND, "score", ["test_u"]),
    ("eval-reference", SCORE_KIND, "score", ["test_s", "test_u"]), ("demo", REPORT_KIND, "demo", list(TEST_SPLITS))]


def test_every_written_kind_has_a_reader():
    assert set(READERS) == {SCORE_KIND, SPLIT_SCORE_KIND, REPORT_KIND} == {case[1] for case in REPORT_CASES}


@pytest.mark.parametrize("name, json_kind, kind, splits", REPORT_CASES)
def test_report_kinds(reports, tmp_path, name, json_kind, kind, splits):
    data = json.loads(reports[name].read_text())
    assert data["kind"] == json_kind                                 # written by the code that writes it
    parsed = parse_report(data, str(reports[name]))
    assert parsed.kind == kind and list(parsed.splits) == splits
    assert (parsed.mix is not None) == ("test_s" in splits and "test_u" in splits)
    if kind == "demo":
        assert parsed.mix["J"] == pytest.approx(1.0) and parsed.needs_audio["J_without_audio"] < 1.0
        assert len(parsed.goals) == len(GOALS) and parsed.baseline and parsed.without_audio
        assert parsed.without_text["test_s"]["J"] == pytest.approx(parsed.baseline["test_s"]["J"])
    before = "matplotlib.pyplot" in sys.modules
    out = render_report(reports[name], tmp_path / "report.png", ReportStyle(dpi=50))
    assert ("matplotlib.pyplot" in sys.modules) == before           # no pyplot state
    image = _rgb(out)
    assert image.shape[:2][::-1] == ReportStyle(dpi=50).pixels(kind)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 30         # bars, tables, text


@pytest.mark.parametrize("name, json_kind, kind, splits", REPORT_CASES)
def test_report_without_kind_field(reports, name, json_kind, kind, splits):
    """A file written without the ``kind`` field is read by the one documented fallback."""
    data = json.loads(reports[name].read_text())
    del data["kind"]
    parsed = parse_report(data, "old.json")
    assert parsed.kind == kind and list(parsed.splits) == splits


def test_report_kind_decides_not_the_keys(reports, tmp_path, capsys):
    demo = json.loads(reports["demo"].read_text())
    # the field wins over the keys: a demo report's keys under a score kind are read as a score
    assert parse_report({**demo, "kind": SCORE_KIND}, "d.json").kind == "score"
    with pytest.raises(ReportError, match=r"d\.json: not a report this command draws: kind 'refavs-other'; "
                                          r"expected refavs-score, refavs-split-score, refavs-demo-report"):
        parse_report({**demo, "kind": "refavs-other"}, "d.json")
    with pytest.raises(ReportError, match=r"one\.json: a refavs-split-score without a 'split' name"):
        parse_report({"kind": SPLIT_SCORE_KIND, "J": 1.0}, "one.json")
    with pytest.raises(ReportError, match=r"many\.json: 'splits' is not an object"):
        parse_report({"kind": SCORE_KIND, "Mix_J": None}, "many.json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**demo, "kind": 3}))
    code = main(["viz", "report", "--report", str(unknown), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"{unknown}: not a report this command draws: kind 3;" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_report_rejects_other_json(data, tmp_path, capsys):
    with pytest.raises(ReportError, match=r"synth\.json: not a report this command draws: no 'kind' field"):
        render_report(data / "synth.json", tmp_path / "x.png")
    with pytest.raises(ReportError, match="split 'test_s' lacks J"):
        parse_report({"aggregation": "dataset", "splits": {"test_s": {"J": 1}}, "Mix_J": None}, "odd.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    code = main(["viz", "report", "--report", str(tmp_path / "list.json"), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "list.json: a JSON list" in err and err.count("\n") == 1
    code = main(["viz", "report", "--report", str(data / "metadata.csv"), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "metadata.csv: not readable as JSON" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_report_cli(reports, tmp_path, capsys):
    out = tmp_path / "r.png"
    assert main(["viz", "report", "--report", str(reports["score-one-split"]), "--out", str(out), "--dpi", "30"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.size == ReportStyle(dpi=30).pixels("score")
