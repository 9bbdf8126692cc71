"""Run checkpoints: the model, the optimiser and everything needed to resume exactly.

Layout of a run folder::

    RUN/run.json                          model config, training config, dataset, features
    RUN/log.jsonl                         one JSON object per logged step and per evaluation
    RUN/checkpoints/step-00000120/        config.json + model.safetensors (an EEMC checkpoint,
                                          loadable with EEMC.from_pretrained) + trainer_state.json
                                          + trainer_state.safetensors (step-00000120-1/ when that
                                          step is saved again, e.g. after the validation that
                                          follows it)
    RUN/last -> checkpoints/step-...      the newest checkpoint
    RUN/best -> checkpoints/step-...      the one with the best validation J

A checkpoint folder is written under a temporary name and renamed into place; ``last`` and
``best`` are symbolic links replaced atomically. A run killed at any moment (even by SIGKILL)
therefore leaves ``last`` pointing at a complete checkpoint, from which ``--resume`` continues;
the temporary folder and links it left are removed by the next save. A write that fails (a full
disk, an I/O error) raises :class:`CheckpointWriteError`: one line naming the checkpoint, the
space free and needed, and the last complete checkpoint, which is left as it was.

The trainer state (the optimiser, scheduler and loss-scaler states, every process's RNG states,
the epoch, the optimiser steps done in it and in all, and the best score so far) is stored
without pickle, so that resuming a run folder received from elsewhere runs no code from it:

* ``trainer_state.safetensors`` holds its tensors (the optimiser's moments and step counts, the
  torch and CUDA RNG states, numpy's RNG key as raw bytes), each named by its place in the state
  (``optimizer.state.0.exp_avg``, ``rng.0.torch``, ...);
* ``trainer_state.json`` (``format`` ``refavs-trainer-state``, ``format_version``, ``state``)
  holds the rest as JSON: counters, the best score, the scheduler's and scaler's settings, the
  optimiser's parameter groups, Python's RNG state. Where JSON has no type for a value, an object
  with one tag key stands for it: ``{"__tensor__": name}`` (a tensor of the safetensors file),
  ``{"__ndarray__": {"tensor", "dtype", "shape"}}`` (a numeric numpy array),
  ``{"__tuple__": [...]}``, and ``{"__items__": [[key, value], ...]}`` (a dict whose keys are not
  all strings, such as the optimiser's per-parameter state).

Loading reads both with ``json`` and ``safetensors`` only. An older run folder holds
``trainer_state.pt`` instead, a pickle, which can run code when loaded: :func:`load_state`
refuses it, and :func:`convert_old_state` (``refavs train --resume --trust-old-state``) converts
it once, on the user's word that the folder is trusted, into the two files beside it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from refavs.data.writer import DIR_MODE, atomic_write_bytes, write_error
from refavs.models.checkpoint import save_pretrained

STATE_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
OLD_STATE_FILE = "trainer_state.pt"
STATE_FORMAT = "refavs-trainer-state"
STATE_FORMAT_VERSION = 1
TRUST_OLD_STATE_OPTION = "--trust-old-state"
CHECKPOINTS = "checkpoints"

# A JSON object with exactly one of these keys stands for a value JSON has no type for.
TENSOR_TAG = "__tensor__"
NDARRAY_TAG = "__ndarray__"
TUPLE_TAG = "__tuple__"
ITEMS_TAG = "__items__"
TAGS = (TENSOR_TAG, NDARRAY_TAG, TUPLE_TAG, ITEMS_TAG)
NDARRAY_KINDS = "biuf"  # numpy arrays of booleans and numbers: no object arrays


class ResumeError(RuntimeError):
    """A run cannot be resumed; the message says why."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, an I/O error); the message names the folder,
    the space free and needed, and the run's last complete checkpoint, which is left as it was."""


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _write_failure(run_dir: Path, final: Path, err: OSError) -> str:
    """The one line that says where a checkpoint write failed, what it needed and what is kept."""
    last = run_dir / "last"
    previous = last.resolve() if last.exists() else None
    free = shutil.disk_usage(final.parent).free
    needed = f"; a checkpoint of this run takes {_folder_bytes(previous) / 2**20:.1f} MiB" if previous else ""
    kept = (f"the last complete checkpoint, {previous}, is intact (RUN/last points at it; resume with --resume)"
            if previous else "no earlier checkpoint of this run exists")
    reason = getattr(err, "reason", "") or err.strerror or err
    if getattr(err, "path", None) is not None:
        reason = f"{reason}, writing {err.path.name}"
    return (f"{final}: could not write the checkpoint ({reason}); {free / 2**20:.1f} MiB free on "
            f"the disk of {final.parent}{needed}; {kept}")


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


