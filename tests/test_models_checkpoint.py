"""save_pretrained / from_pretrained, config refusal, strict keys, damaged weights files (one
error naming the file, and a run's older intact checkpoint), and the reference importer (on a
state dict written with the reference implementation's names for a tiny configuration)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_models import FAST, build, logits, make_batch

from refavs.cli import main as refavs_main
from refavs.inference import InferenceError, RefAVSPipeline
from refavs.models.checkpoint import (CONFIG_FILE, FORMAT, FORMAT_VERSION, HEADER_LENGTH_BYTES, SCHEMA_KEY,
                                      WEIGHTS_FILE, CheckpointError, check_weights_file, load_config,
                                      older_intact_checkpoint)
from refavs.models.eemc import EEMC
from refavs.models.reference_import import import_reference
from refavs.models.registry import CONFIG_SCHEMA_VERSION, get_model_config

"""A lite checkpoint saved before config.json stated a schema version."""


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = build()
    batch = make_batch(model.config)
    path = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = EEMC.from_pretrained(path)
    assert loaded.config == model.config
    assert torch.equal(logits(loaded, batch), logits(model, batch))
    assert all(t.device.type == "cpu" for t in load_file(path / WEIGHTS_FILE).values())


def test_overwriting_a_checkpoint_is_atomic_and_leaves_no_temporary_files(tmp_path):
    first, second = build(seed=0), build(seed=1)
    first.save_pretrained(tmp_path / "ckpt")
    second.save_pretrained(tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    key = "fusion.audio_proj.0.weight"
    assert torch.equal(load_file(tmp_path / "ckpt" / WEIGHTS_FILE)[key], second.state_dict()[key])


def test_checkpoint_of_another_config_is_refused_with_the_differences(tmp_path):
    build().save_pretrained(tmp_path / "ckpt")
    wanted = get_model_config("tiny", [*FAST, "segmenter.num_queries=4", "compat.text_padding_mask=false"])
    with pytest.raises(CheckpointError) as err:
        EEMC.from_pretrained(tmp_path / "ckpt", config=wanted)
    message = str(err.value)
    assert "segmenter.num_queries: checkpoint=8, requested=4" in message
    assert "compat.text_padding_mask: checkpoint=True, requested=False" in message
    assert "fusion" not in message.replace("compat.", "")  # only the differing settings are listed
    # fields that do not change what the model computes may differ
    runtime = get_model_config("tiny", [*FAST, "compat.visual_tokens_from=separate_pass",
                                        "trainable.train_segmenter=false"])
    loaded = EEMC.from_pretrained(tmp_path / "ckpt", config=runtime)
    assert loaded.config.compat.visual_tokens_from == "separate_pass"
    assert not any(p.requires_grad for p in loaded.segmenter.parameters())


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    path = build().save_pretrained(tmp_path / "ckpt")
    state = load_file(path / WEIGHTS_FILE)
    del state["query_prompt.attn_gate"]
    state["fusion.extra.weight"] = torch.zeros(1)
    state["fusion.audio_proj.0.bias"] = torch.zeros(3)
    save_file(state, path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError) as err:
        EEMC.from_pretrained(path)
    message = str(err.value)
    assert "1 missing keys: query_prompt.attn_gate" in message
    assert "1 unexpected keys: fusion.extra.weight" in message
    assert "fusion.audio_proj.0.bias" in message and "(3,)" in message


def test_not_a_checkpoint_or_another_format_version(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        EEMC.from_pretrained(tmp_path)
    path = build().save_pretrained(tmp_path / "ckpt")
    data = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_config(path)


def test_a_saved_config_states_its_schema_and_the_weights_file_is_unchanged(tmp_path):
    model = build()
    path = model.save_pretrained(tmp_path / "ckpt")
    data = json.loads((path / CONFIG_FILE).read_text())
    assert data[SCHEMA_KEY] == CONFIG_SCHEMA_VERSION and data["config"]["architecture"] == "eemc"
    assert (data["format"], data["format_version"]) == (FORMAT, FORMAT_VERSION)
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as f:  # same metadata and keys as ever
        assert f.metadata() == {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
        assert sorted(f.keys()) == sorted(model.state_dict())


def test_the_same_weights_give_the_same_file_bytes():
    """safetensors writes its metadata map in a per-process order; the saved header is sorted."""
    import subprocess
    import sys

    code = ("import sys, torch; from safetensors.torch import save; from refavs.models.checkpoint import "
            "sorted_metadata; meta = {'format': 'refavs-eemc', 'format_version': '1', 'z': 'a', 'b': 'c'}; "
            "blob = sorted_metadata(save({'w': torch.arange(6.0)}, metadata=meta), meta); "
            "sys.stdout.write(blob[:120].hex())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(4)}
    assert len(runs) == 1
    header = bytes.fromhex(runs.pop())
    assert b'{"__metadata__":{"b":"c","format":"refavs-eemc","format_version":"1","z":"a"}' in header


def test_an_old_eemc_config_without_schema_or_architecture_loads(tmp_path):
    model = build()
    batch = make_batch(model.config)
    path = model.save_pretrained(tmp_path / "ckpt")
    data = json.loads((path / CONFIG_FILE).read_text())
    del data[SCHEMA_KEY], data["config"]["architecture"]
    (path / CONFIG_FILE).write_text(json.dumps(data))
    assert load_config(path) == model.config
    assert torch.equal(logits(EEMC.from_pretrained(path), batch), logits(model, batch))
    (path / CONFIG_FILE).write_text(json.dumps({**data, SCHEMA_KEY: CONFIG_SCHEMA_VERSION + 1}))
    with pytest.raises(CheckpointError, match="saved by a newer refavs"):
        load_config(path)


OLD_LITE_CONFIG = Path(__file__).resolve().parent / "fixtures" / "lite-config-before-schema.json"
"""The config.json of a lite checkpoint saved before configs carried their schema version (the
checkpoint shipped until 2026-12-04)."""


def test_a_lite_config_saved_without_schema_loads(tmp_path):
    data = json.loads(OLD_LITE_CONFIG.read_text())
    assert SCHEMA_KEY not in data
    (tmp_path / CONFIG_FILE).write_text(OLD_LITE_CONFIG.read_text())
    config = load_config(tmp_path)
    assert config.architecture == "lite"

    def same(stored: dict, now: dict, where: str = "") -> None:   # every stored field as it was saved
        for key, value in stored.items():
            if isinstance(value, dict):
                same(value, now[key], f"{where}{key}.")
            else:
                assert now[key] == value, f"{where}{key}"

    now = config.to_dict()
    same(data["config"], now)
    assert now["head"]["presence_hears"] is False     # fields added since: off, as the model was trained
    assert now["head"]["sound_compare"] is False


# ------------------------------------------------------------------ reference checkpoints

SWIN_4X = [  # transformers 5.x name -> the 4.x name the reference saved (inside the Swin backbone)
    (r"\.encoder\.swin\.embeddings\.", ".encoder.embeddings."),
    (r"\.encoder\.swin\.encoder\.", ".encoder.encoder."),
    (r"\.attention\.q_proj\.", ".attention.self.query."),
    (r"\.attention\.k_proj\.", ".attention.self.key."),
    (r"\.attention\.v_proj\.", ".attention.self.value."),
    (r"\.attention\.relative_position_bias\.relative_position_bias_table$",
     ".attention.self.relative_position_bias_table"),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]


def reference_state_dict(model: EEMC) -> dict[str, torch.Tensor]:
    """``model``'s weights under the names ``REFAVS_Model_Base.state_dict()`` uses (transformers 4.x)."""
    sd, out = model.state_dict(), {}
    for key, tensor in sd.items():
        if key.startswith("segmenter."):
            inner = key[len("segmenter."):]
            if ".swin.layernorm." in inner:  # 4.x SwinBackbone had no final layer norm
                continue
            if inner.startswith("model.pixel_level_module.encoder."):
                for pattern, old in SWIN_4X:
                    inner = re.sub(pattern, old, inner)
            out["model_v." + inner] = tensor.clone()
    window = model.config.segmenter.window_size
    for key in list(out):  # 4.x kept the (persistent) relative position index buffers
        if key.endswith("attention.self.relative_position_bias_table"):
            out[key.replace("_bias_table", "_index")] = torch.zeros(window ** 2, window ** 2, dtype=torch.long)
    for ours, ref in (("fusion.audio_proj.", "audio_proj."), ("fusion.text_proj.", "text_proj."),
                      ("fusion.prompt_proj.", "prompt_proj."), ("fusion.audio_text.attn.", "mha_A_T."),
                      ("fusion.visual_text.attn.", "mha_V_T."), ("fusion.integration.attn.", "mha_mm.")):
        for key, tensor in sd.items():
            if key.startswith(ours):
                out[ref + key[len(ours):]] = tensor.clone()
    for i in range(model.config.segmenter.encoder_layers):
        for ours, ref in (("down", "0"), ("up", "2")):
            for kind in ("weight", "bias"):
                out[f"model_v.model.pixel_level_module.decoder.encoder.layers.{i}.self_attn.avs_adapt.{ref}.{kind}"] = \
                    sd[f"adapters.{i}.{ours}.{kind}"].clone()
    attn = "model_v.model.transformer_module.ref_avs_attn."
    for kind in ("weight", "bias"):
        q, k, v = sd[f"query_prompt.attn.in_proj_{kind}"].chunk(3)
        out[f"{attn}query_embedding.{kind}"], out[f"{attn}key_embedding.{kind}"] = q.clone(), k.clone()
        out[f"{attn}value_embedding.{kind}"] = v.clone()
        out[f"{attn}out_projection.{kind}"] = sd[f"query_prompt.attn.out_proj.{kind}"].clone()
    out[f"{attn}beta_source_attn"] = sd["query_prompt.attn_gate"].clone()
    out[f"{attn}beta_source_pool"] = sd["query_prompt.pool_gate"].clone()
    return out


