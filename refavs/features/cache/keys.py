"""Where the cache lives and what names its folders: one keyed folder per kind of cached array.

``<root>/<kind>-<key>``, where ``<key>`` hashes every setting that changes the kind's output
and the encoder's identity (weights URL or file hash, text model fingerprint), so changing a
setting selects a new folder and never reads stale features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from refavs.data.layout import MASK_SIZE, NUM_FRAMES
from refavs.features.backbones.efficientnet_lite import weights_sha256
from refavs.features.config import AudioFeatureConfig, FeatureConfig, TextFeatureConfig
from refavs.features.download import file_fingerprint
from refavs.features.text import model_fingerprint

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the on-disk format changes; part of every key."""

CACHE_DIRNAME = ".refavs_cache"
"""The cache's folder inside a dataset folder (the default root)."""


class FeatureCacheError(RuntimeError):
    """Features are missing from the cache or the cache is unusable; the message says what to run."""


def audio_settings(config: AudioFeatureConfig) -> dict:
    """The audio settings that change the features, with the encoder's identity."""
    settings = dataclasses.asdict(config)
    if not config.stereo:  # mono features keep the keys they had before the option existed
        settings.pop("stereo")
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
    return {"model": config.model, "model_fingerprint": model_fingerprint(config.model),
            "max_tokens": config.max_tokens, "dtype": config.dtype}


def frame_settings(config: FeatureConfig) -> dict:
    """What the decoded-frame cache depends on: the resize rule and size, and the frame count."""
    return {"size": config.image.size, "resample": "bilinear", "num_frames": NUM_FRAMES}


def visual_settings(config: FeatureConfig) -> dict | None:
    """What the cached backbone maps depend on: the backbone and its weights' SHA-256, the maps
    kept and their type, the frame size and normalisation (None when the preset caches none)."""
    if config.visual is None:
        return None

    return {**dataclasses.asdict(config.visual), "weights_sha256": weights_sha256(), "batch_size": None,
            "image": dataclasses.asdict(config.image), "resample": "bilinear", "num_frames": NUM_FRAMES}


def mask_settings(mask_size: int = MASK_SIZE, mask_resize: str = "reference") -> dict:
    """What the mask cache depends on: the target size, the resize rule and the frame count."""
    return {"size": mask_size, "resize": mask_resize, "num_frames": NUM_FRAMES}


def settings_key(kind: str, settings: Mapping) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``kind``, format version and settings."""
    blob = json.dumps({"kind": kind, "format": CACHE_FORMAT_VERSION, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root(data_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where a dataset's features live: ``<data_dir>/.refavs_cache``, or with ``cache_dir``
    ``<cache_dir>/<dataset folder name>-<hash of its absolute path>``."""
    data_dir = Path(data_dir)
    if cache_dir is None:
        return data_dir / CACHE_DIRNAME
    absolute = str(data_dir.expanduser().resolve())
    return Path(cache_dir).expanduser() / f"{data_dir.resolve().name}-{hashlib.sha256(absolute.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class CachePaths:
    """The keyed folders of one feature configuration, by kind (:mod:`refavs.features.cache.kinds`).

    Attributes:
        folders: ``<root>/<kind>-<key>`` per kind; None for a kind the configuration does not
            cache (``visual`` for a preset without backbone maps).
        settings: what each key hashes, by kind.
    """

    folders: Mapping[str, Path | None]
    settings: dict = field(compare=False)

    def folder(self, kind: str) -> Path | None:
        """The folder of ``kind`` (KeyError naming the known kinds when there is none)."""
        try:
            return self.folders[kind]
        except KeyError:
            raise KeyError(f"no cache kind {kind!r}; known: {', '.join(self.folders)}") from None

    @property
    def audio(self) -> Path:
        return self.folders["audio"]

    @property
    def text(self) -> Path:
        return self.folders["text"]

    @property
    def frames(self) -> Path:
        return self.folders["frames"]

    @property
    def masks(self) -> Path:
        return self.folders["masks"]

    @property
    def visual(self) -> Path | None:
        return self.folders["visual"]
