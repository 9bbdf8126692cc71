"""Faults at the worst moment: a full disk (ENOSPC) or an I/O error (EIO) in the write or the
rename of a checkpoint, a feature-cache chunk, a prediction PNG, the report and the batch index;
and a process killed (SIGKILL) between two writes of ``refavs features``, ``refavs eval
--save-pred`` and ``refavs predict --csv``.

Each test asserts that the error names the file and what it holds in one line, that what was
complete before is intact and loadable, that no file under a final name is partial (nor a
temporary file left once the next run is done), and that the next run resumes, or redoes only
what was missing, with the outputs of an uninterrupted run.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_toy_dataset

from refavs.cli import main
from refavs.data import writer
from refavs.data.writer import WriteError, atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FAULTS = {errno.ENOSPC: "No space left on device", errno.EIO: "Input/output error"}
STAGES = ("write", "rename")


def inject(monkeypatch, stage: str, code: int, pattern: str, after: int = 0) -> list[Path]:
    """Make the ``stage`` (``write``: half the bytes reach the temporary file, then the error;
    ``rename``: the temporary file is complete, the rename fails) of the file whose final path is
    the ``after + 1``-th to match ``pattern`` fail with ``OSError(code)`` (once: the writes after
    it succeed). Returns the paths that failed."""
    failed: list[Path] = []
    seen = [0]
    match = re.compile(pattern)

    def due(path) -> bool:
        if not match.search(os.fspath(path)):
            return False
        seen[0] += 1
        if seen[0] == after + 1:
            failed.append(Path(path))
            return True
        return False

    if stage == "write":
        real_write = writer._write_all

        def write(file, data, path):
            if due(path):
                file.write(data[:len(data) // 2])
                raise OSError(code, os.strerror(code))
            real_write(file, data, path)

        monkeypatch.setattr(writer, "_write_all", write)
    else:
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if due(dst):
                raise OSError(code, os.strerror(code))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    return failed


def temp_files(root: Path) -> list[Path]:
    """Temporary files and folders of the atomic writers (``.<name>.<random>.tmp``) under ``root``."""
    return sorted(p for p in Path(root).rglob(".*") if ".tmp" in p.name)


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refavs {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def tree_bytes(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# The writer and the report


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", list(FAULTS))
def test_a_failed_report_write_names_it_and_keeps_the_previous_report(stage, code, tmp_path, monkeypatch,
                                                                       capsys):
    """report.json of the main job (and report.md) go through the atomic writer: a fault leaves
    the previous report whole, no temporary file, and one line naming the file."""
    report = tmp_path / "out" / "report.json"
    before = {"kind": "demo", "scores": [0.5] * 1000}
    atomic_write_bytes(report, json.dumps(before).encode(), what="the report")
    failed = inject(monkeypatch, stage, code, r"/report\.json$")
    with pytest.raises(WriteError) as caught:
        atomic_write_bytes(report, json.dumps({"kind": "demo", "scores": [1.0] * 2000}).encode(), what="the report")
    message = str(caught.value)
    assert failed == [report] and caught.value.errno == code and caught.value.path == report
    assert message.startswith(f"{report}: could not write the report ({FAULTS[code]})") and "\n" not in message
    assert ("MiB free on the disk of" in message) == (code == errno.ENOSPC)
    assert json.loads(report.read_text()) == before  # the previous report, whole
    assert temp_files(tmp_path) == []

    # `refavs demo` reports it in one line, exit 1 (its stages are stood in for by the write)
    from refavs import demo

    def write_the_report(out_dir, *args, **kwargs):
        atomic_write_bytes(Path(out_dir) / "report.json", b"{}", what="the report")

    monkeypatch.setattr(demo, "run_demo", write_the_report)
    inject(monkeypatch, stage, code, r"/report\.json$")
    assert main(["demo", "--out", str(tmp_path / "out")]) == 1
    line = one_error_line(capsys.readouterr().err, "demo")
    assert f"{report}: could not write the report ({FAULTS[code]})" in line
    assert json.loads(report.read_text()) == before

    monkeypatch.undo()  # the disk works again: the next write replaces it whole
    atomic_write_bytes(report, b"{}", what="the report")
    assert report.read_text() == "{}" and temp_files(tmp_path) == []


def test_the_demo_writes_both_reports_through_the_writer_and_names_them():
    """The two writes of the main job's report name what they write."""
    source = (REPO / "refavs" / "demo.py").read_text()
    assert re.search(r'atomic_write_bytes\(out_dir / "report\.json", .*what="the report"\)', source)
    assert re.search(r'atomic_write_bytes\(out_dir / "report\.md", .*what="the report"\)', source)