@pytest.fixture()
def reference_checkpoint(tmp_path):
    source = build("tiny-reference")
    with torch.no_grad():  # distinct values everywhere, so a wrong mapping cannot go unnoticed
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "ckpt_best_miou.pth"
    torch.save(reference_state_dict(source), path)
    return source, path


def test_importer_maps_every_reference_name(reference_checkpoint, tmp_path):
    source, path = reference_checkpoint
    state = torch.load(path, weights_only=True)
    assert "model_v.model.pixel_level_module.encoder.encoder.layers.0.blocks.0.attention.self.query.weight" in state
    model = import_reference(path, tmp_path / "out", base="tiny", overrides=FAST)
    c = model.config
    assert c.name == "tiny-reference" and c.compat.visual_layout == "reference_view"
    assert c.compat.integration_across_clips and not c.compat.text_padding_mask and c.adapter.mode == "replace"
    assert c.compat.visual_cached_memory == "tokens" and c.trainable.reference_freeze
    for key, tensor in source.state_dict().items():
        if ".swin.layernorm." not in key:
            assert torch.equal(model.state_dict()[key], tensor), key
    size = c.prompt_dim
    assert torch.equal(model.query_prompt.attn.in_proj_weight[size:2 * size],
                       state["model_v.model.transformer_module.ref_avs_attn.key_embedding.weight"])
    batch = make_batch(c)
    assert torch.equal(logits(model, batch), logits(source, batch))
    assert torch.equal(logits(EEMC.from_pretrained(tmp_path / "out"), batch), logits(source, batch))


