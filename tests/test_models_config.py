"""Model configs: derived sizes, named configs, the registry, overrides, trainable groups, feature
checks, saved dicts of older schemas."""

from __future__ import annotations

import json

import pytest

from refavs.features.config import get_feature_config
from refavs.models.config_base import ModelConfig, feature_mismatches
from refavs.models.eemc_config import GROUPS, PAPER_CHECKPOINT, EEMCConfig
from refavs.models.lite_config import LiteConfig
from refavs.models.overrides import apply_overrides, is_identity_field
from refavs.models.registry import (CONFIG_SCHEMA_VERSION, MODEL_CONFIGS, get_model_config, model_config_from_dict,
                                    upgrade_config_dict)


def test_paper_sizes_follow_the_reference_page():
    c = get_model_config("paper")
    assert c.segmenter.checkpoint == PAPER_CHECKPOINT == "facebook/mask2former-swin-base-ade-semantic"
    assert c.visual_dim == 1024  # Swin-B last stage
    assert c.segmenter.visual_grid == 12 and c.segmenter.visual_positions == 144  # 384 / 32
    assert c.prompt_tokens == 10 + 1 + 144 + 1 + 25 == 181
    assert c.prompt_dim == 256 and c.segmenter.num_queries == 100
    assert (c.fusion.audio_dim, c.fusion.text_dim, c.fusion.mlp_hidden, c.fusion.num_heads) == (128, 768, 2048, 8)
    assert c.prompt.num_heads == 4 and c.prompt.gate_init == 1.0
    assert c.segmenter.feature_size // c.adapter.reduction == 64 and c.adapter.mode == "residual"
    assert c.trainable.resolved() == ("projections", "fusion", "adapters", "query_attention")


def test_sizes_are_derived_from_the_config_not_fixed():
    c = get_model_config("tiny", ["segmenter.embed_dim=32", "segmenter.image_size=192", "fusion.text_tokens=7"])
    assert c.visual_dim == 256 and c.segmenter.visual_positions == 36
    assert c.prompt_tokens == 10 + 1 + 36 + 1 + 7
    assert get_model_config("tiny", ["fusion.modality_tags=false"]).prompt_tokens == 10 + 16 + 25


def test_reference_configs_turn_every_switch_on():
    c = get_model_config("paper-reference")
    assert c.compat.visual_layout == "reference_view" and c.compat.integration_across_clips
    assert not c.compat.text_padding_mask and c.compat.visual_cached_memory == "tokens"
    assert c.adapter.mode == "replace" and c.trainable.reference_freeze
    assert c.trainable.resolved() == ("projections", "adapters", "query_attention")
    default = get_model_config("paper").compat
    assert default.visual_layout == "frames" and not default.integration_across_clips
    assert default.text_padding_mask and default.visual_tokens_from == "shared_pass"


def test_tiny_trains_the_segmenter_too():
    assert get_model_config("tiny").trainable.resolved() == GROUPS
    assert get_model_config("tiny", ["trainable.train_segmenter=false"]).trainable.resolved() == (
        "projections", "fusion", "adapters", "query_attention")


def test_overrides_parse_by_field_type():
    c = get_model_config("tiny", ["segmenter.depths=2,2,2,2", "compat.text_padding_mask=off",
                                  "fusion.cache_beta=0.5", "segmenter.checkpoint=none", "fusion.tag_values=(0, 2)",
                                  "trainable.groups=projections,adapters"])
    assert c.segmenter.depths == (2, 2, 2, 2) and c.compat.text_padding_mask is False
    assert c.fusion.cache_beta == 0.5 and c.segmenter.checkpoint is None and c.fusion.tag_values == (0.0, 2.0)
    assert c.trainable.groups == ("projections", "adapters")
    assert get_model_config("tiny", ["segmenter.checkpoint=/some/folder"]).segmenter.checkpoint == "/some/folder"


