"""Extracting a dataset's features into the cache, once: every kind of :mod:`~refavs.features.cache.kinds`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from refavs.data.layout import MASK_SIZE, SPLITS, DatasetLayout
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.features.cache.chunks import (complete_split_damage, extract_split, read_index, split_is_complete,
                                          write_manifest)
from refavs.features.cache.integrity import SIZE_KEY, CacheDamage, is_verified, split_damage
from refavs.features.cache.keys import CachePaths, cache_root, settings_key
from refavs.features.cache.kinds import AudioSource, CacheKind, ExtractionContext, TextSource, cache_kinds
from refavs.features.config import FeatureConfig


class RowReuse:
    """A kind's chunk computation that computes each distinct content once (the kind's
    ``content`` digests, :class:`~refavs.features.cache.kinds.CacheKind`): an item whose digest
    was computed already in this extraction (any split, any chunk) gets a copy of that row, and
    so does a repeat within a chunk. Rows are kept in memory only while a later item of the same
    digest is still to come (``digests`` lists every item this extraction may compute).

    Attributes:
        reused: rows copied instead of computed so far.
    """

    def __init__(self, compute: Callable[[Sequence[str]], Mapping[str, np.ndarray]],
                 digests: Mapping[str, str | None]):
        self.compute = compute
        self.digests = dict(digests)
        self.remaining = Counter(d for d in self.digests.values() if d is not None)
        self.kept: dict[str, dict[str, np.ndarray]] = {}
        self.reused = 0

    def __call__(self, chunk: Sequence[str]) -> dict[str, np.ndarray]:
        rows: list = [None] * len(chunk)
        need, first = [], {}
        for i, item in enumerate(chunk):
            d = self.digests.get(item)
            if d is not None and d in self.kept:
                rows[i] = self.kept[d]
            elif d is not None and d in first:
                rows[i] = first[d]  # an index: filled from that row below
            else:
                if d is not None:
                    first[d] = i
                need.append(i)
        if need:
            computed = {k: np.asarray(v) for k, v in self.compute([chunk[i] for i in need]).items()}
            for j, i in enumerate(need):
                rows[i] = {k: v[j] for k, v in computed.items()}
        for i, row in enumerate(rows):
            if isinstance(row, int):
                rows[i] = rows[row]
        self.reused += len(chunk) - len(need)
        for i, item in enumerate(chunk):
            d = self.digests.get(item)
            if d is None:
                continue
            self.remaining[d] -= 1
            if self.remaining[d] > 0:
                if d not in self.kept:
                    self.kept[d] = {k: np.array(v) for k, v in rows[i].items()}  # a copy, not a view of the chunk
            else:
                self.kept.pop(d, None)
        return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def cache_paths(data_dir: str | Path, config: FeatureConfig, cache_dir: str | Path | None = None,
                mask_size: int = MASK_SIZE, mask_resize: str = "reference") -> CachePaths:
    """The keyed cache folders of ``config`` for the dataset at ``data_dir``, one per kind."""
    root = cache_root(data_dir, cache_dir)
    settings = {kind.name: kind.settings(config, mask_size, mask_resize) for kind in cache_kinds()}
    folders = {name: None if value is None else root / f"{name}-{settings_key(name, value)}"
               for name, value in settings.items()}
    return CachePaths(folders, settings=settings)


@dataclass
class CacheCheck:
    """What :func:`verify_cache` found.

    Attributes:
        damaged: every damaged array file (missing, of another size or another checksum than
            its split's index records).
        files: array files whose checksums were compared.
        bytes: their total size.
        unverified: split folders whose index records no sizes or checksums (written by an
            older refavs); they are read as they are.
        seconds: wall time of the check.
    """

    damaged: list[CacheDamage] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    unverified: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ExtractionReport:
    """What :func:`extract_features` did.

    Attributes:
        paths: the keyed cache folders.
        splits: per split, ``clips``/``expressions`` (distinct items) and how many of each kind
            were computed by this run (``clips_computed`` for audio, ``texts_computed`` for text,
            ``<kind>_computed`` for the others; 0 when cached); for the kinds keyed by content
            (``visual``, ``frames``), ``<kind>_reused``: of the rows written, those copied from
            an item with byte-identical frames instead of computed again.
        seconds: wall time of the run.
        damaged: the damaged array files found (sizes always; checksums with ``verify``); the
            splits of the kinds this run extracts are extracted again, the others' indexes are
            removed (listed in ``removed``) so that nothing reads them.
        removed: the damaged entries of kinds this run does not extract (``--media`` kinds when
            it is not given).
        check: with ``verify``, what the checksum comparison found (:func:`verify_cache`).
    """

    paths: CachePaths
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    damaged: list[CacheDamage] = field(default_factory=list)
    removed: list[CacheDamage] = field(default_factory=list)
    check: CacheCheck | None = None

    @property
    def clips_computed(self) -> int:
        return sum(s["clips_computed"] for s in self.splits.values())

    @property
    def texts_computed(self) -> int:
        return sum(s["texts_computed"] for s in self.splits.values())


def verify_cache(data_dir: str | Path, config: FeatureConfig, splits: Sequence[str] | None = None,
                 cache_dir: str | Path | None = None, mask_size: int = MASK_SIZE,
                 mask_resize: str = "reference") -> CacheCheck:
    """Compare every array file of ``config``'s cache (every kind present, ``splits`` or all)
    with the size and checksum its split's index records; reads every byte, changes nothing."""
    start = time.perf_counter()
    check = CacheCheck()
    for folder in cache_paths(data_dir, config, cache_dir, mask_size, mask_resize).folders.values():
        if folder is None or not folder.is_dir():
            continue
        for split_dir in sorted(p for p in folder.iterdir() if p.is_dir() and (splits is None or p.name in splits)):
            info = read_index(split_dir)
            if info is None:
                continue
            if not is_verified(info):
                check.unverified.append(split_dir)
            check.damaged += split_damage(split_dir, info, checksums=True)
            if is_verified(info):
                records = [r for r in info["files"].values() if isinstance(r, dict)]
                check.files += len(records)
                check.bytes += sum(r.get(SIZE_KEY, 0) for r in records)
    check.seconds = time.perf_counter() - start
    return check


def wanted_kinds(root: Path, config: FeatureConfig, media: bool) -> list[CacheKind]:
    """The kinds a dataset extracts under ``config`` (with ``media``: the frames, masks and plug-in kinds too)."""
    return [k for k in cache_kinds() if k.applies(root, config.visual is not None, media)]


def _find_damage(report: ExtractionReport, plan: dict[str, dict[str, list[str]]], kinds: Sequence[CacheKind]) -> None:
    """Record the damaged splits in ``report`` (sizes; with ``report.check``, checksums too) and
    remove their indexes, so that the kinds this run extracts are extracted again and nothing
    reads the others."""
    wanted = {kind.name for kind in kinds}
    found = list(report.check.damaged) if report.check is not None else []
    for split, items in plan.items():
        for kind in kinds:
            damage = complete_split_damage(report.paths.folder(kind.name) / split, items[kind.name])
            found += [d for d in damage or [] if d not in found]
    for damage in found:
        report.damaged.append(damage)
        if damage.kind not in wanted:
            report.removed.append(damage)
        (damage.file.parent / "index.json").unlink(missing_ok=True)


def extract_features(data_dir: str | Path, config: FeatureConfig, splits: Sequence[str] | None = None,
                     cache_dir: str | Path | None = None, batch_size: int = 16, device: str = "cpu",
                     progress: bool = True, media: bool = False, mask_size: int = MASK_SIZE,
                     mask_resize: str = "reference", audio_source: AudioSource | None = None,
                     text_source: TextSource | None = None, verify: bool = False) -> ExtractionReport:
    """Extract and cache the features of every expression of ``splits``.

    Encoders are built only when something is missing (so a second run returns at once);
    tests may pass their own ``audio_source`` / ``text_source``.

    Args:
        data_dir: the dataset folder (official layout).
        config: the feature settings (a preset from :func:`~refavs.features.config.get_feature_config`).
        splits: splits to extract (default: every split present in metadata.csv).
        cache_dir: a cache folder outside the dataset (default ``<data_dir>/.refavs_cache``).
        batch_size: clips per audio encoder call and per cache chunk (text uses ``config.text.batch_size``).
        device: where the encoders run.
        progress: show a tqdm bar on stderr.
        media: also cache the bit-packed target masks and, where the preset caches no backbone
            maps, the decoded, resized frames (uint8), so that training reads no JPEG or PNG (disk:
            ``10 * size * size * 3`` bytes per clip); and the plug-in kinds of datasets that have
            them (Ref-AVS Synth's sounding-object masks).
        mask_size, mask_resize: the target masks' size and resize rule (with ``media``).
        verify: compare the checksum of every cached array file of ``splits`` (every kind the
            preset has on disk) with its index and extract the damaged splits again (without
            it only the sizes are compared, which finds a truncated or missing file).

    A split whose arrays are damaged is extracted again (its damaged files are listed in the
    report's ``damaged``). A preset with ``visual`` settings also caches its backbone's maps of every frame (see
    :mod:`refavs.features.visual`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    layout = DatasetLayout(Path(data_dir))
    expressions = read_metadata(layout.root, splits)
    paths = cache_paths(layout.root, config, cache_dir, mask_size, mask_resize)
    report = ExtractionReport(paths)
    by_split: dict[str, list[Expression]] = {}
    for e in expressions:
        by_split.setdefault(e.split, []).append(e)
    kinds = wanted_kinds(layout.root, config, media)
    plan: dict[str, dict[str, list[str]]] = {}
    for split in (s for s in SPLITS if s in by_split):
        rows = by_split[split]
        plan[split] = {kind.name: kind.items(layout, rows) for kind in kinds}
        report.splits[split] = {"clips": len(plan[split]["audio"]), "expressions": len(plan[split]["text"]),
                                **{kind.report_name: 0 for kind in kinds}}
    if verify:
        report.check = verify_cache(layout.root, config, list(plan), cache_dir, mask_size, mask_resize)
    _find_damage(report, plan, kinds)
    todo = {kind.name: sum(len(items[kind.name]) for split, items in plan.items()
                           if not split_is_complete(paths.folder(kind.name) / split, items[kind.name]))
            for kind in kinds}
    context = ExtractionContext(layout, config, device, batch_size, mask_size, mask_resize, audio_source,
                                text_source)
    compute = {}
    for kind in kinds:
        if todo[kind.name]:
            write_manifest(paths.folder(kind.name), kind.name, paths.settings[kind.name])
            compute[kind.name] = kind.compute(context)
            if kind.content is not None:  # items of equal content (null folders' frames) computed once
                digests = {item: kind.content(layout, item) for split, items in plan.items()
                           if not split_is_complete(paths.folder(kind.name) / split, items[kind.name])
                           for item in items[kind.name]}
                compute[kind.name] = RowReuse(compute[kind.name], digests)
    total = sum(todo.values())
    with tqdm(total=total, unit="item", desc="features", disable=not progress or not total,
              dynamic_ncols=True) as bar:
        for split, items in plan.items():
            for kind in kinds:
                bar.set_postfix_str(f"{split} {kind.name}")
                extra = kind.index_extra(by_split[split]) if kind.index_extra else None
                reuse = compute.get(kind.name)
                reused = reuse.reused if isinstance(reuse, RowReuse) else 0
                done = extract_split(paths.folder(kind.name) / split, items[kind.name], compute.get(kind.name),
                                     kind.chunk(batch_size, config), bar.update, extra)
                report.splits[split][kind.report_name] = done
                if isinstance(reuse, RowReuse):
                    report.splits[split][f"{kind.name}_reused"] = reuse.reused - reused
    report.seconds = time.perf_counter() - start
    return report