def _remove_stale_temps(run_dir: Path) -> None:
    """Remove what a writer killed mid-checkpoint left: ``checkpoints/.step-*.tmp`` folders and
    ``.last.*.tmp`` / ``.best.*.tmp`` links (one process writes a run's checkpoints)."""
    for stale in (run_dir / CHECKPOINTS).glob(".step-*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    for stale in (*run_dir.glob(".last.*.tmp"), *run_dir.glob(".best.*.tmp")):
        if stale.is_symlink():
            stale.unlink(missing_ok=True)


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
    _remove_stale_temps(run_dir)
    final = _new_name(folder, f"step-{state['global_step']:08d}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    try:
        save_pretrained(model, tmp)
        os.chmod(tmp, DIR_MODE)
        write_state(tmp, state)
        os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = CheckpointWriteError(_write_failure(run_dir, final, err))
        failure.errno = err.errno
        raise failure from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name in ("last", "best") if best else ("last",):
        try:
            _point(run_dir, name, final)
        except OSError as err:
            link = run_dir / name
            before = f"it still points at {link.resolve()}" if link.exists() else "it does not exist yet"
            raise write_error(link, f"the link to the new checkpoint {final.name}", err).kept(
                f"{final} is complete; {before}") from err
    protected = {p.resolve() for p in (run_dir / "best", run_dir / "last") if p.exists()}
    steps = sorted((p for p in folder.glob("step-*") if p.is_dir()), key=_written_order)
    for old in steps[:-keep]:
        if old.resolve() not in protected:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _child(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _encode(value, path: str, tensors: dict[str, torch.Tensor], storages: set[int]):
    """``value`` as JSON, its tensors and numpy arrays moved into ``tensors`` under their path."""
    if isinstance(value, np.generic):  # a numpy scalar: the Python number it holds
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)):
        name, k = path, 0
        while name in tensors:  # two paths spelled alike ("a.b" and "a" -> "b")
            k += 1
            name = f"{path}#{k}"
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in NDARRAY_KINDS:
                raise TypeError(f"{path}: a numpy array of {value.dtype} has no place in a trainer state")
            raw = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
            tensors[name] = torch.from_numpy(raw)
            return {NDARRAY_TAG: {"tensor": name, "dtype": value.dtype.str, "shape": list(value.shape)}}
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages:  # safetensors keeps one tensor per storage
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
        return {TENSOR_TAG: name}
    if isinstance(value, tuple):
        return {TUPLE_TAG: [_encode(v, _child(path, i), tensors, storages) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _child(path, i), tensors, storages) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in TAGS):
            return {k: _encode(v, _child(path, k), tensors, storages) for k, v in value.items()}
        return {ITEMS_TAG: [[_encode(k, _child(path, "key"), tensors, storages),
                             _encode(v, _child(path, k), tensors, storages)] for k, v in value.items()]}
    raise TypeError(f"{path or 'the state'}: a {type(value).__name__} has no place in a trainer state")


def _decode(value, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == TENSOR_TAG:
            return tensors[body]
        if tag == NDARRAY_TAG:
            dtype = np.dtype(body["dtype"])
            if dtype.kind not in NDARRAY_KINDS:
                raise TypeError(f"a numpy array of {dtype}")
            raw = tensors[body["tensor"]].numpy().tobytes()
            return np.frombuffer(raw, dtype=dtype).reshape(body["shape"]).copy()
        if tag == TUPLE_TAG:
            return tuple(_decode(v, tensors) for v in body)
        if tag == ITEMS_TAG:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _write_durably(path: Path, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` through a temporary file, on disk before the atomic rename."""
    atomic_write_bytes(path, data, what=what, durable=True)


def write_state(folder: str | Path, state: dict) -> None:
    """Write ``state`` into ``folder`` as ``trainer_state.safetensors`` + ``trainer_state.json``.

    The JSON file goes last: a folder with it holds the whole state."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    document = {"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION,
                "state": _encode(state, "", tensors, set())}
    _write_durably(folder / STATE_TENSORS_FILE, save(tensors, metadata={"format": STATE_FORMAT}),
                   "the trainer state's tensors")
    _write_durably(folder / STATE_FILE, (json.dumps(document) + "\n").encode("utf-8"), "the trainer state")


def _old_state_refused(path: Path) -> ResumeError:
    return ResumeError(
        f"{path}: a trainer state in the old format, a pickle, which can run any code when it is loaded, so it "
        f"is not read. If this run folder is your own or from someone you trust, convert it once with "
        f"`refavs train ... --resume {TRUST_OLD_STATE_OPTION}` (writes {STATE_FILE} and {STATE_TENSORS_FILE} "
        f"beside it)")


def load_state(checkpoint_dir: str | Path) -> dict:
    """The trainer state of a checkpoint, on the CPU, read with ``json`` and ``safetensors`` only.

    Raises ResumeError when there is none, when it is unreadable, or when only the old pickled
    ``trainer_state.pt`` is there (:func:`convert_old_state` converts it)."""
    folder = Path(checkpoint_dir)
    path = folder / STATE_FILE
    if not path.is_file():
        if (folder / OLD_STATE_FILE).is_file():
            raise _old_state_refused(folder / OLD_STATE_FILE)
        raise ResumeError(f"{path}: no trainer state (is {checkpoint_dir} a run checkpoint?)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} file")
        if document.get("format_version") != STATE_FORMAT_VERSION:
            raise ValueError(f"format_version {document.get('format_version')!r}, this version reads "
                             f"{STATE_FORMAT_VERSION}")
        tensors = load_file(folder / STATE_TENSORS_FILE, device="cpu")
        return _decode(document["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise ResumeError(f"{path}: unreadable trainer state ({type(err).__name__}: {err})") from err


def convert_old_state(checkpoint_dir: str | Path) -> bool:
    """Convert the pickled ``trainer_state.pt`` of a checkpoint into the JSON + safetensors format
    beside it; False when the folder already has the new format.

    Unpickling runs whatever code the file names: call this only on the user's explicit word that
    the folder is trusted (``refavs train --resume --trust-old-state``)."""
    folder = Path(checkpoint_dir)
    if (folder / STATE_FILE).is_file():
        return False
    old = folder / OLD_STATE_FILE
    if not old.is_file():
        raise ResumeError(f"{old}: no trainer state to convert (is {checkpoint_dir} a run checkpoint?)")
    try:
        # a pickle, read on the user's word that the folder is trusted (--trust-old-state)
        state = torch.load(old, map_location="cpu", weights_only=False)
    except Exception as err:  # an unpickler raises anything
        raise ResumeError(f"{old}: cannot load it ({type(err).__name__}: {err})") from err
    write_state(folder, state)
    return True


def last_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint ``RUN/last`` points at; ResumeError when there is none."""
    link = Path(run_dir) / "last"
    if not link.exists():
        raise ResumeError(f"{run_dir}: nothing to resume (no {link}); start the run without --resume")
    return link.resolve()