def test_importer_refuses_unknown_and_missing_names(reference_checkpoint):
    _, path = reference_checkpoint
    state = torch.load(path, weights_only=True)
    extra = {**state, "mha_extra.in_proj_weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="1 reference keys map to nothing: mha_extra.in_proj_weight"):
        import_reference(extra, base="tiny", overrides=FAST)
    missing = {k: v for k, v in state.items() if k != "audio_proj.0.weight"}
    with pytest.raises(CheckpointError, match="1 missing keys: fusion.audio_proj.0.weight"):
        import_reference(missing, base="tiny", overrides=FAST)


def test_checkpoint_of_another_architecture_names_the_settings_and_stays_short(reference_checkpoint):
    """A checkpoint of other sizes: the error leads with the settings to change, and lists a
    bounded number of keys of each kind rather than every one of hundreds."""
    _, path = reference_checkpoint
    overrides = ["segmenter.num_queries=4", "segmenter.hidden_dim=16", "segmenter.encoder_layers=3",
                 "segmenter.depths=[1,1,2,1]"]
    with pytest.raises(CheckpointError) as err:
        import_reference(path, base="tiny", overrides=[*FAST, *overrides])
    message = str(err.value)
    assert message.startswith(f"{path} does not fit the model; its weights are of another architecture: ")
    for setting in ("segmenter.num_queries=8 (model: 4)", "segmenter.hidden_dim=32 (model: 16)",
                    "segmenter.encoder_layers=2 (model: 3)", "segmenter.depths=(1, 1, 1, 1) (model: (1, 1, 2, 1))"):
        assert setting in message
    assert "segmenter.embed_dim" not in message  # equal settings are not named
    count = int(re.search(r"; (\d+) shape mismatches: ", message).group(1))
    assert count > 20 and f"({count - 6} more)" in message
    assert message.count("model (") == 6 and len(message) < 2000


def test_import_reference_command(reference_checkpoint, tmp_path, capsys):
    source, path = reference_checkpoint
    out = tmp_path / "converted"
    argv = ["import-reference", str(path), "--out", str(out), "--config", "tiny", "--set", "fusion.num_frames=2"]
    assert refavs_main(argv) == 0
    assert "tiny-reference" in capsys.readouterr().out
    assert torch.equal(logits(EEMC.from_pretrained(out), make_batch(source.config)),
                       logits(source, make_batch(source.config)))
    assert refavs_main(["import-reference", str(tmp_path / "none.pth"), "--out", str(out)]) == 2
    assert refavs_main(["import-reference", str(path), "--out", str(out), "--config", "tiny",
                        "--set", "segmenter.num_queries=4"]) == 1
    assert "shape mismatches" in capsys.readouterr().err


def test_model_info_command(capsys):
    assert refavs_main(["model-info", "tiny", "--set", "trainable.reference_freeze=true"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["adapters"] == 1104
    assert "fusion" not in info["trainable_groups"]


def _damage_header(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) in the header of the weights file at ``path``."""
    assert len(old) == len(new)
    blob = path.read_bytes()
    length = int.from_bytes(blob[:HEADER_LENGTH_BYTES], "little")
    header = blob[HEADER_LENGTH_BYTES:HEADER_LENGTH_BYTES + length]
    assert old in header
    path.write_bytes(blob[:HEADER_LENGTH_BYTES] + header.replace(old, new, 1) + blob[HEADER_LENGTH_BYTES + length:])


def test_a_truncated_weights_file_is_one_error_naming_the_file(tmp_path):
    path = build().save_pretrained(tmp_path / "ckpt")
    weights = path / WEIGHTS_FILE
    size = weights.stat().st_size
    blob = weights.read_bytes()
    weights.write_bytes(blob[:size // 2])
    with pytest.raises(CheckpointError) as err:
        EEMC.from_pretrained(path)
    message = str(err.value)
    assert message.startswith(f"{weights}: truncated: {size // 2} bytes, its header promises {size}")
    assert "\n" not in message and "older intact" not in message
    weights.write_bytes(blob[:HEADER_LENGTH_BYTES + 3])  # cut inside the header
    with pytest.raises(CheckpointError, match=r"truncated: 11 bytes, smaller than its \d+-byte header"):
        EEMC.from_pretrained(path)
    weights.write_bytes(blob[:3])
    with pytest.raises(CheckpointError, match="truncated: 3 bytes, not even the 8-byte header length"):
        EEMC.from_pretrained(path)


def test_an_altered_header_is_one_error_naming_the_file(tmp_path):
    path = build().save_pretrained(tmp_path / "ckpt")
    weights = path / WEIGHTS_FILE
    intact = weights.read_bytes()
    assert check_weights_file(weights).keys() == build().state_dict().keys()
    cases = [(b'{"__metadata__"', b'{"__metadata__\x00', "its header is not valid JSON"),
             (b'"dtype":"F32"', b'"dtype":"F99"', "is not a valid tensor description"),
             (b'"shape":[8,', b'"shape":[9,', "its dtype and shape need"),
             (b'"query_prompt.attn_gate"', b'"query_prompt.attn_gatf"', "1 missing keys: query_prompt.attn_gate")]
    for old, new, problem in cases:
        weights.write_bytes(intact)
        _damage_header(weights, old, new)
        with pytest.raises(CheckpointError) as err:
            EEMC.from_pretrained(path)
        assert str(err.value).startswith(str(weights)) and problem in str(err.value), (new, str(err.value))
    weights.write_bytes(intact)
    weights.write_bytes(intact[:HEADER_LENGTH_BYTES] + b"\xff" * 3 + intact[HEADER_LENGTH_BYTES + 3:])
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        EEMC.from_pretrained(path)
    weights.write_bytes(intact + b"\x00" * 4)  # data beyond what the header describes
    with pytest.raises(CheckpointError, match="4 bytes more than its header describes"):
        EEMC.from_pretrained(path)


def test_a_damaged_checkpoint_of_a_run_names_the_older_intact_one(tmp_path):
    run = tmp_path / "run"  # a training run's layout: checkpoints/step-N (step-N-1 when saved again), last
    model = build()
    for name in ("step-00000010", "step-00000020", "step-00000020-1", "step-00000030"):
        model.save_pretrained(run / "checkpoints" / name)
    newest = run / "checkpoints" / "step-00000030"
    (run / "last").symlink_to(Path("checkpoints") / newest.name)
    blob = (newest / WEIGHTS_FILE).read_bytes()
    (newest / WEIGHTS_FILE).write_bytes(blob[:len(blob) // 2])
    # the one written just before is damaged too: the newest intact older one is named
    second = run / "checkpoints" / "step-00000020-1"
    _damage_header(second / WEIGHTS_FILE, b'{"__metadata__"', b'{"__metadata__\x00')
    with pytest.raises(CheckpointError) as err:
        EEMC.from_pretrained(run / "last")
    message = str(err.value)
    assert message.startswith(f"{run / 'last' / WEIGHTS_FILE}: truncated: ")
    assert message.endswith(f"; an older intact checkpoint of the same run: {run / 'checkpoints' / 'step-00000020'}")
    (newest / WEIGHTS_FILE).write_bytes(blob)
    _damage_header(newest / WEIGHTS_FILE, b'"query_prompt.attn_gate"', b'"query_prompt.attn_gatf"')  # a tensor renamed
    with pytest.raises(CheckpointError) as err:
        EEMC.from_pretrained(newest)
    assert "1 missing keys: query_prompt.attn_gate" in str(err.value)
    assert str(err.value).endswith(f"an older intact checkpoint of the same run: {second.parent / 'step-00000020'}")
    assert older_intact_checkpoint(run / "checkpoints" / "step-00000020") == run / "checkpoints" / "step-00000010"
    assert older_intact_checkpoint(newest, names=["another.weight"]) is None  # none holds those tensors
    assert older_intact_checkpoint(run / "checkpoints" / "step-00000010") is None
    assert older_intact_checkpoint(tmp_path / "elsewhere") is None  # not a numbered checkpoint


def test_the_commands_report_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    path = build().save_pretrained(tmp_path / "ckpt")
    weights = path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.csv").write_text("vid,uid,split,fid,exp\n")
    assert refavs_main(["eval", "--checkpoint", str(path), "--data-dir", str(data), "--split", "val",
                        "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{weights}: truncated" in err and "Traceback" not in err
    with pytest.raises(InferenceError) as failed:  # what `refavs predict` prints as its one line
        RefAVSPipeline.from_pretrained(path)
    assert "\n" not in str(failed.value) and f"{weights}: truncated" in str(failed.value)
