"""Building transformers' ``Mask2FormerForUniversalSegmentation`` from a :class:`SegmenterConfig`.

With ``checkpoint`` set, the model and its weights come from
``Mask2FormerForUniversalSegmentation.from_pretrained(checkpoint)`` (the hub or a local folder)
and its architecture is checked against the config; without, or when the caller will load
weights itself (``from_pretrained`` of a saved EEMC), it is built from the config's fields
with random weights, downloading nothing.
"""

from __future__ import annotations

from pathlib import Path

from refavs.models.eemc_config import SegmenterConfig


class SegmenterLoadError(ValueError):
    """The pretrained Mask2Former named by ``segmenter.checkpoint`` cannot be loaded or does not
    fit the config (the message says which and what to do)."""


def mask2former_config(cfg: SegmenterConfig):
    """A transformers ``Mask2FormerConfig`` (Swin backbone) with the config's sizes."""
    from transformers import Mask2FormerConfig, SwinConfig  # pulls in transformers

    stages = tuple(f"stage{i + 1}" for i in range(len(cfg.depths)))
    backbone = SwinConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depths=list(cfg.depths),
        num_heads=list(cfg.num_heads), window_size=cfg.window_size, drop_path_rate=cfg.drop_path_rate,
        out_features=list(stages))
    return Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=cfg.hidden_dim, feature_size=cfg.feature_size,
        mask_feature_size=cfg.mask_feature_size, num_queries=cfg.num_queries, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, encoder_feedforward_dim=cfg.encoder_feedforward_dim,
        dim_feedforward=cfg.dim_feedforward, num_attention_heads=cfg.num_attention_heads, num_labels=cfg.num_labels)


def architecture_differences(cfg: SegmenterConfig, hf_config) -> list[str]:
    """Fields where a transformers Mask2Former config disagrees with ``cfg`` (empty: they agree)."""
    backbone = hf_config.backbone_config
    pairs = {
        "patch_size": backbone.patch_size, "embed_dim": backbone.embed_dim, "depths": tuple(backbone.depths),
        "num_heads": tuple(backbone.num_heads), "window_size": backbone.window_size,
        "hidden_dim": hf_config.hidden_dim, "feature_size": hf_config.feature_size,
        "mask_feature_size": hf_config.mask_feature_size, "num_queries": hf_config.num_queries,
        "encoder_layers": hf_config.encoder_layers, "decoder_layers": hf_config.decoder_layers,
        "encoder_feedforward_dim": hf_config.encoder_feedforward_dim, "dim_feedforward": hf_config.dim_feedforward,
        "num_attention_heads": hf_config.num_attention_heads, "num_labels": hf_config.num_labels,
    }
    return [f"segmenter.{k}: checkpoint has {v!r}, config has {getattr(cfg, k)!r}"
            for k, v in pairs.items() if getattr(cfg, k) != v]


def build_segmenter(cfg: SegmenterConfig, load_pretrained: bool = True):
    """The Mask2Former: pretrained from ``cfg.checkpoint`` when set and ``load_pretrained``,
    otherwise randomly initialised from the config's fields."""
    from transformers import Mask2FormerForUniversalSegmentation  # pulls in transformers

    if cfg.checkpoint and load_pretrained:
        if cfg.checkpoint.startswith(("/", ".", "~")) and not Path(cfg.checkpoint).expanduser().is_dir():
            raise SegmenterLoadError(f"segmenter.checkpoint={cfg.checkpoint!r}: no such folder (a local "
                                     f"checkpoint is a folder a Mask2Former was saved to; segmenter.checkpoint=none "
                                     f"starts from random weights)")
        try:
            model = Mask2FormerForUniversalSegmentation.from_pretrained(cfg.checkpoint)
        except OSError as err:  # no network, not cached, or not a Mask2Former folder
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            local = Path(cfg.checkpoint).expanduser().exists()  # a path-like name that is absent failed above
            advice = ("a local checkpoint must be a folder a Mask2Former was saved to (config.json and "
                      "model.safetensors)" if local else
                      f"it comes from the Hugging Face hub: download it where there is a network "
                      f"(`hf download {cfg.checkpoint}`) and pass its folder as segmenter.checkpoint=PATH")
            raise SegmenterLoadError(
                f"cannot load the Mask2Former checkpoint segmenter.checkpoint={cfg.checkpoint!r} ({reason}); "
                f"{advice}, or start from random weights with segmenter.checkpoint=none") from err
        differences = architecture_differences(cfg, model.config)
        if differences:
            raise SegmenterLoadError(f"the Mask2Former checkpoint {cfg.checkpoint!r} does not match the config: "
                                     + "; ".join(differences))
        return model
    return Mask2FormerForUniversalSegmentation(mask2former_config(cfg))
