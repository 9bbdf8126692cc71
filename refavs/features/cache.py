"""The feature cache: audio and text features extracted once per dataset, memory-mapped on read.

Layout (``<root>`` is ``<data_dir>/.refavs_cache`` by default; with ``cache_dir`` it is
``<cache_dir>/<dataset folder name>-<hash of its absolute path>``)::

    <root>/audio-<key>/manifest.json           settings and encoder identity behind <key>
    <root>/audio-<key>/<split>/features.npy    [clips, num_windows, dim] float32
    <root>/audio-<key>/<split>/index.json      media folder of each row, in row order
    <root>/text-<key>/<split>/features.npy     [expressions, max_tokens, dim] float32|float16
    <root>/text-<key>/<split>/mask.npy         [expressions, max_tokens] bool
    <root>/text-<key>/<split>/index.json       expression string of each row, and uid -> row
    <root>/visual-<key>/<split>/s8.npy, s16.npy  [clips, 10, C, g, g] backbone maps (``lite`` preset; 8-bit
                                               levels with per-channel s8_lo.npy, s8_step.npy ...)
    <root>/masks-<key>/, frames-<key>/         decoded targets and frames (``media=True``)
    <root>/sounding-<key>/<split>/packed.npy   [clips, 10, s, s/8] bit-packed sounding-object masks (Synth)

``<key>`` is a hash of every setting that changes the output and of the encoder's identity
(weights URL or file hash, text model folder fingerprint), so changing a setting selects
a new folder and never reads stale features. Audio is stored once per media folder (all
expressions of a clip share it); text once per distinct expression string.

Extraction writes chunks of ``batch_size`` rows to ``<split>/parts-<digest>-<chunk>/`` (each
chunk atomically); an interrupted run resumes at the first missing chunk. When every chunk
is there they are joined into the ``.npy`` files (written to temporary names and renamed) and
``index.json`` is written last: a split is complete exactly when its index exists and
matches the current list of items.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.records import Expression
from refavs.data.writer import atomic_write_bytes
from refavs.features.config import AudioFeatureConfig, FeatureConfig, TextFeatureConfig

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the on-disk format changes; part of every key."""

CACHE_DIRNAME = ".refavs_cache"


class FeatureCacheError(RuntimeError):
    """Features are missing from the cache or the cache is unusable; the message says what to run."""


# ----------------------------------------------------------------------------- keys


def audio_settings(config: AudioFeatureConfig) -> dict:
    """The audio settings that change the features, with the encoder's identity."""
    from refavs.features.download import file_fingerprint

    settings = dataclasses.asdict(config)
    if config.encoder == "logmel":
        for name in ("vggish_weights", "vggish_pca", "postprocess", "vggish_final_relu", "seed"):
            settings.pop(name)
    else:
        settings["vggish_weights"] = file_fingerprint(config.vggish_weights)
        settings["vggish_pca"] = file_fingerprint(config.vggish_pca) if config.postprocess else None
        if config.vggish_weights is not None:
            settings.pop("seed")
    return settings


def text_settings(config: TextFeatureConfig) -> dict:
    """The text settings that change the features, with the model's fingerprint."""
    from refavs.features.text import model_fingerprint

    return {"model": config.model, "model_fingerprint": model_fingerprint(config.model),
            "max_tokens": config.max_tokens, "dtype": config.dtype}


def settings_key(kind: str, settings: Mapping) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``kind``, format version and settings."""
    blob = json.dumps({"kind": kind, "format": CACHE_FORMAT_VERSION, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root(data_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where a dataset's features live (see the module docstring)."""
    data_dir = Path(data_dir)
    if cache_dir is None:
        return data_dir / CACHE_DIRNAME
    absolute = str(data_dir.expanduser().resolve())
    return Path(cache_dir).expanduser() / f"{data_dir.resolve().name}-{hashlib.sha256(absolute.encode()).hexdigest()[:8]}"


