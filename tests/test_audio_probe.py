"""benchmarks/audio_probe.py: the ``tiny`` audio features say which categories sound in each second."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from refavs.synth.generate import generate
from refavs.synth.layout import read_scenes
from refavs.synth.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]

PROBE_PRESET = PRESETS["tiny"].with_counts(train=40, val=15, test_s=0, test_u=0, test_n=0)
"""400 train and 150 val seconds at 32 px: a few seconds to make and featurise. Measured with seed 0:
mAP 0.97 (chance 0.09), loudest accuracy 0.97; trained on shuffled labels, mAP 0.19 (seeds 1, 2:
mAP 1.0, shuffled 0.23 and 0.26)."""


@pytest.fixture(scope="module")
def probe_module():
    spec = importlib.util.spec_from_file_location("audio_probe", REPO / "benchmarks" / "audio_probe.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module       # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe") / "data"
    generate(root, seed=0, preset=PROBE_PRESET, size=32, workers=1)
    return root


def test_average_precision_by_hand(probe_module):
    ap = probe_module.average_precision
    assert ap(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert ap(np.array([0.1, 0.9, 0.5]), np.array([0, 1, 1])) == 1.0
    assert ap(np.ones(4), np.array([1, 0, 0, 1])) == pytest.approx((1 / 3 + 2 / 4) / 2)   # ties count against
    assert np.isnan(ap(np.ones(3), np.zeros(3)))
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.7]])
    labels = np.array([[1, 0], [0, 1], [0, 0]], dtype=bool)
    assert probe_module.mean_average_precision(scores, labels) == 1.0
    assert probe_module.mean_average_precision(-scores, labels) < 0.6


def test_labels_follow_scenes(probe_module, probe_data):
    categories = probe_module.split_categories(probe_data)
    assert len(categories) == 12
    labels = probe_module.second_labels(probe_data, "train", categories)
    records = [r for r in read_scenes(probe_data) if r["split"] == "train"]
    assert labels.folders == [r["folder"] for r in records]
    assert labels.sounding.shape == (40, 10, 12) and labels.loudest.shape == (40, 10)
    for n, rec in enumerate(records):
        for t in range(10):
            names = {o["visual"]["category"] for o in rec["objects"] if t in o["audio"]["seconds"]}
            assert {categories[c] for c in np.flatnonzero(labels.sounding[n, t])} == names
            if labels.loudest[n, t] >= 0:
                assert categories[labels.loudest[n, t]] in names
            elif names:   # only a tie between categories leaves a sounding second without a loudest one
                levels = [(o["audio"]["level_db"], o["visual"]["category"]) for o in rec["objects"]
                          if t in o["audio"]["seconds"]]
                top = max(level for level, _ in levels)
                assert len({c for level, c in levels if level == top}) > 1
    assert (labels.loudest >= 0).sum() > 100 and (~labels.sounding.any(axis=-1)).sum() > 20


def test_probe_reads_the_categories_and_shuffled_labels_do_not(probe_module, probe_data):
    result = probe_module.run(probe_data, shuffle_control=True, log=lambda m: None)
    print(result)
    assert result["n_train_seconds"] == 400 and result["n_val_seconds"] == 150
    assert result["chance_mAP"] < 0.15
    assert result["mAP"] >= 0.85, result
    assert result["loudest_acc"] >= 0.8, result
    assert result["shuffled_mAP"] <= 0.45 and result["mAP"] - result["shuffled_mAP"] >= 0.4, result
    assert result["shuffled_loudest_acc"] <= 0.4, result


def test_main_prints_one_json_line(probe_module, probe_data, capsys):
    assert probe_module.main(["--data-dir", str(probe_data)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert {"mAP", "loudest_acc", "n_train_seconds", "n_val_seconds", "seconds"} <= set(result)
    assert list(result)[:5] == ["mAP", "loudest_acc", "n_train_seconds", "n_val_seconds", "seconds"]
    assert result["mAP"] >= 0.85 and result["seconds"] > 0
