"""Importing a checkpoint of the reference implementation (GeWu-Lab/Ref-AVS).

The reference saves ``REFAVS_Model_Base.state_dict()`` with ``torch.save``. Its names map onto
:class:`~refavs.models.eemc.EEMC` as follows (``i`` a pixel decoder layer, ``X`` the rest):

=====================================================================  =====================================
reference                                                              refavs
=====================================================================  =====================================
``audio_proj.{0,2}.*``                                                 ``fusion.audio_proj.{0,2}.*``
``text_proj.{0,2}.*``                                                  ``fusion.text_proj.{0,2}.*``
``prompt_proj.{0,2}.*``                                                ``fusion.prompt_proj.{0,2}.*``
``mha_A_T.*``                                                          ``fusion.audio_text.attn.*``
``mha_V_T.*``                                                          ``fusion.visual_text.attn.*``
``mha_mm.*``                                                           ``fusion.integration.attn.*``
``model_v.model.transformer_module.ref_avs_attn.query_embedding.*``    ``query_prompt.attn.in_proj_*`` rows [0, C)
``...ref_avs_attn.key_embedding.*``                                    ``query_prompt.attn.in_proj_*`` rows [C, 2C)
``...ref_avs_attn.value_embedding.*``                                  ``query_prompt.attn.in_proj_*`` rows [2C, 3C)
``...ref_avs_attn.out_projection.*``                                   ``query_prompt.attn.out_proj.*``
``...ref_avs_attn.beta_source_attn``                                   ``query_prompt.attn_gate``
``...ref_avs_attn.beta_source_pool``                                   ``query_prompt.pool_gate``
``model_v.model.pixel_level_module.decoder.encoder.layers.i.``         ``adapters.i.down.*`` / ``adapters.i.up.*``
``self_attn.avs_adapt.{0,2}.*``
``model_v.X``                                                          ``segmenter.X'``
=====================================================================  =====================================

``X'`` is ``X`` renamed by transformers' own checkpoint-conversion rules for the installed
version, the renaming ``from_pretrained`` applies to the hub checkpoint (the reference was
saved with transformers 4.x names: ``encoder.encoder.layers...attention.self.query`` became
``encoder.swin.encoder.layers...attention.q_proj`` in 5.x). Keys transformers itself ignores
when loading (Swin's ``relative_position_index`` buffers) are dropped; parameters it allows to
be missing (``swin.layernorm``, unused by the backbone) keep their initial values.

The imported model uses the configuration with every reference switch on
(:func:`refavs.models.eemc_config.with_reference_switches`): the reference's visual-token ``view``,
integration attention across clips, no text padding mask, cached memory along the token
sequence, adapters that replace the attention output, fusion blocks frozen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from refavs.models.checkpoint import CheckpointError, load_state_dict_strict
from refavs.models.eemc import EEMC
from refavs.models.eemc_config import EEMCConfig, with_reference_switches
from refavs.models.overrides import apply_overrides
from refavs.models.registry import get_model_config

PREFIXES: tuple[tuple[str, str], ...] = (
    ("audio_proj.", "fusion.audio_proj."),
    ("text_proj.", "fusion.text_proj."),
    ("prompt_proj.", "fusion.prompt_proj."),
    ("mha_A_T.", "fusion.audio_text.attn."),
    ("mha_V_T.", "fusion.visual_text.attn."),
    ("mha_mm.", "fusion.integration.attn."),
)
"""One-to-one prefix renames (reference -> refavs)."""

QUERY_ATTN = "model_v.model.transformer_module.ref_avs_attn."
QUERY_ATTN_RENAMES = {
    "out_projection.weight": "query_prompt.attn.out_proj.weight",
    "out_projection.bias": "query_prompt.attn.out_proj.bias",
    "beta_source_attn": "query_prompt.attn_gate",
    "beta_source_pool": "query_prompt.pool_gate",
}
QUERY_ATTN_QKV = ("query_embedding", "key_embedding", "value_embedding")
"""Concatenated in this order into ``nn.MultiheadAttention.in_proj_{weight,bias}``."""

ADAPTER = re.compile(r"^model_v\.model\.pixel_level_module\.decoder\.encoder\.layers\.(\d+)\.self_attn\."
                     r"avs_adapt\.(0|2)\.(weight|bias)$")
ADAPTER_LAYERS = {"0": "down", "2": "up"}
SEGMENTER = ("model_v.", "segmenter.")


def reference_config(base: str | EEMCConfig = "paper", overrides: Iterable[str] = ()) -> EEMCConfig:
    """``base`` (a named config or a config) with the reference switches, then ``overrides``."""
    config = get_model_config(base) if isinstance(base, str) else base
    name = f"{config.name}-reference" if not config.name.endswith("-reference") else config.name
    return apply_overrides(with_reference_switches(config, name=name), overrides)


def _transformers_renamer(segmenter) -> Callable[[str], str]:
    """Renames a transformers-4.x Mask2Former key to the installed version's name."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping  # heavy; transformers 5 on
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key  # the same
    except ImportError:  # transformers 4.x: its names are the reference's
        return lambda key: key
    transforms = get_model_conversion_mapping(segmenter)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    return lambda key: rename_source_key(key, renamings, converters)[0]