def test_temporary_files_of_a_killed_writer_are_found_and_removed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".0.png.x1y2.tmp").write_bytes(b"half")
    (tmp_path / "a" / ".overlay.mp4.x1y2.tmp.mp4").write_bytes(b"half")  # the video writer's
    (tmp_path / ".summary.json.abc.tmp").write_bytes(b"{")
    (tmp_path / "a" / "0.png").write_bytes(b"whole")
    (tmp_path / ".notes.txt").write_bytes(b"not a temporary file")
    assert writer.temp_files(tmp_path) == [tmp_path / ".summary.json.abc.tmp"]
    assert writer.temp_files(tmp_path, "[0-9]*.png", recursive=True) == [tmp_path / "a" / ".0.png.x1y2.tmp"]
    assert writer.remove_temp_files(tmp_path, recursive=True) == 3
    assert temp_files(tmp_path) == [] and (tmp_path / "a" / "0.png").read_bytes() == b"whole"
    assert (tmp_path / ".notes.txt").is_file()


# ---------------------------------------------------------------------------------------------
# Checkpoints


class _Config:
    def to_dict(self):
        return {"name": "toy"}


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    model.config = _Config()
    return model


@pytest.mark.parametrize("stage, pattern", [("write", r"/trainer_state\.json$"),
                                            ("write", r"/trainer_state\.safetensors$"),
                                            ("rename", r"/checkpoints/step-00000002$")])
