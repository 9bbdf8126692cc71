"""The resumable chunk writer behind every cached kind.

Extraction writes chunks of rows to ``<split>/parts-<digest>-<chunk>/`` (each chunk atomically);
an interrupted run resumes at the first missing chunk. When every chunk is there they are joined
into the ``.npy`` files (written to temporary names and renamed) and ``index.json`` is written
last, with the size and checksum of every array file (:mod:`~refavs.features.cache.integrity`):
a split is complete exactly when its index exists, matches the current list of items, and its
files have the sizes it records (and, when asked or when chunk folders were left behind, the
checksums).
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

from refavs.data.writer import atomic_write_bytes
from refavs.features.cache.integrity import FILES_KEY, PARTS_GLOB, CacheDamage, file_record, split_damage
from refavs.features.cache.keys import CACHE_FORMAT_VERSION, FeatureCacheError, settings_key
from refavs.version import __version__


def _keys_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"))


def write_manifest(folder: Path, kind: str, settings: Mapping) -> None:
    path = folder / "manifest.json"
    if path.is_file():
        return
    _write_json(path, {"kind": kind, "key": settings_key(kind, settings), "format": CACHE_FORMAT_VERSION,
                       "settings": settings, "refavs_version": __version__})


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
    parts.mkdir(parents=True, exist_ok=True)
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
        atomic_write_bytes(part, buf.getvalue())
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
        sample = first[name]
        tmp = split_dir / f".{name}.npy.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=sample.dtype, shape=(len(keys), *sample.shape[1:]))
        row = 0
        for c in range(n_chunks):
            with np.load(parts / f"{c:06d}.npz") as data:
                block = data[name]
            out[row:row + len(block)] = block
            row += len(block)
        out.flush()
        del out
        files[name] = file_record(tmp)  # read back from the written file
        os.replace(tmp, split_dir / f"{name}.npy")
    _write_json(index, {"digest": digest, "count": len(keys), "arrays": list(names), "keys": list(keys),
                        FILES_KEY: files, **extra_index})
    _remove_parts(split_dir)


def _remove_parts(split_dir: Path) -> None:
    for stale in split_dir.glob(PARTS_GLOB):
        shutil.rmtree(stale, ignore_errors=True)
