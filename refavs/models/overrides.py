"""Dotted ``key=value`` overrides, flattening and dict parsing for any frozen config dataclass.

Nothing here knows a particular model: the model configs (:mod:`refavs.models.eemc_config`,
:mod:`refavs.models.lite_config`) and the training recipes (:mod:`refavs.training.config`) all
use it. A field's type decides how its text is parsed; a field marked
``metadata={"identity": False}`` is one that does not change what a trained model computes
(:func:`is_identity_field`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Literal, Mapping, TypeVar

C = TypeVar("C")

NONE_WORDS: tuple[str, ...] = ("none", "null")
"""Texts that set an optional field to None."""

TRUE_WORDS: tuple[str, ...] = ("1", "true", "yes", "on")
FALSE_WORDS: tuple[str, ...] = ("0", "false", "no", "off")


def is_identity_field(path: str, config_class: Any) -> bool:
    """Whether the dotted field ``path`` of ``config_class`` is part of what a trained model is.

    Fields marked ``metadata={"identity": False}`` (or inside a section so marked) only choose
    the initial weights, which parameters train or how, not what, the model computes; a
    checkpoint may be loaded with other values of them. Unknown paths count as identity fields.
    """
    cls: Any = config_class
    for part in path.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return True
        if fields[part].metadata.get("identity") is False:
            return False
        cls = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(cls):
            return True
    return True


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"segmenter.embed_dim": 128, ...}``: every leaf field under its dotted path."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def apply_overrides(config: C, overrides: Iterable[str]) -> C:
    """``config`` with ``section.field=value`` overrides applied, e.g. ``fusion.num_heads=4``,
    ``compat.text_padding_mask=false``, ``segmenter.depths=1,1,1,1``, ``segmenter.checkpoint=none``.

    Values are parsed by the field's type (int, float, bool, str, None, tuples as
    comma-separated lists, literals checked against their choices).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        config = _set(config, key.strip().split("."), text.strip(), key.strip())
    return config


def _set(obj: Any, parts: list[str], text: str, key: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    name = parts[0]
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(obj))
        raise ValueError(f"unknown config field {key!r} ({name!r} is not one of: {known})")
    if len(parts) == 1:
        if dataclasses.is_dataclass(hints[name]):
            raise ValueError(f"{key!r} is a section; set one of its fields, e.g. {key}.<field>=value")
        return dataclasses.replace(obj, **{name: _parse(hints[name], text, key)})
    child = getattr(obj, name)
    if not dataclasses.is_dataclass(child):
        raise ValueError(f"unknown config field {key!r} ({name!r} has no fields)")
    return dataclasses.replace(obj, **{name: _set(child, parts[1:], text, key)})


def _parse(tp: Any, text: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in NONE_WORDS and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse(arg, text, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{key} must be one of {', '.join(map(str, args))}, got {text!r}")
        return text
    if origin is tuple:
        items = [t.strip() for t in text.strip("()[] ").split(",") if t.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], t, key) for t in items)
        if len(items) != len(args):
            raise ValueError(f"{key} takes {len(args)} comma-separated values, got {text!r}")
        return tuple(_parse(a, t, key) for a, t in zip(args, items, strict=True))
    if tp is bool:
        lowered = text.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise ValueError(f"{key} takes true/false, got {text!r}")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise ValueError(f"{key} takes {tp.__name__}, got {text!r}") from None
    if tp is str:
        return text
    raise ValueError(f"{key}: cannot parse a value of type {tp}")


def config_from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """The (nested) config dataclass ``cls`` a ``to_dict``/JSON dict describes; unknown keys are an
    error, missing keys take their defaults and lists become tuples."""
    if not isinstance(data, Mapping):
        raise ValueError(f"config section {prefix or cls.__name__!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"unknown config fields {', '.join(prefix + u for u in unknown)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = config_from_dict(tp, value, f"{prefix}{name}.")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
