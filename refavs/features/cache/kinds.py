"""The kinds of cached arrays, as one table: adding a kind is one :class:`CacheKind` entry.

Built in: ``audio`` (per media folder), ``text`` (per distinct expression string), ``visual``
(backbone maps per media folder, presets with ``visual`` settings), and with ``media=True``
``frames`` (decoded, resized frames; presets without backbone maps) and ``masks`` (bit-packed
target masks per ``<folder>/fid_<fid>``). A dataset with labels of its own registers its kinds
as plug-ins: the ``refavs.cache_kinds`` entry points of the installed packages (each loads to a
:class:`CacheKind`; Ref-AVS Synth declares its sounding-object masks so) or
:func:`register_cache_kind` at run time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from refavs.data.frames import load_clip_frames
from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.masks import MediaError, load_mask
from refavs.data.plugins import Plugins
from refavs.data.records import Expression
from refavs.features.audio.encoder import build_audio_featurizer
from refavs.features.cache.keys import (FeatureCacheError, audio_settings, frame_settings, mask_settings, text_settings,
                                        visual_settings)
from refavs.features.config import FeatureConfig
from refavs.features.text import TextEncoder
from refavs.features.visual import BackboneMaps, stored_maps

ENTRY_POINT_GROUP = "refavs.cache_kinds"
"""Entry-point group of plug-in kinds: each loads to a :class:`CacheKind`."""

Compute = Callable[[Sequence[str]], Mapping[str, np.ndarray]]
"""Computes the named arrays of a chunk of items (each array's first dimension: one row per item)."""


class AudioSource(Protocol):
    def embed_files(self, paths: Sequence[Path]): ...


class TextSource(Protocol):
    def encode(self, texts: Sequence[str]): ...


@dataclass
class ExtractionContext:
    """What a kind's computation may use: the dataset, the settings, and encoders given by the caller.

    Attributes:
        layout: the dataset folder.
        config: the feature preset.
        device: where encoders run.
        batch_size: clips per encoder call and per chunk.
        mask_size, mask_resize: the target masks' size and resize rule.
        audio_source, text_source: encoders to use instead of the preset's (tests pass fakes).
    """

    layout: DatasetLayout
    config: FeatureConfig
    device: str = "cpu"
    batch_size: int = 16
    mask_size: int = MASK_SIZE
    mask_resize: str = "reference"
    audio_source: AudioSource | None = None
    text_source: TextSource | None = None


@dataclass(frozen=True)
class CacheKind:
    """One kind of cached array.

    Attributes:
        name: the folder prefix (``<root>/<name>-<key>``) and the kind's name everywhere.
        settings: ``(config, mask_size, mask_resize) ->`` what the kind's key hashes, or None
            when the preset caches no such kind.
        applies: ``(dataset root, has backbone maps, media) ->`` whether a dataset extracts and
            needs this kind.
        items: ``(layout, expressions) ->`` the distinct items (rows) of a split, in order.
        key: ``(expression, media folder) ->`` the item an expression reads, or None when it
            needs none (an empty target has no mask).
        chunk: ``(batch_size, config) ->`` rows per chunk.
        compute: ``ExtractionContext ->`` the function computing a chunk's arrays (the encoder
            is built once, when the kind has something to extract).
        read: ``(arrays of a row by name) ->`` the value :meth:`FeatureStore.cached` returns.
        index_extra: ``(expressions) ->`` extra entries of the split's ``index.json``.
        counter: the name of the kind's count in an extraction report.
        content: ``(layout, item) ->`` a digest of the files the item's rows are computed from
            (None when unreadable), for kinds whose rows depend on nothing else: items of equal
            digest are computed once per extraction and the row copied
            (:class:`~refavs.features.cache.extract.RowReuse`); None for kinds without one.
    """

    name: str
    settings: Callable[[FeatureConfig, int, str], dict | None]
    applies: Callable[[Path, bool, bool], bool]
    items: Callable[[DatasetLayout, Sequence[Expression]], list[str]]
    key: Callable[[Expression, str], str | None]
    chunk: Callable[[int, FeatureConfig], int]
    compute: Callable[[ExtractionContext], Compute]
    read: Callable[[Mapping[str, np.ndarray]], Any] | None = None
    index_extra: Callable[[Sequence[Expression]], dict] | None = None
    counter: str = field(default="")
    content: Callable[[DatasetLayout, str], str | None] | None = None

    @property
    def report_name(self) -> str:
        return self.counter or f"{self.name}_computed"


# ----------------------------------------------------------------------------- items


def folder_items(layout: DatasetLayout, expressions: Iterable[Expression]) -> list[str]:
    """Distinct media folders of ``expressions`` in first-appearance order."""
    seen: dict[str, None] = {}
    for e in expressions:
        seen.setdefault(layout.resolve_folder(e.uid, e.vid), None)
    return list(seen)


def text_items(expressions: Iterable[Expression]) -> tuple[list[str], dict[str, int]]:
    """Distinct expression strings in first-appearance order, and uid -> row (first row of a repeated uid)."""
    rows: dict[str, int] = {}
    uids: dict[str, int] = {}
    for e in expressions:
        row = rows.setdefault(e.exp, len(rows))
        uids.setdefault(e.uid, row)
    return list(rows), uids


def mask_key(folder: str, fid: int) -> str:
    """The item of a target mask folder: ``<folder>/fid_<fid>``."""
    return f"{folder}/fid_{fid}"


def mask_items(layout: DatasetLayout, expressions: Iterable[Expression]) -> list[str]:
    """Distinct ``<folder>/fid_<fid>`` mask folders of ``expressions`` in first-appearance order."""
    seen: dict[str, None] = {}
    for e in expressions:
        seen.setdefault(mask_key(layout.resolve_folder(e.uid, e.vid), e.fid), None)
    return list(seen)


def _folder_key(e: Expression, folder: str) -> str:
    return folder


def frames_digest(layout: DatasetLayout, folder: str) -> str | None:
    """BLAKE2b (16 bytes, hex) of the bytes of a media folder's frame files in order, or None
    when one cannot be read (its extraction then reports the error). Folders with the same
    digest decode to the same frames: Ref-AVS's null folders (``null_m-<vid>``, ``null_c-<vid>``)
    repeat the frames of ``<vid>`` with another audio track."""
    h = hashlib.blake2b(digest_size=16)
    try:
        for t in range(NUM_FRAMES):
            data = layout.frame(folder, t).read_bytes()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    except OSError:
        return None
    return h.hexdigest()


# ----------------------------------------------------------------------------- computations


def _compute_audio(ctx: ExtractionContext) -> Compute:
    source = ctx.audio_source
    if source is None:
        source = build_audio_featurizer(ctx.config.audio, ctx.device)

    def compute(folders: Sequence[str]) -> dict[str, np.ndarray]:
        feats = source.embed_files([ctx.layout.audio(f) for f in folders])
        return {"features": np.asarray(feats, dtype=np.float32)}
    return compute


def _compute_text(ctx: ExtractionContext) -> Compute:
    source = ctx.text_source
    if source is None:
        source = TextEncoder(ctx.config.text, ctx.device)
    dtype = np.float16 if ctx.config.text.dtype == "float16" else np.float32

    def compute(texts: Sequence[str]) -> dict[str, np.ndarray]:
        feats, mask = source.encode(texts)
        return {"features": np.asarray(feats).astype(dtype), "mask": np.asarray(mask, dtype=bool)}
    return compute


def _compute_frames(ctx: ExtractionContext) -> Compute:
    def compute(folders: Sequence[str]) -> dict[str, np.ndarray]:
        return {"frames": np.stack([load_clip_frames(ctx.layout, f, ctx.config.image.size) for f in folders])}
    return compute


def _compute_masks(ctx: ExtractionContext) -> Compute:
    layout = ctx.layout

    def compute(keys: Sequence[str]) -> dict[str, np.ndarray]:
        out = []
        for key in keys:
            folder, fid = key.rsplit("/fid_", 1)
            if not layout.mask_dir(folder, int(fid)).is_dir():
                raise MediaError(f"{layout.mask_dir(folder, int(fid))}: no mask folder")
            masks = np.stack([load_mask(layout.mask(folder, int(fid), t), ctx.mask_size, ctx.mask_resize)
                              for t in range(NUM_FRAMES)])
            out.append(np.packbits(masks, axis=-1))
        return {"packed": np.stack(out)}
    return compute


def _compute_visual(ctx: ExtractionContext) -> Compute:
    maps = BackboneMaps(ctx.config, ctx.device)

    def compute(folders: Sequence[str]) -> dict[str, np.ndarray]:
        return maps.of_clips([load_clip_frames(ctx.layout, f, ctx.config.image.size) for f in folders])
    return compute


def _read_visual(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return stored_maps(arrays, [n for n in arrays if not n.endswith(("_lo", "_step"))])


def unpack_masks(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """``bool [T, s, s]`` of a row of bit-packed square masks (``packed``: ``[T, s, s / 8]``)."""
    packed = arrays["packed"]
    return np.unpackbits(packed, axis=-1, count=packed.shape[-2]).astype(bool)


def _text_index(expressions: Sequence[Expression]) -> dict:
    return {"uids": text_items(expressions)[1]}


BUILTIN_KINDS: tuple[CacheKind, ...] = (
    CacheKind("audio", lambda c, size, resize: audio_settings(c.audio), lambda root, visual, media: True,
              folder_items, _folder_key, lambda batch, c: batch, _compute_audio, counter="clips_computed"),
    CacheKind("text", lambda c, size, resize: text_settings(c.text), lambda root, visual, media: True,
              lambda layout, rows: text_items(rows)[0], lambda e, folder: e.exp,
              lambda batch, c: c.text.batch_size, _compute_text, index_extra=_text_index,
              counter="texts_computed"),
    CacheKind("visual", lambda c, size, resize: visual_settings(c), lambda root, visual, media: visual,
              folder_items, _folder_key, lambda batch, c: max(1, c.visual.batch_size // NUM_FRAMES),
              _compute_visual, read=_read_visual, content=frames_digest),
    CacheKind("frames", lambda c, size, resize: frame_settings(c), lambda root, visual, media: media and not visual,
              folder_items, _folder_key, lambda batch, c: batch, _compute_frames, content=frames_digest),
    CacheKind("masks", lambda c, size, resize: mask_settings(size, resize), lambda root, visual, media: media,
              mask_items, lambda e, folder: None if e.empty else mask_key(folder, e.fid),
              lambda batch, c: 4 * batch, _compute_masks),
)
"""The kinds every dataset has, in extraction order."""

PLUGIN_KINDS: Plugins[CacheKind] = Plugins(ENTRY_POINT_GROUP)
"""The plug-in kinds: the installed packages' entry points, then those registered."""


def register_cache_kind(kind: CacheKind) -> None:
    """Add a plug-in kind (after the built-in and entry-point kinds); a second kind of one name is refused."""
    if any(k.name == kind.name and k is not kind for k in cache_kinds()):
        raise ValueError(f"a cache kind named {kind.name!r} exists already")
    PLUGIN_KINDS.register(kind)


def cache_kinds() -> list[CacheKind]:
    """Every kind: the built-in ones, then the plug-ins' (entry points by name, then registered ones)."""
    kinds = list(BUILTIN_KINDS) + list(PLUGIN_KINDS)
    names = [k.name for k in kinds]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise FeatureCacheError(f"cache kinds named twice by the installed plug-ins: {', '.join(duplicated)}")
    return kinds


def cache_kind(name: str) -> CacheKind:
    """The kind called ``name`` (KeyError naming the known kinds)."""
    for kind in cache_kinds():
        if kind.name == name:
            return kind
    raise KeyError(f"no cache kind {name!r}; known: {', '.join(k.name for k in cache_kinds())}")