def frame_settings(config: FeatureConfig) -> dict:
    """What the decoded-frame cache depends on: the resize rule and size, and the frame count."""
    return {"size": config.image.size, "resample": "bilinear", "num_frames": NUM_FRAMES}


def visual_settings(config: FeatureConfig) -> dict | None:
    """What the cached backbone maps depend on: the backbone and its weights' SHA-256, the maps
    kept and their type, the frame size and normalisation (None when the preset caches none)."""
    if config.visual is None:
        return None
    from refavs.models.backbones.efficientnet_lite import weights_sha256

    return {**dataclasses.asdict(config.visual), "weights_sha256": weights_sha256(), "batch_size": None,
            "image": dataclasses.asdict(config.image), "resample": "bilinear", "num_frames": NUM_FRAMES}


SOUNDING_SIZE = 48
"""Side of the cached sounding-object masks (the ``lite`` model pools them to its stride-16 grid)."""


def sounding_settings() -> dict:
    """What the sounding-mask cache depends on: its size and the frame count."""
    return {"size": SOUNDING_SIZE, "resize": "nearest", "num_frames": NUM_FRAMES}


def mask_settings(mask_size: int = MASK_SIZE, mask_resize: str = "reference") -> dict:
    """What the mask cache depends on: the target size, the resize rule and the frame count."""
    return {"size": mask_size, "resize": mask_resize, "num_frames": NUM_FRAMES}


@dataclass(frozen=True)
class CachePaths:
    """The keyed folders of one feature configuration.

    Attributes:
        audio: ``<root>/audio-<key>``.
        text: ``<root>/text-<key>``.
        frames: ``<root>/frames-<key>`` (decoded, resized frames; only with ``media=True``).
        masks: ``<root>/masks-<key>`` (bit-packed target masks; only with ``media=True``).
        visual: ``<root>/visual-<key>`` (backbone maps), None when the preset caches none.
        sounding: ``<root>/sounding-<key>`` (Synth's sounding-object masks; with ``media=True``).
        settings: what each key hashes, by kind.
    """

    audio: Path
    text: Path
    frames: Path
    masks: Path
    visual: Path | None
    sounding: Path
    settings: dict = field(compare=False)

    def folder(self, kind: str) -> Path:
        return getattr(self, kind)


def cache_paths(data_dir: str | Path, config: FeatureConfig, cache_dir: str | Path | None = None,
                mask_size: int = MASK_SIZE, mask_resize: str = "reference") -> CachePaths:
    """The keyed cache folders of ``config`` for the dataset at ``data_dir``."""
    root = cache_root(data_dir, cache_dir)
    settings = {"audio": audio_settings(config.audio), "text": text_settings(config.text),
                "frames": frame_settings(config), "masks": mask_settings(mask_size, mask_resize),
                "visual": visual_settings(config), "sounding": sounding_settings()}
    folders = {kind: None if value is None else root / f"{kind}-{settings_key(kind, value)}"
               for kind, value in settings.items()}
    return CachePaths(**folders, settings=settings)


# ----------------------------------------------------------------------------- writing


def _keys_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"))


def _write_manifest(folder: Path, kind: str, settings: Mapping) -> None:
    path = folder / "manifest.json"
    if path.is_file():
        return
    from refavs import __version__

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


def split_is_complete(split_dir: Path, keys: Sequence[str]) -> bool:
    """True when ``split_dir`` holds finished arrays for exactly ``keys`` in that order."""
    index = split_dir / "index.json"
    if not index.is_file():
        return False
    try:
        info = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("digest") == _keys_digest(keys) and all((split_dir / f"{n}.npy").is_file()
                                                            for n in info.get("arrays", []))


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
        os.replace(tmp, split_dir / f"{name}.npy")
    _write_json(index, {"digest": digest, "count": len(keys), "arrays": list(names), "keys": list(keys),
                        **extra_index})
    for stale in split_dir.glob("parts-*"):
        shutil.rmtree(stale, ignore_errors=True)


