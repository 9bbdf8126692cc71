"""The feature cache: what is frozen (audio and text features, backbone maps, decoded media) is
extracted once per dataset and memory-mapped on read.

Layout (``<root>`` is ``<data_dir>/.refavs_cache`` by default; with ``cache_dir`` it is
``<cache_dir>/<dataset folder name>-<hash of its absolute path>``)::

    <root>/<kind>-<key>/manifest.json          settings and encoder identity behind <key>
    <root>/audio-<key>/<split>/features.npy    [clips, num_windows, dim] float32
    <root>/<kind>-<key>/<split>/index.json     the item of each row, in row order; each array
                                               file's size and checksum
    <root>/text-<key>/<split>/features.npy     [expressions, max_tokens, dim] float32|float16
    <root>/text-<key>/<split>/mask.npy         [expressions, max_tokens] bool (index.json: uid -> row too)
    <root>/visual-<key>/<split>/s8.npy, s16.npy  [clips, 10, C, g, g] backbone maps (``lite`` preset; 8-bit
                                               levels with per-channel s8_lo.npy, s8_step.npy ...)
    <root>/masks-<key>/, frames-<key>/         decoded targets and frames (``media=True``)
    <root>/<plug-in kind>-<key>/               a dataset's own kinds (Ref-AVS Synth: ``sounding``)

Modules: :mod:`~refavs.features.cache.keys` (settings, keys, folders),
:mod:`~refavs.features.cache.kinds` (the table of kinds, plug-ins included),
:mod:`~refavs.features.cache.chunks` (the resumable chunk writer),
:mod:`~refavs.features.cache.integrity` (each array file's size and checksum, the checks),
:mod:`~refavs.features.cache.extract` (:func:`extract_features`),
:mod:`~refavs.features.cache.store` (:class:`FeatureStore`, the reader). Audio is stored once
per media folder (all expressions of a clip share it); text once per distinct expression string.
"""

from refavs.features.cache.extract import CacheCheck, ExtractionReport, cache_paths, extract_features, verify_cache
from refavs.features.cache.integrity import CacheDamage
from refavs.features.cache.keys import CachePaths, FeatureCacheError, cache_root, settings_key
from refavs.features.cache.kinds import CacheKind, cache_kinds, register_cache_kind
from refavs.features.cache.store import FeatureStore, open_dataset

__all__ = ["CacheCheck", "CacheDamage", "CacheKind", "CachePaths", "ExtractionReport", "FeatureCacheError",
           "FeatureStore", "cache_kinds", "cache_paths", "cache_root", "extract_features", "open_dataset",
           "register_cache_kind", "settings_key", "verify_cache"]
