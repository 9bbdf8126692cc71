"""One entry point for every model of the family: build from a config, load from a checkpoint.

``EEMC`` (Mask2Former, configs ``paper`` and ``tiny``) and ``LiteEEMC`` (config ``lite``) take the
same batches and return the same outputs; code that trains, evaluates or serves a model calls
:func:`build_model` / :func:`load_pretrained` and never names the class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from refavs.models import eemc_config, lite_config
from refavs.models.checkpoint import load_config, load_into
from refavs.models.config_base import ModelConfig
from refavs.models.eemc import EEMC
from refavs.models.lite import LiteEEMC


def model_class(config: ModelConfig) -> type[nn.Module]:
    """The class that builds ``config``, by its ``architecture``."""
    # each model module pulls in its own dependencies (transformers for EEMC): imported on demand
    if config.architecture == lite_config.ARCHITECTURE:
        return LiteEEMC
    if config.architecture == eemc_config.ARCHITECTURE:
        return EEMC
    raise ValueError(f"no model class for architecture {config.architecture!r}")


def build_model(config: ModelConfig, load_pretrained: bool = True) -> nn.Module:
    """A fresh model of ``config`` (pretrained parts fetched unless ``load_pretrained`` is False)."""
    return model_class(config)(config, load_pretrained=load_pretrained)


def load_pretrained(directory: str | Path, config: ModelConfig | None = None, device: str | torch.device = "cpu"):
    """The model saved in ``directory`` (see :func:`refavs.models.checkpoint.load_into`), of
    whichever class its ``config.json`` names."""
    return load_into(model_class(load_config(directory)), directory, config=config, device=device)