def _load_patterns(segmenter, attribute: str) -> list[tuple[str, str]]:
    """``(module prefix, regex)`` of transformers' ``_keys_to_ignore_on_load_*`` in the segmenter."""
    from transformers import PreTrainedModel  # pulls in transformers

    out = []
    for prefix, module in segmenter.named_modules():
        if isinstance(module, PreTrainedModel):
            out.extend((prefix, pattern) for pattern in (getattr(module, attribute, None) or ()))
    return out


def _matches(key: str, patterns: list[tuple[str, str]]) -> bool:
    for prefix, pattern in patterns:
        inside = key[len(prefix) + 1:] if prefix else key
        if (not prefix or key.startswith(prefix + ".")) and re.search(pattern, inside):
            return True
    return False


def convert_reference_state_dict(reference: Mapping[str, Tensor], model) -> dict[str, Tensor]:
    """The reference's state dict renamed (and the query attention fused) for ``model``.

    Raises :class:`CheckpointError` listing reference keys that map to nothing and model keys
    that nothing maps to.
    """
    rename_segmenter = _transformers_renamer(model.segmenter)
    ignore_unexpected = _load_patterns(model.segmenter, "_keys_to_ignore_on_load_unexpected")
    allow_missing = _load_patterns(model.segmenter, "_keys_to_ignore_on_load_missing")
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {"weight": {}, "bias": {}}
    unmapped = []
    for key, tensor in reference.items():
        adapter = ADAPTER.match(key)
        if adapter:
            layer, index, kind = adapter.groups()
            out[f"adapters.{layer}.{ADAPTER_LAYERS[index]}.{kind}"] = tensor
        elif key.startswith(QUERY_ATTN):
            rest = key[len(QUERY_ATTN):]
            part, _, kind = rest.partition(".")
            if rest in QUERY_ATTN_RENAMES:
                out[QUERY_ATTN_RENAMES[rest]] = tensor
            elif part in QUERY_ATTN_QKV and kind in qkv:
                qkv[kind][part] = tensor
            else:
                unmapped.append(key)
        elif key.startswith(SEGMENTER[0]):
            inner = rename_segmenter(key[len(SEGMENTER[0]):])
            if not _matches(inner, ignore_unexpected):
                out[SEGMENTER[1] + inner] = tensor
        else:
            for old, new in PREFIXES:
                if key.startswith(old):
                    out[new + key[len(old):]] = tensor
                    break
            else:
                unmapped.append(key)
    for kind, parts in qkv.items():
        if parts:
            if set(parts) != set(QUERY_ATTN_QKV):
                raise CheckpointError(f"reference query attention lacks {sorted(set(QUERY_ATTN_QKV) - set(parts))} "
                                      f"({kind})")
            out[f"query_prompt.attn.in_proj_{kind}"] = torch.cat([parts[p] for p in QUERY_ATTN_QKV])
    expected = model.state_dict()
    for key in set(expected) - set(out):
        if key.startswith(SEGMENTER[1]) and _matches(key[len(SEGMENTER[1]):], allow_missing):
            out[key] = expected[key]
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} reference keys map to nothing: " + ", ".join(sorted(unmapped)))
    return out


def load_reference_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A reference checkpoint (``torch.save`` of a state dict) read on the CPU without pickled code."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def import_reference(checkpoint: str | Path | Mapping[str, Tensor], out_dir: str | Path | None = None,
                     base: str | EEMCConfig = "paper", overrides: Iterable[str] = ()):
    """An :class:`~refavs.models.eemc.EEMC` with a reference checkpoint's weights and the reference
    switches; saved to ``out_dir`` (``save_pretrained``) when given. Downloads nothing."""
    state = checkpoint if isinstance(checkpoint, Mapping) else load_reference_state_dict(checkpoint)
    model = EEMC(reference_config(base, overrides), load_pretrained=False)
    source = "reference checkpoint" if isinstance(checkpoint, Mapping) else str(checkpoint)
    load_state_dict_strict(model, convert_reference_state_dict(state, model), source=source)
    if out_dir is not None:
        model.save_pretrained(out_dir)
    return model
