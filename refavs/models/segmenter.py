"""Building transformers' ``Mask2FormerForUniversalSegmentation`` from a :class:`SegmenterConfig`.

With ``checkpoint`` set, the model and its weights come from
``Mask2FormerForUniversalSegmentation.from_pretrained(checkpoint)`` (the hub or a local folder)
and its architecture is checked against the config; without, or when the caller will load
weights itself (``from_pretrained`` of a saved EEMC), it is built from the config's fields
with random weights, downloading nothing.
"""

from __future__ import annotations

from refavs.models.config import SegmenterConfig


def mask2former_config(cfg: SegmenterConfig):
    """A transformers ``Mask2FormerConfig`` (Swin backbone) with the config's sizes."""
    from transformers import Mask2FormerConfig, SwinConfig

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
    from transformers import Mask2FormerForUniversalSegmentation

    if cfg.checkpoint and load_pretrained:
        model = Mask2FormerForUniversalSegmentation.from_pretrained(cfg.checkpoint)
        differences = architecture_differences(cfg, model.config)
        if differences:
            raise ValueError(f"the Mask2Former checkpoint {cfg.checkpoint!r} does not match the config: "
                             + "; ".join(differences))
        return model
    return Mask2FormerForUniversalSegmentation(mask2former_config(cfg))
