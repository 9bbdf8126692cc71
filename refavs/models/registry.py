"""Every named model configuration of the family, and configs read back from saved dicts.

- :data:`MODEL_CONFIGS`: ``paper``, ``paper-reference``, ``tiny``, ``tiny-reference``
  (:mod:`refavs.models.eemc_config`), ``lite`` and ``lite-stereo`` (:mod:`refavs.models.lite_config`);
  :func:`get_model_config` builds one with ``key=value`` overrides.
- :data:`CONFIG_CLASSES`: the config class of each ``architecture``;
  :func:`model_config_from_dict` reads a ``to_dict`` dict (a checkpoint's ``config.json``, a
  run's ``run.json``) into the class its ``architecture`` names.

A saved config states its schema version (:data:`CONFIG_SCHEMA_VERSION`; a checkpoint's
``config.json`` carries it, see :mod:`refavs.models.checkpoint`). Dicts of an older schema, or
that do not state one, are upgraded step by step by :func:`upgrade_config_dict` before they are
read. Schema versions:

1. EEMC configs name no ``architecture`` (every config without one is EEMC's); the version is
   not written down.
2. Every config names its ``architecture``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from refavs.models import eemc_config, lite_config
from refavs.models.config_base import ModelConfig
from refavs.models.eemc_config import EEMC_CONFIGS, EEMCConfig
from refavs.models.lite_config import LITE_CONFIGS, LiteConfig
from refavs.models.overrides import apply_overrides

MODEL_CONFIGS: dict[str, Callable[[], ModelConfig]] = {**EEMC_CONFIGS, **LITE_CONFIGS}
"""Named configurations of every architecture; each entry builds a fresh config."""

CONFIG_CLASSES: dict[str, type] = {eemc_config.ARCHITECTURE: EEMCConfig, lite_config.ARCHITECTURE: LiteConfig}
"""The config class of each ``architecture``."""

UNVERSIONED_SCHEMA = 1
"""The schema of saved configs that state no version."""

CONFIG_SCHEMA_VERSION = 2
"""The schema of the configs this refavs writes (see the module docstring)."""


def get_model_config(name: str, overrides: Iterable[str] = ()) -> ModelConfig:
    """The named configuration with ``key=value`` overrides applied
    (see :func:`refavs.models.overrides.apply_overrides`)."""
    try:
        config = MODEL_CONFIGS[name]()
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose from {', '.join(MODEL_CONFIGS)}") from None
    return apply_overrides(config, overrides)


def _name_the_architecture(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: a config without an ``architecture`` is EEMC's."""
    return data if "architecture" in data else {**data, "architecture": eemc_config.ARCHITECTURE}


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _name_the_architecture}
"""``{version: step}``: each step turns a config dict of schema ``version`` into one of ``version + 1``."""


def upgrade_config_dict(data: Mapping[str, Any], schema_version: int | None = None) -> dict[str, Any]:
    """``data``, a config dict of schema ``schema_version`` (None: it does not say), as a dict of
    :data:`CONFIG_SCHEMA_VERSION`. Every step leaves a dict of a later schema unchanged, so a
    current dict that does not state its version (as ``run.json`` keeps it) reads the same."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a model config must be a mapping, got {type(data).__name__}")
    version = UNVERSIONED_SCHEMA if schema_version is None else schema_version
    if not isinstance(version, int) or not UNVERSIONED_SCHEMA <= version <= CONFIG_SCHEMA_VERSION:
        raise ValueError(f"model config schema version {schema_version!r} is not one this refavs reads "
                         f"({UNVERSIONED_SCHEMA} to {CONFIG_SCHEMA_VERSION}); was it saved by a newer refavs?")
    out = dict(data)
    for step in range(version, CONFIG_SCHEMA_VERSION):
        out = UPGRADES[step](out)
    return out


def model_config_from_dict(data: Mapping[str, Any], schema_version: int | None = None) -> ModelConfig:
    """The config a ``to_dict`` dict of schema ``schema_version`` describes (None: it does not say),
    of the class its ``architecture`` names; unknown keys are an error."""
    data = upgrade_config_dict(data, schema_version)
    kind = data.get("architecture")
    if kind not in CONFIG_CLASSES:
        raise ValueError(f"unknown model architecture {kind!r}; known: {', '.join(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[kind].from_dict(data)