@pytest.mark.parametrize("override, message", [
    ("fusion.nope=1", "unknown config field 'fusion.nope'"),
    ("fusion.num_heads=four", "takes int"),
    ("compat.visual_layout=sideways", "must be one of frames, reference_view"),
    ("fusion=3", "is a section"),
    ("fusion.num_heads", "not key=value"),
    ("fusion.num_heads=7", "does not divide the visual width 128"),
    ("trainable.groups=projections,everything", "unknown groups ['everything']"),
    ("segmenter.image_size=100", "not a multiple of the backbone stride 32"),
    ("loss.dice_weight=-1", "loss weights must be >= 0: loss.dice_weight=-1.0"),
])
def test_bad_overrides_are_explained(override, message):
    with pytest.raises(ValueError) as err:
        get_model_config("tiny", [override])
    assert message in str(err.value)


def test_dict_round_trip_through_json():
    c = get_model_config("tiny-reference", ["segmenter.depths=2,1,1,1"])
    again = EEMCConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    with pytest.raises(ValueError, match="unknown config fields fusion.extra"):
        EEMCConfig.from_dict({**c.to_dict(), "fusion": {**c.to_dict()["fusion"], "extra": 1}})


def test_identity_fields():
    def identity(path):
        return is_identity_field(path, EEMCConfig)

    assert identity("segmenter.embed_dim") and identity("compat.text_padding_mask")
    assert not identity("trainable.groups") and not identity("compat.visual_tokens_from")
    assert not identity("segmenter.checkpoint") and not identity("adapter.zero_init")
    assert is_identity_field("head.dim", LiteConfig) and not is_identity_field("loss.dice_weight", LiteConfig)


def test_each_model_config_names_a_feature_preset_that_fits():
    for name in ("paper", "tiny"):
        config = get_model_config(name)
        assert feature_mismatches(config, get_feature_config(config.feature_preset)) == []
    problems = feature_mismatches(get_model_config("tiny"), get_feature_config("paper"))
    assert any("feature preset 'paper'" in p for p in problems)
    assert any("384 px frames but segmenter.image_size=128" in p for p in problems)


def test_unknown_config_name():
    with pytest.raises(ValueError, match="choose from paper, paper-reference, tiny, tiny-reference"):
        get_model_config("huge")
    assert apply_overrides(get_model_config("tiny"), []) == get_model_config("tiny")


def test_the_registry_lists_every_architecture():
    assert list(MODEL_CONFIGS) == ["paper", "paper-reference", "tiny", "tiny-reference", "lite", "lite-stereo"]
    for name in MODEL_CONFIGS:
        config = get_model_config(name)
        assert isinstance(config, ModelConfig) and config.name == name
        assert config.architecture == ("lite" if name.startswith("lite") else "eemc")
        assert model_config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert type(get_model_config("lite")) is LiteConfig and type(get_model_config("tiny")) is EEMCConfig
    with pytest.raises(ValueError, match="choose from paper, paper-reference, tiny, tiny-reference, lite"):
        get_model_config("huge")


def test_the_lite_config_names_its_own_fields_in_feature_checks():
    assert feature_mismatches(get_model_config("lite"), get_feature_config("lite")) == []
    problems = feature_mismatches(get_model_config("lite"), get_feature_config("tiny"))
    assert any("128 px frames but backbone.image_size=160" in p for p in problems)
    assert any("caches no backbone maps (the lite model reads them)" in p for p in problems)


def test_an_eemc_dict_without_architecture_is_upgraded():
    """EEMC configs saved before every config named its architecture (schema 1) still read."""
    config = get_model_config("tiny-reference")
    old = {k: v for k, v in config.to_dict().items() if k != "architecture"}
    assert model_config_from_dict(old) == config
    assert model_config_from_dict(old, schema_version=1) == config
    assert upgrade_config_dict(old, 1)["architecture"] == "eemc"
    current = get_model_config("lite").to_dict()
    assert upgrade_config_dict(current) == current == upgrade_config_dict(current, CONFIG_SCHEMA_VERSION)


def test_unreadable_config_dicts_are_explained():
    config = get_model_config("tiny").to_dict()
    with pytest.raises(ValueError, match="schema version 99 is not one this refavs reads"):
        model_config_from_dict(config, schema_version=99)
    with pytest.raises(ValueError, match="unknown model architecture 'huge'; known: eemc, lite"):
        model_config_from_dict({**config, "architecture": "huge"})
    with pytest.raises(ValueError, match="architecture must be 'eemc'"):
        EEMCConfig.from_dict({**config, "architecture": "lite"})