# ----------------------------------------------------------------------------- items of a dataset


def audio_items(layout: DatasetLayout, expressions: Iterable[Expression]) -> list[str]:
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


class AudioSource(Protocol):
    def embed_files(self, paths: Sequence[Path]): ...


class TextSource(Protocol):
    def encode(self, texts: Sequence[str]): ...


@dataclass
class ExtractionReport:
    """What :func:`extract_features` did.

    Attributes:
        paths: the keyed cache folders.
        splits: per split, ``clips``/``expressions`` (distinct items) and how many of each were
            computed by this run (``clips_computed``, ``texts_computed``; 0 when cached).
        seconds: wall time of the run.
    """

    paths: CachePaths
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def clips_computed(self) -> int:
        return sum(s["clips_computed"] for s in self.splits.values())

    @property
    def texts_computed(self) -> int:
        return sum(s["texts_computed"] for s in self.splits.values())


def mask_items(layout: DatasetLayout, expressions: Iterable[Expression]) -> list[str]:
    """Distinct ``<folder>/fid_<fid>`` mask folders of ``expressions`` in first-appearance order."""
    seen: dict[str, None] = {}
    for e in expressions:
        seen.setdefault(mask_key(layout.resolve_folder(e.uid, e.vid), e.fid), None)
    return list(seen)


def mask_key(folder: str, fid: int) -> str:
    return f"{folder}/fid_{fid}"


