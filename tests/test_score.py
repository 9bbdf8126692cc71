from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from refavs.baselines import write_baseline
from refavs.cli import main
from refavs.data import DatasetLayout, load_clip_masks, read_metadata
from refavs.scoring.predictions import load_prediction, write_prediction
from refavs.scoring.score import MissingPredictionsError, score_predictions


def write_truth(data_dir, pred_dir, size=256):
    """Predictions equal to the ground truth (probability 1 inside, 0 outside), at ``size``."""
    layout = DatasetLayout(data_dir)
    for e in read_metadata(data_dir):
        masks = load_clip_masks(layout, e).astype(np.float32)
        if size != 256:
            masks = np.stack([np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((size, size),
                              Image.Resampling.NEAREST)) / 255.0 for m in masks])
        write_prediction(pred_dir, e.uid, masks)


def test_perfect_predictions(toy_dataset, tmp_path):
    write_truth(toy_dataset, tmp_path / "pred")
    report = score_predictions(toy_dataset, ["test_s", "test_u", "test_n"], tmp_path / "pred")
    for split in ("test_s", "test_u"):
        r = report.splits[split].result
        assert r.J == pytest.approx(1.0, abs=1e-6) and r.F == pytest.approx(1.0, abs=1e-6)
        assert r.n_expressions == 2 and r.n_frames == 20
    assert report.splits["test_n"].result.S == 0.0
    assert report.mix == pytest.approx({"J": 1.0, "F": 1.0}, abs=1e-6)
    assert set(report.splits["test_s"].cues) >= {"audio", "spatial"}
    assert set(report.splits["test_n"].cues) == {"null"}


def test_predictions_of_other_size_are_resized(toy_dataset, tmp_path):
    write_truth(toy_dataset, tmp_path / "pred", size=64)
    r = score_predictions(toy_dataset, ["test_s"], tmp_path / "pred").splits["test_s"].result
    assert 0.9 < r.J <= 1.0


def test_baselines_and_reference_aggregation(toy_dataset, tmp_path):
    write_baseline("nothing", toy_dataset, ["test_s", "test_n"], tmp_path / "nothing")
    write_baseline("every-object", toy_dataset, ["test_s"], tmp_path / "every")
    nothing = score_predictions(toy_dataset, ["test_s", "test_n"], tmp_path / "nothing")
    assert nothing.splits["test_n"].result.S == 0.0
    assert nothing.splits["test_n"].result.J == pytest.approx(1.0, abs=1e-6)
    # empty predictions: only the threshold 0 selects pixels (p >= 0 everywhere), so per frame
    # precision = object share of the frame, recall = 1, F = 1.3 P / (0.3 P + 1)
    layout = DatasetLayout(toy_dataset)
    shares = np.concatenate([load_clip_masks(layout, e).mean(axis=(1, 2))
                             for e in read_metadata(toy_dataset, ["test_s"])])
    expected_f = float(np.mean(1.3 * shares / (0.3 * shares + 1)))
    assert nothing.splits["test_s"].result.F == pytest.approx(expected_f, abs=1e-9)
    assert nothing.splits["test_s"].result.J == 0.0
    every = score_predictions(toy_dataset, ["test_s"], tmp_path / "every").splits["test_s"].result
    # both objects predicted for each single-object expression: IoU = area(one) / area(both)
    area0, area1 = 32 * 16, 24 * 16
    assert 0.3 < every.J < 0.75
    assert every.J == pytest.approx(np.mean([area0, area1]) / (area0 + area1), abs=0.05)
    ref = score_predictions(toy_dataset, ["test_s"], tmp_path / "every", aggregation="reference")
    # a single reference batch (2 clips <= 4) equals the dataset aggregation
    assert ref.splits["test_s"].result.J == pytest.approx(every.J, abs=1e-9)


