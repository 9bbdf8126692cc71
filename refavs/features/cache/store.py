"""Reading the cache: memory-mapped arrays of every kind, looked up by media folder or expression.

Opening a store compares the size of every array file with what its split's index records (one
``os.stat`` each, no byte read) and, for a split with chunk folders left beside its index, the
checksums too (:mod:`~refavs.features.cache.integrity`). A damaged file raises
:class:`~refavs.features.cache.keys.FeatureCacheError` naming it, its kind, its split and the
command that extracts it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from refavs.data.dataset import RefAVSDataset
from refavs.data.layout import MASK_SIZE, DatasetLayout
from refavs.data.records import Expression
from refavs.features.cache.extract import cache_paths
from refavs.features.cache.integrity import CacheDamage, split_damage
from refavs.features.cache.keys import FeatureCacheError
from refavs.features.cache.kinds import cache_kind, cache_kinds, mask_key, unpack_masks
from refavs.features.config import FEATURE_PRESETS, FeatureConfig

BASE_KINDS = frozenset({"audio", "text", "visual"})
"""The kinds extracted without ``--media`` (the others need it)."""
GENERIC_FIX = "refavs features --data-dir <dataset> --config <preset>"
"""The extraction command a store names when it was not opened from a dataset and a preset."""


def repair_advice(damage: CacheDamage, fix: str) -> str:
    """How to replace a damaged split: ``fix`` (the extraction command of the cache) with the
    split, ``--media`` where the kind needs it and ``--verify``; or delete the split folder."""
    media = "" if damage.kind in BASE_KINDS else " --media"
    return (f"extract it again with `{fix} --splits {damage.split}{media} --verify`, or delete "
            f"{damage.file.parent} and run `refavs features` again")


def damage_error(damage: Sequence[CacheDamage], fix: str) -> FeatureCacheError:
    """One line naming the first damaged file, its kind and split, what is wrong and the repair."""
    first = damage[0]
    more = f" (and {len(damage) - 1} more damaged file(s))" if len(damage) > 1 else ""
    return FeatureCacheError(f"damaged feature cache: {first}{more}; {repair_advice(first, fix)}")


class _SplitArrays:
    """The arrays of one split, opened memory-mapped on first use (so the object pickles cheaply)."""

    def __init__(self, folder: Path, names: Sequence[str], kind: str = "", fix: str = GENERIC_FIX):
        self.folder = folder
        self.names = list(names)
        self.kind, self.fix = kind, fix
        self._arrays: dict[str, np.ndarray] | None = None

    def get(self, name: str) -> np.ndarray:
        if self._arrays is None:
            self._arrays = {n: self._open(n) for n in self.names}
        return self._arrays[name]

    def _open(self, name: str) -> np.ndarray:
        path = self.folder / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:  # missing, cut short, or a header that is not .npy
            damage = CacheDamage(path, self.kind, self.folder.name, f"unreadable ({err})")
            raise damage_error([damage], self.fix) from None

    def __getstate__(self):
        return {"folder": self.folder, "names": self.names, "kind": self.kind, "fix": self.fix, "_arrays": None}


class FeatureStore:
    """Read-only access to the cache, memory-mapped; safe to share with DataLoader workers.

    ``audio(folder)`` -> ``[num_windows, A]`` float32; ``text(uid)`` and ``text_of(expression)``
    -> ``([max_tokens, D] float32, [max_tokens] bool)``; with a media cache, ``frames(folder)``
    -> ``uint8 [T, H, W, 3]`` and ``masks(folder, fid)`` -> ``bool [T, S, S]``; any kind, the
    plug-ins' included, through ``cached(kind, key)``. Returned arrays are copies, so callers
    may modify them.

    Args:
        dirs: the keyed folder of each kind to read (``audio`` and ``text`` at least).
        mask_size: side of the cached masks (to unpack the bits).
        mask_resize: the resize rule the cached masks were made with.
        fix: the ``refavs features`` command that extracts this cache (named by errors about
            damaged files, with the split to extract again).

    Raises:
        FeatureCacheError: an index is unreadable, or an array file is missing, of another size
            than its index records, or (for a split with chunk folders left beside its index)
            of another checksum.
    """

    def __init__(self, dirs: Mapping[str, str | Path], mask_size: int = MASK_SIZE, mask_resize: str = "reference",
                 fix: str = GENERIC_FIX):
        missing = {"audio", "text"} - set(dirs)
        if missing:
            raise ValueError(f"a feature store needs the folders of {', '.join(sorted(missing))}")
        self.dirs = {kind: Path(folder) for kind, folder in dirs.items()}
        self.mask_size, self.mask_resize, self.fix = mask_size, mask_resize, fix
        self._rows: dict[str, dict[str, tuple[_SplitArrays, int]]] = {kind: {} for kind in self.dirs}
        self._uids: dict[str, str] = {}
        for kind, folder in self.dirs.items():
            table = self._rows[kind]
            for index in sorted(folder.glob("*/index.json")) if folder.is_dir() else []:
                try:
                    info = json.loads(index.read_text(encoding="utf-8"))
                    arrays = _SplitArrays(index.parent, info["arrays"], kind, fix)
                    keys = info["keys"]
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise FeatureCacheError(f"{index}: unreadable cache index ({err}); delete "
                                            f"{index.parent} and run `refavs features` again") from None
                damage = split_damage(index.parent, info)
                if damage:
                    raise damage_error(damage, fix)
                for row, key in enumerate(keys):
                    table.setdefault(key, (arrays, row))
                for uid, row in info.get("uids", {}).items():
                    self._uids.setdefault(uid, keys[row])
        self.manifests = {kind: self._manifest(d) for kind, d in self.dirs.items()}
        self._readers: dict[str, Callable] = {}

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

        With ``media`` the frame and mask caches, and the plug-in kinds, are used where
        ``refavs features --media`` made them.
        """
        paths = cache_paths(data_dir, config, cache_dir, mask_size, mask_resize)
        wanted = BASE_KINDS if not media else set(paths.folders)
        dirs = {kind: folder for kind, folder in paths.folders.items() if folder is not None and kind in wanted}
        preset = config.name if config.name in FEATURE_PRESETS else "<preset>"
        fix = f"refavs features --data-dir {data_dir} --config {preset}"
        if cache_dir is not None:
            fix += f" --cache-dir {cache_dir}"
        return cls(dirs, mask_size, mask_resize, fix)

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
        return self.has("frames", folder)

    def has_masks(self, folder: str, fid: int) -> bool:
        return self.has("masks", mask_key(folder, fid))

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
        return self.has("visual", folder)

    def visual(self, folder: str) -> dict[str, np.ndarray]:
        """``{"s8": [T, C, g, g], "s16": ...}`` float32 cached backbone maps of a media folder."""
        return self._read("visual", folder, "media folder")

    def has(self, kind: str, key: str) -> bool:
        """Whether ``key`` (a media folder, for most kinds) has cached arrays of ``kind``."""
        return key in self._rows.get(kind, {})

    def cached(self, kind: str, key: str):
        """The cached value of ``kind`` for ``key`` as the kind reads it (e.g. Ref-AVS Synth's
        ``sounding``: ``bool [T, s, s]``), or None when this store has none."""
        if not self.has(kind, key):
            return None
        return self._read(kind, key, "item")

    def _read(self, kind: str, key: str, what: str):
        arrays, row = self._lookup(kind, key, what)
        values = {name: arrays.get(name)[row] for name in arrays.names}
        if kind not in self._readers:
            read = cache_kind(kind).read
            if read is None:
                raise FeatureCacheError(f"cache kind {kind!r} has no reader; use its own accessor")
            self._readers[kind] = read
        return self._readers[kind](values)

    def missing(self, layout: DatasetLayout, expressions: Iterable[Expression],
                media: bool = False) -> tuple[list[str], list[str]]:
        """Media folders and expression uids (text) of ``expressions`` whose arrays are not cached:
        audio, backbone maps where the preset caches them, and with ``media`` also the frames
        (unless backbone maps replace them), the target masks (an ``empty`` expression, a
        training negative, needs none) and the plug-in kinds the dataset has."""
        visual = self.has_visual_maps
        kinds = [k for k in cache_kinds() if k.name != "text" and k.applies(layout.root, visual, media)
                 and (k.name in self.dirs or k.name in ("frames", "masks"))]
        folders, uids = [], []
        for e in expressions:
            folder = layout.resolve_folder(e.uid, e.vid)
            for kind in kinds:
                key = kind.key(e, folder)
                if key is not None and not self.has(kind.name, key):
                    folders.append(folder)
                    break
            if e.exp not in self._rows["text"]:
                uids.append(e.uid)
        return sorted(set(folders)), uids

    def require(self, layout: DatasetLayout, expressions: Sequence[Expression], splits: Sequence[str]) -> None:
        """Raise :class:`FeatureCacheError` saying what is missing and what to run, if anything is."""
        folders, uids = self.missing(layout, expressions)
        if folders or uids:
            shown = ", ".join((folders + uids)[:5])
            raise FeatureCacheError(
                f"{layout.root}: features missing for {len(folders)} media folder(s) and {len(uids)} "
                f"expression(s) of split(s) {', '.join(splits)} (e.g. {shown}); run "
                f"`refavs features --data-dir {layout.root} --config <name> --splits {' '.join(splits)}` "
                "with the same feature settings")

    def __len__(self) -> int:
        return len(self._rows["text"])


def open_dataset(data_dir: str | Path, splits: str | Sequence[str], config: FeatureConfig,
                 cache_dir: str | Path | None = None, **kwargs) -> RefAVSDataset:
    """The dataset of ``splits`` reading the cache of ``config`` (extracted by ``refavs features``);
    ``kwargs`` go to :class:`~refavs.data.dataset.RefAVSDataset`."""
    store = FeatureStore.open(data_dir, config, cache_dir, mask_size=kwargs.get("mask_size", MASK_SIZE),
                              mask_resize=kwargs.get("mask_resize", "reference"))
    return RefAVSDataset(data_dir, splits, store, image=config.image, **kwargs)
