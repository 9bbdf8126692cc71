"""The resumable chunk writer behind every cached kind.

Extraction writes chunks of rows to ``<split>/parts-<digest>-<chunk>/`` (each chunk atomically);
an interrupted run resumes at the first missing chunk. When every chunk is there they are joined
into the ``.npy`` files (written to temporary names and renamed) and ``index.json`` is written
last, with the size and checksum of every array file (:mod:`~refavs.features.cache.integrity`):
a split is complete exactly when its index exists, matches the current list of items, and its
files have the sizes it records (and, when asked or when chunk folders were left behind, the
checksums).

A write that fails (a full disk, an I/O error) raises :class:`~refavs.data.writer.WriteError`
naming the file, its kind and split, and the chunks kept for the next run; the ``.npy`` files
are written with ordinary writes (not a memory map, where a full disk would be a bus error).
Temporary files of a writer killed before its rename are removed when the split is extracted
again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from refavs.data.writer import WriteError, atomic_write_bytes, remove_temp_files, write_error
from refavs.features.cache.integrity import (FILES_KEY, PARTS_GLOB, CacheDamage, file_record, kind_of,
                                             split_damage)
from refavs.features.cache.keys import CACHE_FORMAT_VERSION, FeatureCacheError, settings_key
from refavs.version import __version__


def _keys_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _write_json(path: Path, obj, what: str) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"), what=what)


def _where(split_dir: Path) -> str:
    """``kind K, split S`` of a split folder of the cache (for messages)."""
    return f"kind {kind_of(split_dir.parent)}, split {split_dir.name}"


RESUME_NOTE = "run `refavs features` again (same options) to resume"


def write_manifest(folder: Path, kind: str, settings: Mapping) -> None:
    path = folder / "manifest.json"
    if path.is_file():
        return
    remove_temp_files(folder)  # a manifest's, left by a writer killed before its rename
    _write_json(path, {"kind": kind, "key": settings_key(kind, settings), "format": CACHE_FORMAT_VERSION,
                       "settings": settings, "refavs_version": __version__},
                f"the feature-cache manifest (kind {kind})")


def _read_part(path: Path, rows: int, names: Sequence[str] | None) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception:
        return None
    if any(a.shape[0] != rows for a in arrays.values()) or (names is not None and set(arrays) != set(names)):
        return None
    return arrays


def read_index(split_dir: Path) -> dict | None:
    """The parsed ``index.json`` of a split, or None when it is absent or unreadable."""
    try:
        info = json.loads((split_dir / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def complete_split_damage(split_dir: Path, keys: Sequence[str], checksums: bool = False) -> list[CacheDamage] | None:
    """None when ``split_dir`` holds no finished arrays for exactly ``keys`` in that order;
    otherwise its damaged files (empty when intact): sizes always, checksums with ``checksums``
    or when chunk folders were left behind beside the index."""
    info = read_index(split_dir)
    if info is None or info.get("digest") != _keys_digest(keys):
        return None
    return split_damage(split_dir, info, checksums)


def split_is_complete(split_dir: Path, keys: Sequence[str], checksums: bool = False) -> bool:
    """True when ``split_dir`` holds finished, undamaged arrays for exactly ``keys`` in that order."""
    return complete_split_damage(split_dir, keys, checksums) == []


def extract_split(split_dir: Path, keys: Sequence[str], compute: Callable[[Sequence[str]], Mapping[str, np.ndarray]],
                  chunk_size: int, on_rows: Callable[[int], None] = lambda n: None,
                  extra_index: Mapping | None = None) -> int:
    """Compute ``compute(keys[i:i + chunk_size])`` for every chunk not yet on disk, then join them.

    ``compute`` returns named arrays whose first dimension is the chunk's length. Returns the
    number of rows computed by this call (0 when the split was already complete). Resumable:
    chunks written by an interrupted call are reused.
    """
    keys = list(keys)
    if not keys:
        return 0
    if split_is_complete(split_dir, keys):
        _remove_parts(split_dir)  # left by a writer stopped after its index; the arrays passed the check
        return 0
    digest = _keys_digest(keys)
    parts = split_dir / f"parts-{digest[:16]}-{chunk_size}"
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(parts, f"the chunk folder of the feature cache ({_where(split_dir)})", err) from err
    remove_temp_files(split_dir)  # left by a writer killed between a write and its rename
    remove_temp_files(parts)
    computed, names = 0, None
    n_chunks = math.ceil(len(keys) / chunk_size)
    for c in range(n_chunks):
        chunk = keys[c * chunk_size:(c + 1) * chunk_size]
        part = parts / f"{c:06d}.npz"
        if part.is_file():
            arrays = _read_part(part, len(chunk), names)
            if arrays is not None:
                names = names or sorted(arrays)
                on_rows(len(chunk))
                continue
        arrays = {k: np.asarray(v) for k, v in compute(chunk).items()}
        bad = {k: a.shape for k, a in arrays.items() if a.shape[0] != len(chunk)}
        if bad:
            raise ValueError(f"feature computation returned {bad} for a chunk of {len(chunk)} items")
        names = names or sorted(arrays)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            atomic_write_bytes(part, buf.getvalue(),
                              what=f"feature-cache chunk {c + 1} of {n_chunks} ({_where(split_dir)})")
        except WriteError as err:
            before = {0: "", 1: "chunk 1 is complete and kept; "}.get(c, f"chunks 1-{c} are complete and kept; ")
            raise err.kept(f"{before}{RESUME_NOTE}") from err
        computed += len(chunk)
        on_rows(len(chunk))
    _join_parts(split_dir, parts, keys, chunk_size, names or [], digest, extra_index or {})
    return computed


def _join_parts(split_dir: Path, parts: Path, keys: Sequence[str], chunk_size: int, names: Sequence[str],
                digest: str, extra_index: Mapping) -> None:
    index = split_dir / "index.json"
    index.unlink(missing_ok=True)  # the old arrays are about to be replaced
    n_chunks = math.ceil(len(keys) / chunk_size)
    first = _read_part(parts / f"{0:06d}.npz", min(len(keys), chunk_size), names)
    if first is None:
        raise FeatureCacheError(f"{parts}: the first chunk vanished or is unreadable; run the extraction again")
    files = {}
    for name in names:
        final = split_dir / f"{name}.npy"
        tmp = split_dir / f".{name}.npy.tmp"
        try:
            files[name] = _join_array(tmp, parts, name, first[name], len(keys), n_chunks)
            os.replace(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise write_error(final, f"the joined feature array ({_where(split_dir)})", err).kept(
                f"its {n_chunks} chunk(s) in {parts} are complete and kept; {RESUME_NOTE}") from err
    try:
        _write_json(index, {"digest": digest, "count": len(keys), "arrays": list(names), "keys": list(keys),
                            FILES_KEY: files, **extra_index}, f"the feature-cache index ({_where(split_dir)})")
    except WriteError as err:
        raise err.kept(f"its chunks in {parts} are kept; {RESUME_NOTE}") from err
    _remove_parts(split_dir)


def _join_array(tmp: Path, parts: Path, name: str, sample: np.ndarray, rows: int, n_chunks: int) -> dict:
    """Write the array ``name`` of every chunk of ``parts``, in order, into the ``.npy`` file
    ``tmp`` (streamed, so that a full disk is an error, not a fault of a memory map); returns
    its :func:`~refavs.features.cache.integrity.file_record`, read back from the file."""
    header = {"descr": np.lib.format.dtype_to_descr(sample.dtype), "fortran_order": False,
              "shape": (rows, *sample.shape[1:])}
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for c in range(n_chunks):
            with np.load(parts / f"{c:06d}.npz") as data:
                block = np.ascontiguousarray(data[name], dtype=sample.dtype)
            f.write(block.tobytes())
    return file_record(tmp)


def _remove_parts(split_dir: Path) -> None:
    for stale in split_dir.glob(PARTS_GLOB):
        shutil.rmtree(stale, ignore_errors=True)
