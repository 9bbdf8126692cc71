"""`refavs features` end to end with the real tiny encoders (log-mel + packaged MiniLM)."""

from __future__ import annotations

import argparse

import pytest

from refavs.features import cli
from refavs.features.cache import FeatureStore, open_dataset
from refavs.features.config import get_feature_config


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="refavs")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["features", *argv])
    return args.func(args)


def test_extracts_every_split_with_the_real_tiny_encoders(toy_dataset, capsys):
    assert run_cli(["--data-dir", str(toy_dataset), "--config", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "test_n" in out and "(2 extracted)" in out
    config = get_feature_config("tiny")
    store = FeatureStore.open(toy_dataset, config)
    feats, mask = store.text("clip0_0_10000_drum_1")
    assert feats.shape == (25, 384) and mask.sum() == 8  # [CLS] the sounding drum on the left [SEP]
    assert store.audio("null_c-clip4_0_10000").shape == (10, 128)
    batch = open_dataset(toy_dataset, ["test_u"], config)[0]
    assert batch.text.shape == (25, 384)
    # a second run finds everything cached
    assert run_cli(["--data-dir", str(toy_dataset), "--no-progress"]) == 0
    assert "(0 extracted)" in capsys.readouterr().out


def test_bad_arguments_and_bad_data_exit_without_traceback(toy_dataset, tmp_path, capsys):
    assert run_cli(["--data-dir", str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert run_cli(["--data-dir", str(tmp_path)]) == 2
    assert "holds no metadata.csv" in capsys.readouterr().err
    assert run_cli(["--data-dir", str(toy_dataset), "--batch-size", "0"]) == 2
    (toy_dataset / "media" / "clip1_0_10000" / "audio.wav").write_bytes(b"RIFF....WAVEjunk")
    assert run_cli(["--data-dir", str(toy_dataset), "--splits", "val", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "clip1_0_10000/audio.wav" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        run_cli(["--data-dir", str(toy_dataset), "--config", "nope"])