def test_missing_predictions(toy_dataset, tmp_path, capsys):
    write_baseline("nothing", toy_dataset, ["test_s"], tmp_path / "pred")
    uid = read_metadata(toy_dataset, ["test_s"])[1].uid
    for f in (tmp_path / "pred" / uid).iterdir():
        f.unlink()
    with pytest.raises(MissingPredictionsError, match=f"1 expression\\(s\\): {uid}"):
        score_predictions(toy_dataset, ["test_s"], tmp_path / "pred")
    report = score_predictions(toy_dataset, ["test_s"], tmp_path / "pred", allow_missing=True)
    assert report.splits["test_s"].n_missing == 1
    assert main(["score", "--data-dir", str(toy_dataset), "--split", "test_s", "--pred-dir",
                 str(tmp_path / "pred")]) == 1
    err = capsys.readouterr().err
    assert uid in err and "Traceback" not in err
    assert main(["score", "--data-dir", str(toy_dataset), "--split", "test_s", "--pred-dir",
                 str(tmp_path / "pred"), "--allow-missing"]) == 0
    captured = capsys.readouterr()
    assert "1 expression(s) had no prediction" in captured.out


def test_cli_json_shapes(toy_dataset, tmp_path, capsys):
    write_truth(toy_dataset, tmp_path / "pred")
    base = ["score", "--data-dir", str(toy_dataset), "--pred-dir", str(tmp_path / "pred"), "--json"]
    assert main([*base, "--split", "test_u"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert {"J", "F", "S", "n_expressions", "n_frames"} <= set(single)
    assert single["n_expressions"] == 2 and single["n_frames"] == 20
    assert main([*base, "--split", "test_s", "test_u", "test_n"]) == 0
    multi = json.loads(capsys.readouterr().out)
    assert set(multi["splits"]) == {"test_s", "test_u", "test_n"}
    assert multi["Mix_J"] == pytest.approx(1.0, abs=1e-6) and multi["Mix_F"] == pytest.approx(1.0, abs=1e-6)
    assert main(["score", "--data-dir", str(toy_dataset), "--pred-dir", str(tmp_path / "pred"),
                 "--split", "test_s", "test_u"]) == 0
    table = capsys.readouterr().out
    assert "Mix" in table and "per cue type" in table


def test_bad_prediction_files(toy_dataset, tmp_path, capsys):
    write_baseline("nothing", toy_dataset, ["test_s"], tmp_path / "pred")
    uid = read_metadata(toy_dataset, ["test_s"])[0].uid
    Image.fromarray(np.zeros((8, 8), dtype=np.uint16)).save(tmp_path / "pred" / uid / "3.png")
    with pytest.raises(ValueError, match="8-bit grayscale"):
        load_prediction(tmp_path / "pred", uid)
    (tmp_path / "pred" / uid / "4.png").write_bytes(b"garbage")
    code = main(["score", "--data-dir", str(toy_dataset), "--split", "test_s", "--pred-dir", str(tmp_path / "pred")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{uid}/3.png" in err or f"{uid}/4.png" in err
    assert main(["score", "--data-dir", str(tmp_path / "nowhere"), "--split", "test_s", "--pred-dir",
                 str(tmp_path / "pred")]) == 2


def test_write_prediction_validates(tmp_path):
    with pytest.raises(ValueError, match="within"):
        write_prediction(tmp_path, "u", np.full((10, 4, 4), 1.5, dtype=np.float32))
    write_prediction(tmp_path, "u", np.full((10, 4, 4), 0.5, dtype=np.float32))
    assert load_prediction(tmp_path, "u", size=4)[0, 0, 0] == pytest.approx(128 / 255)
    for bad in (np.nan, np.inf, -np.inf, -0.5):
        probs = np.zeros((10, 4, 4), dtype=np.float32)
        probs[3, 1, 2] = bad
        with pytest.raises(ValueError, match="finite and within"):
            write_prediction(tmp_path, "bad", probs)
    # every 8-bit level is stored losslessly, whatever the PNG compression: the scorer reads k / 255
    levels = (np.arange(10 * 16 * 16) % 256).reshape(10, 16, 16).astype(np.float32)
    write_prediction(tmp_path, "levels", levels / 255)
    np.testing.assert_array_equal(load_prediction(tmp_path, "levels", size=16), levels / 255.0)
