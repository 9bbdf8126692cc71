"""What a split's index records about each array file, and the checks that find a damaged one.

When the chunk writer joins a split it records, in ``index.json`` under ``files``, the size in
bytes and the BLAKE2b checksum of every ``<name>.npy`` it wrote (read back from the written
file). Two checks use them:

- the **size check** (one ``os.stat`` per file): every time a split is opened or extraction
  decides whether a split is complete; it finds a truncated, extended or missing file;
- the **checksum check** (reads every byte): on request (``refavs features --verify``), and on
  open of a split that still has ``parts-*`` chunk folders beside its complete index (the
  writer stopped between writing the index and removing its chunks).

An index written without ``files`` is *unverified*: it is read as before, and neither check
applies to it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

FILES_KEY = "files"
"""The key of ``index.json`` that maps each array's name to its size and checksum."""
SIZE_KEY = "bytes"
"""A file record's size in bytes."""
CHECKSUM_KEY = "blake2b"
"""A file record's checksum: the hex BLAKE2b digest of the whole file."""
CHECKSUM_DIGEST_BYTES = 16
"""Digest size of the checksum (128 bits: collisions by chance are out of reach)."""
READ_CHUNK_BYTES = 1 << 20
"""The checksum reads a file in blocks of this many bytes (1 MiB)."""
PARTS_PREFIX = "parts-"
"""The chunk folders of the writer: ``<split>/parts-<digest>-<chunk size>/``."""
PARTS_GLOB = f"{PARTS_PREFIX}*"
"""The pattern of the chunk folders."""


def file_checksum(path: str | Path) -> str:
    """The hex BLAKE2b digest (:data:`CHECKSUM_DIGEST_BYTES`) of the file at ``path``."""
    digest = hashlib.blake2b(digest_size=CHECKSUM_DIGEST_BYTES)
    with open(path, "rb") as f:
        while block := f.read(READ_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict:
    """What the index records about an array file: ``{"bytes": size, "blake2b": checksum}``."""
    return {SIZE_KEY: os.stat(path).st_size, CHECKSUM_KEY: file_checksum(path)}


def kind_of(folder: Path) -> str:
    """The kind of a keyed cache folder ``<kind>-<key>``."""
    return folder.name.rsplit("-", 1)[0]


@dataclass(frozen=True)
class CacheDamage:
    """One damaged array file of the cache.

    Attributes:
        file: the ``.npy`` file.
        kind: the cached kind (``audio``, ``text``, ``visual``, ...).
        split: the split whose folder holds it.
        problem: what is wrong, in words.
    """

    file: Path
    kind: str
    split: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file} (kind {self.kind}, split {self.split}): {self.problem}"


def is_verified(info: Mapping) -> bool:
    """Whether a split's index records its files' sizes and checksums."""
    return isinstance(info.get(FILES_KEY), Mapping)


def split_damage(split_dir: Path, info: Mapping, checksums: bool = False) -> list[CacheDamage]:
    """The damaged array files of a complete split whose index is ``info``: missing files and,
    where the index records them, sizes that differ (always) and checksums that differ (with
    ``checksums``, or when chunk folders are left in ``split_dir``: the writer stopped between
    writing the index and removing them). One directory listing, no file opened otherwise."""
    try:
        with os.scandir(split_dir) as listing:
            entries = {e.name: e for e in listing}
    except OSError:
        entries = {}
    records = info.get(FILES_KEY) if is_verified(info) else {}
    checksums = checksums or any(n.startswith(PARTS_PREFIX) and e.is_dir() for n, e in entries.items())
    damage = []
    for name in info.get("arrays", []):
        problem = _problem(entries.get(f"{name}.npy"), records.get(name), checksums)
        if problem:
            damage.append(CacheDamage(split_dir / f"{name}.npy", kind_of(split_dir.parent), split_dir.name,
                                      problem))
    return damage


def _problem(entry: os.DirEntry | None, record, checksums: bool) -> str | None:
    if entry is None:
        return "the file is missing"
    if not isinstance(record, Mapping):
        return None  # unverified
    try:
        size = entry.stat().st_size
    except OSError:
        return "the file is missing"
    expected = record.get(SIZE_KEY)
    if size != expected:
        cut = " (truncated)" if isinstance(expected, int) and size < expected else ""
        return f"{size} bytes, the index records {expected}{cut}"
    if checksums and file_checksum(entry.path) != record.get(CHECKSUM_KEY):
        return "its checksum differs from the index's (the contents changed after it was written)"
    return None