def extract_features(data_dir: str | Path, config: FeatureConfig, splits: Sequence[str] | None = None,
                     cache_dir: str | Path | None = None, batch_size: int = 16, device: str = "cpu",
                     progress: bool = True, media: bool = False, mask_size: int = MASK_SIZE,
                     mask_resize: str = "reference", audio_source: AudioSource | None = None,
                     text_source: TextSource | None = None) -> ExtractionReport:
    """Extract and cache the audio and text features of every expression of ``splits``.

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
            ``10 * size * size * 3`` bytes per clip); on Ref-AVS Synth data with ``gt_sounding``,
            the sounding-object masks too.
        mask_size, mask_resize: the target masks' size and resize rule (with ``media``).

    A preset with ``visual`` settings also caches its backbone's maps of every frame (see
    :mod:`refavs.features.visual`).
    """
    from tqdm import tqdm

    from refavs.data.frames import load_clip_frames
    from refavs.data.masks import load_mask
    from refavs.data.metadata import read_metadata
    from refavs.synth.sounding import has_sounding, load_sounding_masks

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
    kinds = ["audio", "text"] + (["visual"] if config.visual is not None else [])
    if media:
        kinds += (["frames"] if config.visual is None else []) + ["masks"]
        kinds += ["sounding"] if has_sounding(layout.root) else []
    plan: dict[str, dict[str, list[str]]] = {}
    uids: dict[str, dict[str, int]] = {}
    for split in (s for s in SPLITS if s in by_split):
        rows = by_split[split]
        texts, uids[split] = text_items(rows)
        folders = audio_items(layout, rows)
        plan[split] = {"audio": folders, "text": texts, "frames": folders, "masks": mask_items(layout, rows),
                       "visual": folders, "sounding": folders}
        report.splits[split] = {"clips": len(folders), "expressions": len(texts), "clips_computed": 0,
                                "texts_computed": 0, **{f"{k}_computed": 0 for k in kinds[2:]}}
    todo = {kind: sum(len(items[kind]) for split, items in plan.items()
                      if not split_is_complete(paths.folder(kind) / split, items[kind])) for kind in kinds}
    for kind in kinds:
        if todo[kind]:
            _write_manifest(paths.folder(kind), kind, paths.settings[kind])
    if todo["audio"] and audio_source is None:
        from refavs.features.audio.encoder import build_audio_featurizer

        audio_source = build_audio_featurizer(config.audio, device)
    if todo["text"] and text_source is None:
        from refavs.features.text import TextEncoder

        text_source = TextEncoder(config.text, device)
    text_dtype = np.float16 if config.text.dtype == "float16" else np.float32
    visual_source = None
    if todo.get("visual"):
        from refavs.features.visual import BackboneMaps

        visual_source = BackboneMaps(config, device)

    def compute_audio(folders: Sequence[str]) -> dict[str, np.ndarray]:
        feats = audio_source.embed_files([layout.audio(f) for f in folders])
        return {"features": np.asarray(feats, dtype=np.float32)}

    def compute_text(texts: Sequence[str]) -> dict[str, np.ndarray]:
        feats, mask = text_source.encode(texts)
        return {"features": np.asarray(feats).astype(text_dtype), "mask": np.asarray(mask, dtype=bool)}

    def compute_frames(folders: Sequence[str]) -> dict[str, np.ndarray]:
        return {"frames": np.stack([load_clip_frames(layout, f, config.image.size) for f in folders])}

    def compute_masks(keys: Sequence[str]) -> dict[str, np.ndarray]:
        out = []
        for key in keys:
            folder, fid = key.rsplit("/fid_", 1)
            if not layout.mask_dir(folder, int(fid)).is_dir():
                from refavs.data.masks import MediaError

                raise MediaError(f"{layout.mask_dir(folder, int(fid))}: no mask folder")
            masks = np.stack([load_mask(layout.mask(folder, int(fid), t), mask_size, mask_resize)
                              for t in range(NUM_FRAMES)])
            out.append(np.packbits(masks, axis=-1))
        return {"packed": np.stack(out)}

    def compute_visual(folders: Sequence[str]) -> dict[str, np.ndarray]:
        return visual_source.of_clips([load_clip_frames(layout, f, config.image.size) for f in folders])

    def compute_sounding(folders: Sequence[str]) -> dict[str, np.ndarray]:
        return {"packed": np.stack([np.packbits(load_sounding_masks(layout.root, f, SOUNDING_SIZE), axis=-1)
                                    for f in folders])}

    compute = {"audio": compute_audio, "text": compute_text, "frames": compute_frames, "masks": compute_masks,
               "visual": compute_visual, "sounding": compute_sounding}
    chunk = {"audio": batch_size, "text": config.text.batch_size, "frames": batch_size, "masks": 4 * batch_size,
             "visual": max(1, config.visual.batch_size // NUM_FRAMES) if config.visual else 1,
             "sounding": 4 * batch_size}
    total = sum(todo.values())
    with tqdm(total=total, unit="item", desc="features", disable=not progress or not total,
              dynamic_ncols=True) as bar:
        for split, items in plan.items():
            for kind in kinds:
                bar.set_postfix_str(f"{split} {kind}")
                extra = {"uids": uids[split]} if kind == "text" else None
                done = extract_split(paths.folder(kind) / split, items[kind], compute[kind], chunk[kind],
                                     bar.update, extra)
                report.splits[split][{"audio": "clips_computed", "text": "texts_computed"}.get(
                    kind, f"{kind}_computed")] = done
    report.seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------- reading


class _SplitArrays:
    """The arrays of one split, opened memory-mapped on first use (so the object pickles cheaply)."""

    def __init__(self, folder: Path, names: Sequence[str]):
        self.folder = folder
        self.names = list(names)
        self._arrays: dict[str, np.ndarray] | None = None

    def get(self, name: str) -> np.ndarray:
        if self._arrays is None:
            self._arrays = {n: np.load(self.folder / f"{n}.npy", mmap_mode="r") for n in self.names}
        return self._arrays[name]

    def __getstate__(self):
        return {"folder": self.folder, "names": self.names, "_arrays": None}


class FeatureStore:
    """Read-only access to the cache, memory-mapped; safe to share with DataLoader workers.

    ``audio(folder)`` -> ``[num_windows, A]`` float32; ``text(uid)`` and ``text_of(expression)``
    -> ``([max_tokens, D] float32, [max_tokens] bool)``; with a media cache, ``frames(folder)``
    -> ``uint8 [T, H, W, 3]`` and ``masks(folder, fid)`` -> ``bool [T, S, S]``. Returned arrays
    are copies, so callers may modify them.

    Args:
        audio_dir, text_dir: the keyed folders of the audio and text features.
        frames_dir, masks_dir: the keyed folders of the media cache (optional).
        mask_size: side of the cached masks (to unpack the bits).
        mask_resize: the resize rule the cached masks were made with.
    """

    def __init__(self, audio_dir: str | Path, text_dir: str | Path, frames_dir: str | Path | None = None,
                 masks_dir: str | Path | None = None, mask_size: int = MASK_SIZE, mask_resize: str = "reference",
                 visual_dir: str | Path | None = None, sounding_dir: str | Path | None = None):
        self.dirs = {"audio": Path(audio_dir), "text": Path(text_dir)}
        for kind, folder in (("frames", frames_dir), ("masks", masks_dir), ("visual", visual_dir),
                             ("sounding", sounding_dir)):
            if folder is not None:
                self.dirs[kind] = Path(folder)
        self.mask_size, self.mask_resize = mask_size, mask_resize
        self._rows: dict[str, dict[str, tuple[_SplitArrays, int]]] = {kind: {} for kind in self.dirs}
        self._uids: dict[str, str] = {}
        for kind, folder in self.dirs.items():
            table = self._rows[kind]
            for index in sorted(folder.glob("*/index.json")) if folder.is_dir() else []:
                try:
                    info = json.loads(index.read_text(encoding="utf-8"))
                    arrays = _SplitArrays(index.parent, info["arrays"])
                    keys = info["keys"]
                except (OSError, ValueError, KeyError) as err:
                    raise FeatureCacheError(f"{index}: unreadable cache index ({err}); delete "
                                            f"{index.parent} and run `refavs features` again") from None
                for row, key in enumerate(keys):
                    table.setdefault(key, (arrays, row))
                for uid, row in info.get("uids", {}).items():
                    self._uids.setdefault(uid, keys[row])
        self.manifests = {kind: self._manifest(d) for kind, d in self.dirs.items()}

    @property
    def audio_dir(self) -> Path:
        return self.dirs["audio"]

    @property
    def text_dir(self) -> Path:
        return self.dirs["text"]

    @staticmethod
    def _manifest(folder: Path) -> dict:
        path = folder / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @classmethod
    def open(cls, data_dir: str | Path, config: FeatureConfig, cache_dir: str | Path | None = None,
             media: bool = True, mask_size: int = MASK_SIZE, mask_resize: str = "reference") -> "FeatureStore":
        """The store of ``config``'s features for the dataset at ``data_dir`` (may be partly empty).

        With ``media`` the frame and mask caches are used where ``refavs features --media`` made them.
        """
        paths = cache_paths(data_dir, config, cache_dir, mask_size, mask_resize)
        if media:
            return cls(paths.audio, paths.text, paths.frames, paths.masks, mask_size, mask_resize, paths.visual,
                       paths.sounding)
        return cls(paths.audio, paths.text, visual_dir=paths.visual)

    def _lookup(self, kind: str, key: str, what: str) -> tuple[_SplitArrays, int]:
        try:
            return self._rows[kind][key]
        except KeyError:
            where = self.dirs.get(kind, "the cache")
            raise FeatureCacheError(f"no cached {kind} for {what} {key!r} in {where}; "
                                    "run `refavs features` for its split") from None

    def has_audio(self, folder: str) -> bool:
        return folder in self._rows["audio"]

    def has_text(self, expression: str) -> bool:
        return expression in self._rows["text"]

    def has_frames(self, folder: str) -> bool:
        return folder in self._rows.get("frames", {})

    def has_masks(self, folder: str, fid: int) -> bool:
        return mask_key(folder, fid) in self._rows.get("masks", {})

    def audio(self, folder: str) -> np.ndarray:
        """``[num_windows, A]`` float32 features of a media folder."""
        arrays, row = self._lookup("audio", folder, "media folder")
        return np.array(arrays.get("features")[row], dtype=np.float32)

    def text_of(self, expression: str) -> tuple[np.ndarray, np.ndarray]:
        """``([max_tokens, D] float32, [max_tokens] bool)`` of an expression string."""
        arrays, row = self._lookup("text", expression, "expression")
        return (np.array(arrays.get("features")[row], dtype=np.float32),
                np.array(arrays.get("mask")[row], dtype=bool))

    def text(self, uid: str) -> tuple[np.ndarray, np.ndarray]:
        """Text features of an expression by uid (the first row's expression for a repeated uid)."""
        if uid not in self._uids:
            raise FeatureCacheError(f"no cached text features for uid {uid!r} in {self.text_dir}; "
                                    "run `refavs features` for its split")
        return self.text_of(self._uids[uid])

    def frames(self, folder: str) -> np.ndarray:
        """``uint8 [T, H, W, 3]`` decoded, resized frames of a media folder (media cache)."""
        arrays, row = self._lookup("frames", folder, "media folder")
        return np.array(arrays.get("frames")[row])

    def masks(self, folder: str, fid: int) -> np.ndarray:
        """``bool [T, S, S]`` target masks of object ``fid`` of a media folder (media cache)."""
        arrays, row = self._lookup("masks", mask_key(folder, fid), "mask folder")
        return np.unpackbits(arrays.get("packed")[row], axis=-1, count=self.mask_size).astype(bool)

    @property
    def has_visual_maps(self) -> bool:
        """Whether this store is of a preset that caches backbone maps (the ``lite`` model's input)."""
        return "visual" in self.dirs

    def has_visual(self, folder: str) -> bool:
        return folder in self._rows.get("visual", {})

    def visual(self, folder: str) -> dict[str, np.ndarray]:
        """``{"s8": [T, C, g, g], "s16": ...}`` float32 cached backbone maps of a media folder."""
        from refavs.features.visual import stored_maps

        arrays, row = self._lookup("visual", folder, "media folder")
        rows = {name: arrays.get(name)[row] for name in arrays.names}
        return stored_maps(rows, [n for n in arrays.names if not n.endswith(("_lo", "_step"))])

    def has_sounding(self, folder: str) -> bool:
        return folder in self._rows.get("sounding", {})

    def sounding(self, folder: str) -> np.ndarray:
        """``bool [T, s, s]`` masks of the objects sounding in each second (Ref-AVS Synth's ``gt_sounding``)."""
        arrays, row = self._lookup("sounding", folder, "media folder")
        packed = arrays.get("packed")[row]
        return np.unpackbits(packed, axis=-1, count=packed.shape[-2]).astype(bool)

    def missing(self, layout: DatasetLayout, expressions: Iterable[Expression],
                media: bool = False) -> tuple[list[str], list[str]]:
        """Media folders (audio, backbone maps where the preset caches them; with ``media`` also
        frames, unless backbone maps replace them, target masks, and Synth's sounding masks where
        the data has them) and expression uids (text) of ``expressions`` that are not cached. An
        ``empty`` expression (a training negative) needs no target mask."""
        from refavs.synth.sounding import has_sounding

        folders, uids = [], []
        visual = self.has_visual_maps
        sounding = media and "sounding" in self.dirs and has_sounding(layout.root)
        for e in expressions:
            folder = layout.resolve_folder(e.uid, e.vid)
            if (folder not in self._rows["audio"] or (visual and not self.has_visual(folder)) or (
                    media and not ((visual or self.has_frames(folder)) and (e.empty or self.has_masks(folder, e.fid))))
                    or (sounding and not self.has_sounding(folder))):
                folders.append(folder)
            if e.exp not in self._rows["text"]:
                uids.append(e.uid)
        return sorted(set(folders)), uids

    def __len__(self) -> int:
        return len(self._rows["text"])
