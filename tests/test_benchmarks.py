"""Smoke tests of benchmarks/train.py (the lite config, configs side by side) and benchmarks/predict.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from refavs.data.labels import SOUNDING, TARGET_SECONDS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_benchmark_lite_trains_on_cached_maps(capsys):
    """benchmarks/train.py --config lite: the synthetic batch is what the lite training loop sees."""
    bench = load_benchmark("train")
    from refavs.models.registry import get_model_config

    config = get_model_config("lite")
    batch = bench.make_lite_batch(config, 2)
    assert batch.pixel_values is None and batch.clips == ["clip0", "clip1"]
    g8, g16 = config.backbone.grids["s8"], config.backbone.grids["s16"]
    g4 = config.backbone.image_size // 4  # the refinement's guide: the frame at stride 4
    assert {k: tuple(v.shape) for k, v in batch.visual.items()} == {"s8": (2, 10, 40, g8, g8),
                                                                     "s16": (2, 10, 112, g16, g16),
                                                                     "rgb4": (2, 10, 3, g4, g4)}
    assert tuple(batch.targets[SOUNDING].shape) == (2, 10, 48, 48)
    assert tuple(batch.targets[TARGET_SECONDS].shape) == (2, 10)
    assert bench.default_batch("lite") == 12 and bench.default_batch("tiny") == 2

    assert bench.main(["--config", "lite", "--batch", "2", "--seconds", "0", "--warmup", "1"]) == 0
    result = last_json(capsys)
    assert result["config"] == "lite" and result["batch"] == 2 and result["frames"] == 10
    assert result["inputs"] == "cached backbone maps"
    shared, cache = result["shared_clips"], result["cached_maps"]  # both timed in the same run
    assert shared["speedup"] == pytest.approx(shared["per_expression_step_s"] / shared["step_s"], rel=0.02)
    assert cache["speedup"] == pytest.approx(cache["from_frames_step_s"] / cache["step_s"], rel=0.02)
    assert cache["from_frames_step_s"] > cache["step_s"]  # running the backbone costs more than reading its maps
    # bf16 is timed (the batch by clip too) exactly where the recipe's auto would take it
    import torch

    from refavs.training.evaluate import resolve_precision

    native = resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert ("bf16" in result["results"]) == native == ("bf16_step_s" in shared)
    run = result["results"]["no"]
    assert run["steps"] >= 3 and run["clips_per_s"] == pytest.approx(2 / run["step_s"], rel=0.01)
    assert run["peak_memory_mb"] >= result["baseline_memory_mb"] > 0


def test_train_benchmark_without_configs_keeps_the_other_options():
    bench = load_benchmark("train")
    argv = ["--configs", "tiny", "lite", "--seconds", "1", "--config=paper", "--batch", "2", "--config", "x"]
    assert bench._without_configs(argv) == ["--seconds", "1", "--batch", "2"]


@pytest.mark.slow
def test_train_benchmark_compares_configs_in_their_own_processes(capsys):
    """--configs tiny lite: one JSON with each config's run (own subprocess) and a summary."""
    bench = load_benchmark("train")
    assert bench.main(["--configs", "tiny", "lite", "--batch", "2", "--seconds", "0", "--warmup", "1",
                       "--expressions-per-clip", "0"]) == 0
    result = last_json(capsys)
    assert list(result["configs"]) == ["tiny", "lite"] == list(result["summary"])
    assert result["configs"]["tiny"]["inputs"] == "frames"
    assert result["configs"]["lite"]["inputs"] == "cached backbone maps"
    for name, row in result["summary"].items():
        assert row["batch"] == 2 and row["clips_per_s"] > 0
        assert row["memory_growth_mb"] == pytest.approx(row["peak_memory_mb"] - row["baseline_memory_mb"], abs=0.2)
        assert row["peak_memory_mb"] == result["configs"][name]["results"]["no"]["peak_memory_mb"]


def test_predict_benchmark_times_the_pipeline(capsys):
    """benchmarks/predict.py on a small generated clip (the pipeline resizes it to 192 px)."""
    bench = load_benchmark("predict")
    assert bench.main(["--repeats", "1", "--size", "64"]) == 0  # --threads would stay set
    result = last_json(capsys)
    for key in ("clip_s", "load_s", "realtime_factor", "decode_s", "features_s", "model_s", "threads",
                "checkpoint", "config"):
        assert key in result
    assert result["clip_s"] > 0 and result["load_s"] > 0 and result["threads"] >= 1
    assert result["realtime_factor"] == pytest.approx(10 / result["clip_s"])
    assert result["clip_s"] == pytest.approx(result["decode_s"] + result["features_s"] + result["model_s"])
    assert result["checkpoint"] is None and result["config"] == "lite"
    assert result["load_s"] == pytest.approx(result["load_import_s"] + result["load_build_s"])
