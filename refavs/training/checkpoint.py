"""Run checkpoints: the model, the optimiser and everything needed to resume exactly.

Layout of a run folder::

    RUN/run.json                          model config, training config, dataset, features
    RUN/log.jsonl                         one JSON object per logged step and per evaluation
    RUN/checkpoints/step-00000120/        config.json + model.safetensors (an EEMC checkpoint,
                                          loadable with EEMC.from_pretrained) + trainer_state.pt
                                          (step-00000120-1/ when that step is saved again, e.g.
                                          after the validation that follows it)
    RUN/last -> checkpoints/step-...      the newest checkpoint
    RUN/best -> checkpoints/step-...      the one with the best validation J

A checkpoint folder is written under a temporary name and renamed into place; ``last`` and
``best`` are symbolic links replaced atomically. A run killed at any moment (even by SIGKILL)
therefore leaves ``last`` pointing at a complete checkpoint, from which ``--resume`` continues.
``trainer_state.pt`` holds the optimiser, scheduler and loss-scaler states, the RNG states, the
epoch, the optimiser steps done in it and in all, and the best score so far.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from refavs.data.writer import DIR_MODE
from refavs.models.checkpoint import save_pretrained

STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"


class ResumeError(RuntimeError):
    """A run cannot be resumed; the message says why."""


def rng_state() -> dict:
    """The RNG states of Python, numpy, torch and CUDA (when used)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _point(run_dir: Path, name: str, target: Path) -> None:
    """Make ``RUN/<name>`` a symbolic link to ``target`` (relative), atomically."""
    link = run_dir / name
    tmp = run_dir / f".{name}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, run_dir), tmp)
    os.replace(tmp, link)


def _new_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name-1``, ``name-2``, ... when taken: a second checkpoint of one step
    (written again after the validation that follows it) never replaces the folder ``last`` points
    at, which a kill during the replacement would leave half deleted. :func:`_written_order`
    sorts them in the order they were written."""
    path, k = folder / name, 0
    while path.exists():
        k += 1
        path = folder / f"{name}-{k}"
    return path


def _written_order(path: Path) -> tuple[int, int]:
    """Sort key of a checkpoint folder in the order written: ``step-N`` then ``step-N-1``, ``-2``, ... ``-10``."""
    parts = path.name.split("-")
    return int(parts[1]), int(parts[2]) if len(parts) > 2 else 0


def save_checkpoint(run_dir: str | Path, model, state: dict, best: bool = False, keep: int = 2) -> Path:
    """Write ``checkpoints/step-<global step>`` (model + ``state``), point ``last`` (and ``best``) at it.

    Older step checkpoints beyond ``keep`` are removed, never the one ``best`` points at.
    """
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = _new_name(folder, f"step-{state['global_step']:08d}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    try:
        save_pretrained(model, tmp)
        os.chmod(tmp, DIR_MODE)
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point(run_dir, "last", final)
    if best:
        _point(run_dir, "best", final)
    protected = {p.resolve() for p in (run_dir / "best", run_dir / "last") if p.exists()}
    steps = sorted((p for p in folder.glob("step-*") if p.is_dir()), key=_written_order)
    for old in steps[:-keep]:
        if old.resolve() not in protected:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(checkpoint_dir: str | Path) -> dict:
    """``trainer_state.pt`` of a checkpoint, mapped to the CPU."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise ResumeError(f"{path}: no trainer state (is {checkpoint_dir} a run checkpoint?)")
    # the state holds numpy RNG states and plain Python values besides tensors
    return torch.load(path, map_location="cpu", weights_only=False)


def last_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint ``RUN/last`` points at; ResumeError when there is none."""
    link = Path(run_dir) / "last"
    if not link.exists():
        raise ResumeError(f"{run_dir}: nothing to resume (no {link}); start the run without --resume")
    return link.resolve()
