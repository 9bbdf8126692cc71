"""Shared fixtures: a tiny dataset in the official layout, built with refavs' own writer, and
Ref-AVS Synth datasets generated once per test run.

The Synth datasets (:func:`synth_factory`, :func:`synth_tiny`) are shared by every module that
asks for the same parameters, so they are read-only by convention: a test that writes into a
dataset (a feature cache, predictions, edits) works on a copy made with :func:`copy_dataset`.
At the end of the run each shared dataset is checked to be as it was generated.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import numpy as np
import pytest

from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.records import Expression
from refavs.data.writer import write_audio, write_frames, write_masks, write_metadata

SHARED_METADATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refavs_metadata.csv"
"""The real benchmark's metadata, beside the repository as ../shared (absent in some clones)."""

FRAME_SIZE = 48
AUDIO_RATE = 16_000

SYNTH_SEED = 0
"""Seed of the shared Ref-AVS Synth datasets."""


def square_masks(size: int, box: tuple[int, int, int, int] | None, frames: int = NUM_FRAMES) -> np.ndarray:
    """[frames, size, size] bool with the box (top, left, bottom, right) set, or all empty."""
    masks = np.zeros((frames, size, size), dtype=bool)
    if box is not None:
        top, left, bottom, right = box
        masks[:, top:bottom, left:right] = True
    return masks


def build_toy_dataset(root: Path, size: int = FRAME_SIZE) -> list[Expression]:
    """Five clips over all splits; each clip has two objects (fid 0 left box, fid 1 right box).

    Returns the expressions written to metadata.csv, in order. test_n rows use the null
    naming (uid ``null_c-<vid>_null_1``, media under ``null_c-<vid>``) with empty masks.
    """
    layout = DatasetLayout(root)
    rng = np.random.default_rng(0)
    rows: list[Expression] = []
    boxes = {0: (8, 4, 40, 20), 1: (12, 28, 36, 44)}
    for i, split in enumerate(("train", "val", "test_s", "test_u", "test_n")):
        vid = f"clip{i}_0_10000"
        folder = f"null_c-{vid}" if split == "test_n" else vid
        frames = rng.integers(0, 255, size=(NUM_FRAMES, size, size, 3), dtype=np.uint8)
        write_frames(layout, folder, frames)
        write_audio(layout, folder, 0.1 * rng.standard_normal(10 * AUDIO_RATE).astype(np.float32))
        if split == "test_n":
            write_masks(layout, folder, 0, square_masks(size, None))
            rows.append(Expression(vid, f"null_c-{vid}_null_1", split, 0, "The barking dog", extra=MappingProxyType({})))
            continue
        for fid, box in boxes.items():
            write_masks(layout, folder, fid, square_masks(size, box))
        rows.append(Expression(vid, f"{vid}_drum_1", split, 0, "The sounding drum on the left"))
        rows.append(Expression(vid, f"{vid}_bell_1", split, 1, "The bell that starts ringing first"))
    write_metadata(layout.metadata, rows)
    return rows


@pytest.fixture()
def toy_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    build_toy_dataset(root)
    return root


@pytest.fixture()
def real_metadata() -> Path:
    if not SHARED_METADATA.is_file():
        pytest.skip(f"the real benchmark metadata is absent ({SHARED_METADATA}); it lives in ../shared")
    return SHARED_METADATA


def copy_dataset(src: Path, dst: Path) -> Path:
    """A private copy of the dataset at ``src`` at ``dst`` (which must not exist), to write into."""
    shutil.copytree(src, dst)
    return dst


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def synth_factory(tmp_path_factory) -> Callable[..., Path]:
    """``synth_factory(preset="tiny", size=None, seed=SYNTH_SEED) -> Path``: a Ref-AVS Synth
    dataset (a preset name or :class:`~refavs.synth.presets.SynthPreset`; ``size`` None for the
    preset's own), generated on first request and shared read-only for the rest of the run."""
    from refavs.synth.generate import generate

    made: dict[tuple[str, int | None, int], tuple[Path, dict]] = {}

    def make(preset="tiny", size: int | None = None, seed: int = SYNTH_SEED) -> Path:
        key = (repr(preset), size, seed)
        if key not in made:
            name = preset if isinstance(preset, str) else preset.name
            root = tmp_path_factory.mktemp(f"synth-{name}-{size or 'preset'}px-seed{seed}") / "data"
            generate(root, seed=seed, preset=preset, size=size, workers=1)
            made[key] = root, _tree_state(root)
        return made[key][0]

    yield make
    for root, state in made.values():
        assert _tree_state(root) == state, (f"a test wrote into the shared Synth dataset {root}; "
                                            "tests that modify data must work on copy_dataset(...)")


@pytest.fixture(scope="session")
def synth_tiny(synth_factory) -> Path:
    """Ref-AVS Synth ``tiny`` (seed 0, the preset's 64 px), shared read-only."""
    return synth_factory("tiny")