@pytest.mark.parametrize("code", list(FAULTS))
def test_a_checkpoint_fault_keeps_the_last_one_and_the_next_save_completes(stage, pattern, code, tmp_path,
                                                                           monkeypatch):
    from safetensors.torch import load_file

    from refavs.training import checkpoint as ckpt

    state = {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "best_J": None, "rng": np.arange(5)}
    first = ckpt.save_checkpoint(tmp_path, _model(0), state)
    weights = (first / "model.safetensors").read_bytes()
    failed = inject(monkeypatch, stage, code, pattern)
    with pytest.raises(ckpt.CheckpointWriteError) as caught:
        ckpt.save_checkpoint(tmp_path, _model(1), {**state, "global_step": 2})
    message = str(caught.value)
    assert len(failed) == 1 and caught.value.errno == code and "\n" not in message
    assert message.startswith(f"{tmp_path / 'checkpoints' / 'step-00000002'}: could not write the checkpoint "
                              f"({FAULTS[code]}")
    if stage == "write":
        assert f"writing {failed[0].name})" in message
    assert f"{first}, is intact" in message and "MiB free on the disk of" in message
    # the last complete checkpoint: untouched, pointed at, loadable
    assert (tmp_path / "last").resolve() == first and (first / "model.safetensors").read_bytes() == weights
    assert ckpt.load_state(first)["global_step"] == 1 and load_file(str(first / "model.safetensors"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [first.name]  # nothing partial
    assert temp_files(tmp_path) == []

    monkeypatch.undo()  # the disk works again: the next save writes the missing step
    second = ckpt.save_checkpoint(tmp_path, _model(1), {**state, "global_step": 2})
    assert second.name == "step-00000002" and (tmp_path / "last").resolve() == second
    assert ckpt.load_state(second)["global_step"] == 2


def test_a_checkpoint_killed_before_its_rename_leaves_nothing_once_the_next_is_saved(tmp_path):
    """What a writer killed mid-checkpoint leaves (a temporary folder, a half link) is removed by
    the next save."""
    from refavs.training import checkpoint as ckpt

    state = {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "best_J": None}
    ckpt.save_checkpoint(tmp_path, _model(0), state)
    (tmp_path / "checkpoints" / ".step-00000002.abcd.tmp").mkdir()
    (tmp_path / "checkpoints" / ".step-00000002.abcd.tmp" / "model.safetensors").write_bytes(b"half")
    os.symlink("checkpoints/step-00000001", tmp_path / ".last.999999.tmp")
    ckpt.save_checkpoint(tmp_path, _model(1), {**state, "global_step": 2})
    assert temp_files(tmp_path) == []


def test_a_checkpoint_fault_during_training_is_one_line_and_resume_completes(toy_features, tmp_path, monkeypatch,
                                                                             capsys):
    run = tmp_path / "run"
    args = ["train", "--data-dir", str(toy_features), "--out", str(run), "--no-progress", "max_steps=2",
            "checkpoint_every_steps=1", "val_every_epochs=100", "batch_size=2", "log_every_steps=1",
            "warmup_steps=0"]
    inject(monkeypatch, "rename", errno.EIO, r"/checkpoints/step-00000002$")
    assert main(args) == 1
    line = one_error_line(capsys.readouterr().err, "train")
    assert f"{run / 'checkpoints' / 'step-00000002'}: could not write the checkpoint (Input/output error)" in line
    assert re.search(r"/checkpoints/step-00000001(-\d+)?, is intact \(RUN/last points at it", line)
    assert (run / "last").resolve().name.startswith("step-00000001") and temp_files(run) == []
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert (run / "last").resolve().name == "step-00000002" and temp_files(run) == []


# ---------------------------------------------------------------------------------------------
# The feature cache


def _fake_row(name: str, shape) -> np.ndarray:
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class FakeAudio:
    """Stands in for the audio featurizer (features from the folder's name); records its clips."""

    def __init__(self):
        self.clips: list[str] = []

    def embed_files(self, paths):
        names = [p.parent.name for p in paths]
        self.clips += names
        return np.stack([_fake_row(n, (10, 128)) for n in names])


class FakeText:
    """Stands in for the text encoder; records its texts."""

    def __init__(self):
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return np.stack([_fake_row(t, (25, 6)) for t in texts]), np.ones((len(texts), 25), bool)


def _config(text_batch: int = 1):
    import dataclasses

    from refavs.features.config import get_feature_config

    tiny = get_feature_config("tiny")
    return tiny.replace(text=dataclasses.replace(tiny.text, batch_size=text_batch))  # one chunk per text


def _extract(data: Path, cache: Path | None = None, audio=None, text=None):
    from refavs.features.cache import extract_features

    return extract_features(data, _config(), cache_dir=cache, batch_size=1, progress=False,
                            audio_source=audio or FakeAudio(), text_source=text or FakeText())


def _cache_arrays(cache: Path) -> dict[str, bytes]:
    """Every joined array and index of a cache (the run's outputs), by path."""
    return {k: v for k, v in tree_bytes(cache).items() if k.endswith((".npy", "index.json"))}


def _assert_no_partial_cache_file(cache: Path) -> None:
    for path in cache.rglob("*"):
        if path.name.startswith("."):
            continue
        if path.suffix == ".npz":
            with np.load(path) as data:
                assert all(data[k].size for k in data.files), path
        elif path.suffix == ".npy":
            assert np.load(path, mmap_mode="r").size, path
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.fixture()
def toy(tmp_path) -> Path:
    root = tmp_path / "toy"
    build_toy_dataset(root)
    return root


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", list(FAULTS))
def test_a_cache_chunk_fault_keeps_the_chunks_before_and_the_next_run_resumes(stage, code, toy, tmp_path,
                                                                               monkeypatch, capsys):
    import refavs.features.cache as cache_package
    from refavs.features.cache import FeatureStore, cache_paths, extract_features

    reference = _extract(toy, tmp_path / "reference")
    # the second text chunk of train fails: the audio of train and its first text chunk are written
    pattern = r"/text-[^/]*/train/parts-[^/]*/000001\.npz$"
    failed = inject(monkeypatch, stage, code, pattern)
    first_audio, first_text = FakeAudio(), FakeText()
    monkeypatch.setattr(cache_package, "extract_features",  # what `refavs features` calls
                        functools.partial(extract_features, audio_source=first_audio, text_source=first_text))
    assert main(["features", "--data-dir", str(toy), "--batch-size", "1", "--text-batch-size", "1",
                 "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err, "features")
    assert len(failed) == 1
    assert (f"{failed[0]}: could not write feature-cache chunk 2 of 2 (kind text, split train) ({FAULTS[code]})"
            in line)
    assert "chunk 1 is complete and kept; run `refavs features` again (same options) to resume" in line
    paths = cache_paths(toy, _config())
    assert (paths.audio / "train" / "index.json").is_file()  # complete before the fault
    assert not (paths.text / "train" / "index.json").exists()
    assert FeatureStore.open(toy, _config()).has_audio("clip0_0_10000")
    assert not failed[0].exists() and temp_files(paths.text) == []
    _assert_no_partial_cache_file(paths.text.parent)

    monkeypatch.undo()  # the disk works again
    audio, text = FakeAudio(), FakeText()
    report = _extract(toy, None, audio, text)
    assert "clip0_0_10000" not in audio.clips  # train's audio: complete, not extracted again
    assert len(first_text.texts) == 2 and text.texts[0] == first_text.texts[1]  # chunk 1 kept, chunk 2 again
    assert report.splits["train"]["texts_computed"] == 1 and report.splits["train"]["clips_computed"] == 0
    assert _cache_arrays(paths.audio.parent) == _cache_arrays(reference.paths.audio.parent)
    assert temp_files(toy) == [] and not list(paths.text.glob("*/parts-*"))


@pytest.mark.parametrize("code", list(FAULTS))
def test_a_fault_joining_a_split_keeps_its_chunks_and_the_next_run_only_joins(code, toy, tmp_path, monkeypatch):
    from refavs.features.cache import cache_paths

    reference = _extract(toy, tmp_path / "reference")
    failed = inject(monkeypatch, "rename", code, r"/audio-[^/]*/val/features\.npy$")
    with pytest.raises(WriteError) as caught:
        _extract(toy)
    message = str(caught.value)
    paths = cache_paths(toy, _config())
    assert message.startswith(f"{paths.audio / 'val' / 'features.npy'}: could not write the joined feature array "
                              f"(kind audio, split val) ({FAULTS[code]})") and len(failed) == 1
    assert "chunk(s) in" in message and "are complete and kept" in message
    assert not (paths.audio / "val" / "features.npy").exists() and temp_files(paths.audio) == []
    monkeypatch.undo()
    audio = FakeAudio()
    _extract(toy, None, audio, FakeText())
    assert "clip1_0_10000" not in audio.clips  # val's chunk was kept: only joined
    assert _cache_arrays(paths.audio.parent) == _cache_arrays(reference.paths.audio.parent)


# ---------------------------------------------------------------------------------------------
# Prediction PNGs of `refavs eval --save-pred`


@pytest.fixture(scope="module")
def toy_features(tmp_path_factory) -> Path:
    """The toy dataset with the tiny preset's features (the real encoders), read-only."""
    from refavs.features.cache import extract_features
    from refavs.features.config import get_feature_config

    root = tmp_path_factory.mktemp("faults") / "toy"
    build_toy_dataset(root)
    extract_features(root, get_feature_config("tiny"), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny EEMC with random weights."""
    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    folder = tmp_path_factory.mktemp("faults-ckpt") / "ckpt"
    torch.manual_seed(0)
    EEMC(get_model_config("tiny")).save_pretrained(folder)
    return folder


EVAL_SPLITS = ["test_s", "test_u"]


def _eval_args(checkpoint: Path, data: Path, pred: Path) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data), "--split", *EVAL_SPLITS,
            "--save-pred", str(pred), "--device", "cpu", "--json"]


@pytest.fixture(scope="module")
def eval_reference(checkpoint, toy_features, tmp_path_factory) -> tuple[dict, dict[str, bytes]]:
    """The scores and prediction files of an uninterrupted ``refavs eval --save-pred``."""
    pred = tmp_path_factory.mktemp("faults-eval") / "pred"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(_eval_args(checkpoint, toy_features, pred)) == 0
    return json.loads(out.getvalue()), tree_bytes(pred)


def _assert_whole_pngs(pred: Path) -> None:
    from refavs.scoring.predictions import load_prediction_frame

    for path in pred.rglob("*.png"):
        if not path.name.startswith("."):
            assert load_prediction_frame(path).shape == (256, 256), path


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", list(FAULTS))
def test_a_prediction_png_fault_is_one_line_and_the_next_run_writes_them_all(stage, code, checkpoint, toy_features,
                                                                            eval_reference, tmp_path, monkeypatch,
                                                                            capsys):
    pred = tmp_path / "pred"
    failed = inject(monkeypatch, stage, code, r"/pred/[^/]+/\d\.png$", after=13)
    assert main(_eval_args(checkpoint, toy_features, pred)) == 1
    line = one_error_line(capsys.readouterr().err, "eval")
    assert f"{failed[0]}: could not write a prediction frame ({FAULTS[code]})" in line
    assert "the frames written before it are complete" in line
    assert not failed[0].exists() and temp_files(pred) == []
    _assert_whole_pngs(pred)
    written = tree_bytes(pred, "*.png")
    assert len(written) >= 13 and all(eval_reference[1][k] == v for k, v in written.items())

    monkeypatch.undo()
    assert main(_eval_args(checkpoint, toy_features, pred)) == 0
    assert json.loads(capsys.readouterr().out) == eval_reference[0]
    assert tree_bytes(pred) == eval_reference[1]


# ---------------------------------------------------------------------------------------------
# `refavs predict --csv`: the rows' outputs and the batch index


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from test_inference import make_video

    root = tmp_path_factory.mktemp("faults-videos")
    make_video(root / "a.mp4", 3.0)
    make_video(root / "b.mp4", 2.0)
    (root / "rows.csv").write_text("video,expression\na.mp4,the square that moves\nb.mp4,the blue square\n")
    return root


def _predict_args(checkpoint: Path, videos: Path, out: Path) -> list[str]:
    return ["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--csv", str(videos / "rows.csv"),
            "--out", str(out), "--overlay-format", "gif", "--no-progress"]


def _row_outputs(out: Path) -> dict[str, object]:
    """What a batch wrote, without what differs between runs (timings, statuses)."""
    outputs: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        key = str(path.relative_to(out))
        if path.name == "summary.json":
            data = json.loads(path.read_text())
            data.pop("timings", None)
            for row in data.get("rows", []):
                row.pop("status")
            data.pop("counts", None)
            outputs[key] = data
        else:
            outputs[key] = path.read_bytes()
    return outputs


@pytest.fixture(scope="module")
def batch_reference(checkpoint, videos, tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("faults-batch") / "out"
    assert main(_predict_args(checkpoint, videos, out)) == 0
    return _row_outputs(out)


@pytest.mark.parametrize("target, pattern", [("a row's mask", r"/out/002-b/masks/3\.png$"),
                                             ("the index", r"/out/summary\.json$")])
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", list(FAULTS))
def test_a_batch_write_fault_stops_with_one_line_and_the_next_run_skips_the_complete_rows(
        target, pattern, stage, code, checkpoint, videos, batch_reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    after = 1 if target == "the index" else 0  # the index after row 1 is written; the one after row 2 fails
    failed = inject(monkeypatch, stage, code, pattern, after=after)
    status = main(_predict_args(checkpoint, videos, out))
    line = one_error_line(capsys.readouterr().err, "predict")
    assert status == 1 and len(failed) == 1
    what = "the batch index" if target == "the index" else "a prediction frame"
    assert f"row 2: {failed[0]}: could not write {what} ({FAULTS[code]})" in line
    assert "the batch stopped there: the 1 row(s) finished before are complete" in line \
        or (target == "the index" and "the 2 row(s) finished before are complete" in line)
    assert not failed[0].exists() or target == "the index"
    assert temp_files(out) == []
    index = json.loads((out / "summary.json").read_text())  # the index: whole, of a row before
    assert index["rows"][0]["status"] == "written"
    assert (out / "001-a" / "summary.json").is_file()

    monkeypatch.undo()
    assert main(_predict_args(checkpoint, videos, out)) == 0
    index = json.loads((out / "summary.json").read_text())
    statuses = [r["status"] for r in index["rows"]]
    assert statuses[0] == "skipped" and statuses[1] == ("skipped" if target == "the index" else "written")
    assert _row_outputs(out) == batch_reference and temp_files(out) == []


# ---------------------------------------------------------------------------------------------
# SIGKILL between two writes: a subprocess kills itself at a chosen rename

KILLER = r"""
import os, re, signal, sys
pattern, after = re.compile(sys.argv[1]), int(sys.argv[2])
real_replace, seen = os.replace, [0]

def replace(src, dst, *args, **kwargs):
    if pattern.search(os.fspath(dst)):
        seen[0] += 1
        if seen[0] > after:  # the temporary file is whole; its rename never happens
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
if os.environ.get("REFAVS_TEST_FAKE_ENCODERS"):
    import functools
    import refavs.features.cache as cache
    sys.path.insert(0, os.environ["REFAVS_TEST_DIR"])
    from test_faults import FakeAudio, FakeText
    cache.extract_features = functools.partial(cache.extract_features, audio_source=FakeAudio(),
                                               text_source=FakeText())
from refavs.cli import main
sys.exit(main(sys.argv[3:]))
"""


def run_killed(pattern: str, after: int, args: list[str], fake_encoders: bool = False) -> None:
    """Run ``refavs ARGS`` in a subprocess that SIGKILLs itself just before the rename of the
    ``after + 1``-th file whose final path matches ``pattern``."""
    env = {**os.environ, "REFAVS_TEST_DIR": str(TESTS)}
    if fake_encoders:
        env["REFAVS_TEST_FAKE_ENCODERS"] = "1"
    proc = subprocess.run([sys.executable, "-c", KILLER, pattern, str(after), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"not killed (status {proc.returncode}): {proc.stderr[-2000:]}"


FEATURE_KILLS = {
    "a chunk": (r"/text-[^/]*/train/parts-[^/]*/000001\.npz$", {"train": (0, 1)}),
    "a joined array": (r"/audio-[^/]*/val/features\.npy$", {"train": (0, 0), "val": (0, 2)}),
    "an index": (r"/text-[^/]*/val/index\.json$", {"train": (0, 0), "val": (0, 0)}),
}
"""Where ``refavs features`` is killed, and what the next run computes of the splits done or
begun before: ``split -> (clips, expressions)``."""


@pytest.mark.parametrize("point, encoders", [
    *((point, "stand-in") for point in FEATURE_KILLS),
    ("a chunk", "tiny"),
    *(pytest.param(point, "tiny", marks=pytest.mark.slow) for point in FEATURE_KILLS if point != "a chunk")])
def test_features_killed_before_a_rename_resume_to_the_uninterrupted_cache(point, encoders, toy, tmp_path,
                                                                            monkeypatch, capsys):
    """With stand-in encoders (fast: the cache's writes are the same), and with the tiny preset's
    own (one kill point by default, the others with ``-m slow``)."""
    import refavs.features.cache as cache_package
    from refavs.features.cache import FeatureStore, cache_paths, extract_features

    pattern, computed = FEATURE_KILLS[point]
    fake = encoders == "stand-in"
    if fake:
        reference = _extract(toy, tmp_path / "reference")
    else:
        reference = extract_features(toy, _config(), cache_dir=tmp_path / "reference", batch_size=1, progress=False)
    args = ["features", "--data-dir", str(toy), "--batch-size", "1", "--text-batch-size", "1", "--no-progress"]
    run_killed(pattern, 0, args, fake_encoders=fake)
    cache = cache_paths(toy, _config()).audio.parent
    assert temp_files(cache)  # killed between a write and its rename
    _assert_no_partial_cache_file(cache)
    assert FeatureStore.open(toy, _config()).has_audio("clip0_0_10000")  # what was complete opens

    if fake:
        monkeypatch.setattr(cache_package, "extract_features",
                            functools.partial(extract_features, audio_source=FakeAudio(), text_source=FakeText()))
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    for split, (clips, texts) in computed.items():
        line = next(x for x in lines if x.startswith(split))
        assert f"clips ({clips} extracted)" in line and f"expressions ({texts} extracted)" in line, line
    assert _cache_arrays(cache) == _cache_arrays(reference.paths.audio.parent)
    assert temp_files(toy) == [] and not list(cache.glob("*/*/parts-*"))


def test_eval_killed_before_a_png_rename_reruns_to_the_uninterrupted_predictions(checkpoint, toy_features,
                                                                                  eval_reference, tmp_path, capsys):
    pred = tmp_path / "pred"
    run_killed(r"/pred/[^/]+/\d\.png$", 14, _eval_args(checkpoint, toy_features, pred))
    assert temp_files(pred)  # killed between a write and its rename
    _assert_whole_pngs(pred)
    written = tree_bytes(pred, "[0-9].png")
    assert len(written) >= 14 and all(eval_reference[1][k] == v for k, v in written.items())

    assert main(_eval_args(checkpoint, toy_features, pred)) == 0
    assert json.loads(capsys.readouterr().out) == eval_reference[0]
    assert tree_bytes(pred) == eval_reference[1]  # the temporary files are gone too


BATCH_KILLS = {
    "a mask of row 2": (r"/out/002-b/masks/4\.png$", "written"),
    "row 2's summary": (r"/out/002-b/summary\.json$", "written"),
    "the index after row 1": (r"/out/summary\.json$", "written"),
}
"""Where ``refavs predict --csv`` is killed, and row 2's status in the next run (row 1 is skipped)."""


@pytest.mark.parametrize("point", list(BATCH_KILLS))
def test_batch_killed_before_a_rename_skips_complete_rows_and_ends_as_uninterrupted(point, checkpoint, videos,
                                                                                    batch_reference, tmp_path):
    pattern, second = BATCH_KILLS[point]
    out = tmp_path / "out"
    run_killed(pattern, 0, _predict_args(checkpoint, videos, out))
    assert temp_files(out)  # killed between a write and its rename
    assert (out / "001-a" / "summary.json").is_file()  # row 1 was complete
    assert not (out / "002-b" / "summary.json").exists()  # row 2 is not: no summary, no skip
    _assert_whole_pngs(out)
    for path in out.rglob("summary.json"):
        json.loads(path.read_text())

    assert main(_predict_args(checkpoint, videos, out)) == 0
    index = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in index["rows"]] == ["skipped", second]
    assert _row_outputs(out) == batch_reference and temp_files(out) == []


@pytest.mark.parametrize("frames, pattern, what", [("10", r"/single/masks/3\.png$", "a prediction frame"),
                                                   ("all", r"/single/summary\.json$", "")])
def test_a_write_fault_of_one_video_is_one_line_and_exit_1(frames, pattern, what, checkpoint, videos, tmp_path,
                                                           monkeypatch, capsys):
    """``refavs predict --video`` (a 10-frame clip, or every frame) on a disk that fails a write:
    one line naming the file, exit 1; a whole video's folder stays marked unfinished."""
    out = tmp_path / "single"
    failed = inject(monkeypatch, "write", errno.ENOSPC, pattern)
    status = main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--video", str(videos / "a.mp4"),
                   "--expression", "the square that moves", "--frames", frames, "--out", str(out), "--no-progress"])
    line = one_error_line(capsys.readouterr().err, "predict")
    assert status == 1 and len(failed) == 1
    assert str(failed[0]) in line and FAULTS[errno.ENOSPC] in line and what in line
    assert not (out / "summary.json").exists()
    if frames == "all":
        assert (out / "INCOMPLETE").is_file()


@pytest.mark.parametrize("code", list(FAULTS))
def test_a_model_weights_write_fault_names_the_file_and_keeps_the_checkpoint_before(code, tmp_path, monkeypatch):
    """``save_pretrained`` on a disk that fails the weights' write: the error names the final path
    and what it holds; the checkpoint that stood there is intact and no temporary folder is left."""
    from refavs.data.writer import WriteError
    from refavs.models.build import build_model, load_pretrained
    from refavs.models.registry import get_model_config

    torch.manual_seed(0)
    model = build_model(get_model_config("lite", ["head.dim=32", "head.fine_dim=16", "backbone.image_size=64"]),
                        load_pretrained=False)
    target = tmp_path / "ckpt"
    model.save_pretrained(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    original = Path.write_bytes

    def failing(self, data):
        if self.name == "model.safetensors":
            raise OSError(code, FAULTS[code])
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(WriteError) as caught:
        model.save_pretrained(target)
    message = str(caught.value)
    assert f"{target / 'model.safetensors'}: could not write the model weights ({FAULTS[code]})" in message
    assert caught.value.errno == code
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    load_pretrained(target)
