"""What every model config of the family answers, whatever its architecture.

Each architecture keeps its settings in its own module (``EEMCConfig`` in
:mod:`refavs.models.eemc_config`, ``LiteConfig`` in :mod:`refavs.models.lite_config`), the way
transformers keeps a ``configuration_*`` module per model; the code that trains, evaluates,
saves or serves a model reads a config only through :class:`ModelConfig`:

- ``name``: the named configuration it came from (:mod:`refavs.models.registry`);
- ``architecture``: which model builds it (``eemc``, ``lite``), as transformers' ``model_type``;
- ``feature_preset``: the :mod:`refavs.features.config` preset whose cached features it eats;
- the input sizes (``image_size``, ``num_frames``, ``audio_dim``, ``text_dim``, ``text_tokens``)
  and, in ``input_fields``, the dotted field each of them is set by;
- ``to_dict`` / ``from_dict`` / ``replace``.

:func:`feature_mismatches` checks a feature preset against any such config.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from refavs.models.overrides import config_from_dict

if TYPE_CHECKING:
    from refavs.features.config import FeatureConfig

INPUT_SIZES: tuple[str, ...] = ("image_size", "num_frames", "audio_dim", "text_dim", "text_tokens")
"""The input sizes every model config answers; ``input_fields`` maps each to the field that sets it."""


@runtime_checkable
class ModelConfig(Protocol):
    """The settings of a model of the family (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def feature_preset(self) -> str: ...

    @property
    def mask_size(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    @property
    def num_frames(self) -> int: ...

    @property
    def audio_dim(self) -> int: ...

    @property
    def text_dim(self) -> int: ...

    @property
    def text_tokens(self) -> int: ...

    @property
    def input_fields(self) -> Mapping[str, str]:
        """``{"image_size": "segmenter.image_size", ...}``: the dotted field behind each input size."""
        ...

    @property
    def reads_cached_maps(self) -> bool:
        """Whether the model reads backbone maps from the feature cache (its preset must cache them)."""
        ...

    def replace(self, **changes: Any) -> "ModelConfig": ...

    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig": ...


def _input_size(name: str) -> property:
    def get(self) -> int:
        value = self
        for part in self.input_fields[name].split("."):
            value = getattr(value, part)
        return value
    return property(get, doc=f"``{name}``, read from the field ``input_fields[{name!r}]`` names.")


class ConfigMethods:
    """``replace``, ``to_dict`` and ``from_dict`` for a frozen config dataclass, and the input sizes
    read through its ``input_fields`` (a mixin; it adds no field)."""

    image_size = _input_size("image_size")
    num_frames = _input_size("num_frames")
    audio_dim = _input_size("audio_dim")
    text_dim = _input_size("text_dim")
    text_tokens = _input_size("text_tokens")

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The config a :meth:`to_dict` dict describes; unknown keys are an error, missing keys take
        their defaults."""
        return config_from_dict(cls, data)


def feature_mismatches(config: ModelConfig, features: FeatureConfig) -> list[str]:
    """Where a :class:`refavs.features.config.FeatureConfig` does not fit the model (empty: fits).

    The text width is not part of a feature config (it is the text model's); the model checks
    it on the tensors it receives.
    """
    fields, out = config.input_fields, []
    if features.name != config.feature_preset:
        out.append(f"feature preset {features.name!r} but the model expects {config.feature_preset!r}")
    if features.audio.dim != config.audio_dim:
        out.append(f"audio features are {features.audio.dim}-d but {fields['audio_dim']}={config.audio_dim}")
    if features.audio.num_windows != config.num_frames:
        out.append(f"{features.audio.num_windows} audio windows but {fields['num_frames']}={config.num_frames}")
    if features.text.max_tokens != config.text_tokens:
        out.append(f"{features.text.max_tokens} text tokens but {fields['text_tokens']}={config.text_tokens}")
    if features.image.size != config.image_size:
        out.append(f"{features.image.size} px frames but {fields['image_size']}={config.image_size}")
    if config.reads_cached_maps and features.visual is None:
        out.append(f"feature preset {features.name!r} caches no backbone maps (the {config.architecture} model "
                   "reads them)")
    return out
