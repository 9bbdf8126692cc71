"""Saving and loading the models of the family: ``config.json`` + ``model.safetensors`` in one folder.

The models call this module (``EEMC.from_pretrained`` -> :func:`load_into`); it imports no
model. :func:`refavs.models.build.load_pretrained` picks the class from the saved config.

- Writes are atomic: both files go to a temporary folder beside the target, which is then
  renamed into place (an existing target is moved aside first and removed after), so an
  interrupted save never leaves a half-written checkpoint.
- Loading maps every tensor to the CPU (safetensors, no pickle), then moves the model to the
  requested device.
- Before any tensor is read, the weights file's header is checked against the file
  (:func:`check_weights_file`): a file cut short, a header that is not JSON, or tensor entries
  that do not tile the data raise one :class:`CheckpointError` line naming the file and what is
  wrong. When the checkpoint is one of several numbered ones in a folder (a training run's
  ``checkpoints/step-N``), the message names the newest older one whose header and sizes are
  intact (:func:`older_intact_checkpoint`).
- Keys are checked strictly: missing, unexpected and wrongly shaped tensors are counted (the
  first few named), after the architecture settings in which the weights differ.
- A checkpoint of another configuration is refused with the settings that differ. Fields that
  only choose initial weights, trainable groups or how visual tokens are obtained may differ
  (:func:`refavs.models.overrides.is_identity_field`); the requested values are used.
- ``config.json`` states the schema of the config it holds (``config_schema_version``, see
  :mod:`refavs.models.registry`); checkpoints saved before it did are read as schema 1 and
  upgraded. The weights file and its metadata (``format``, ``format_version``) do not depend on
  it: the same weights give the same ``model.safetensors`` bytes.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Collection, Mapping

import torch

from refavs.data.writer import replace_folder, write_error
from refavs.models.config_base import ModelConfig
from refavs.models.overrides import flatten, is_identity_field
from refavs.models.registry import CONFIG_SCHEMA_VERSION, model_config_from_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HEADER_LENGTH_BYTES = 8
"""A safetensors file starts with its JSON header's length, 8 bytes little-endian."""
MAX_HEADER_BYTES = 100_000_000
"""The largest header safetensors reads (its own limit); a larger length means altered bytes."""
METADATA_KEY = "__metadata__"
"""The header's entry of free-form metadata (every other entry is a tensor)."""
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
"""Bytes per element of each safetensors dtype."""
NUMBERED = re.compile(r"^(\D+)(\d.*)$")
"""A numbered checkpoint folder's name: a prefix, then a number (``step-00000120``, ``step-00000120-1``)."""
FORMAT = "refavs-eemc"
FORMAT_VERSION = 1
SCHEMA_KEY = "config_schema_version"
"""The key of ``config.json`` that states the schema version of its ``config``."""


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def check_weights_file(path: str | Path) -> dict[str, dict]:
    """The tensor entries of the safetensors header of ``path``, after checking that the file
    holds what its header promises: a JSON header of the stated length, every tensor's byte
    range of the size its dtype and shape need, the ranges tiling the data, the data as long as
    they say. Reads the header only.

    Raises:
        CheckpointError: one line naming the file and what is wrong.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(HEADER_LENGTH_BYTES), "little")
            raw = f.read(min(length, MAX_HEADER_BYTES))
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the weights ({err.strerror or err})") from None
    if size < HEADER_LENGTH_BYTES:
        raise CheckpointError(f"{path}: truncated: {size} bytes, not even the {HEADER_LENGTH_BYTES}-byte header length")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: damaged: the header length {length} is impossible (altered bytes)")
    if HEADER_LENGTH_BYTES + length > size:
        raise CheckpointError(f"{path}: truncated: {size} bytes, smaller than its "
                              f"{HEADER_LENGTH_BYTES + length}-byte header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged: its header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: damaged: its header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != METADATA_KEY}
    ranges = []
    for name, entry in tensors.items():
        try:
            start, end = entry["data_offsets"]
            shape, itemsize = [int(d) for d in entry["shape"]], DTYPE_BYTES[entry["dtype"]]
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end) or min(shape, default=0) < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: damaged: the header's entry of tensor {name!r} is not a valid "
                                  f"tensor description") from None
        need = itemsize * math.prod(shape)
        if end - start != need:
            raise CheckpointError(f"{path}: damaged: tensor {name!r} spans {end - start} bytes in the header, "
                                  f"its dtype and shape need {need}")
        ranges.append((start, end, name))
    promised = 0
    for start, end, name in sorted(ranges):
        if start != promised:
            raise CheckpointError(f"{path}: damaged: the header's byte ranges overlap or leave a gap at "
                                  f"tensor {name!r}")
        promised = end
    data = size - HEADER_LENGTH_BYTES - length
    if data < promised:
        raise CheckpointError(f"{path}: truncated: {size} bytes, its header promises "
                              f"{HEADER_LENGTH_BYTES + length + promised}")
    if data > promised:
        raise CheckpointError(f"{path}: damaged: {data - promised} bytes more than its header describes")
    return tensors


def weights_intact(directory: str | Path, names: Collection[str] | None = None) -> bool:
    """Whether ``directory`` holds a config and a weights file whose header and sizes are intact
    (and, given ``names``, whose tensors are exactly those)."""
    try:
        tensors = check_weights_file(Path(directory) / WEIGHTS_FILE)
    except CheckpointError:
        return False
    return (Path(directory) / CONFIG_FILE).is_file() and (names is None or set(tensors) == set(names))


def _natural_order(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _prefix(name: str) -> str | None:
    numbered = NUMBERED.match(name)
    return numbered.group(1) if numbered else None


def older_intact_checkpoint(directory: str | Path, names: Collection[str] | None = None) -> Path | None:
    """The newest checkpoint saved before ``directory`` beside it whose header and sizes are
    intact (:func:`weights_intact`, with ``names`` the tensors it must hold): among the folders
    of its parent named with the same prefix and a number (a training run's
    ``checkpoints/step-N`` and ``step-N-k``), in the numbers' order. None when there is none, or
    when ``directory`` is not named so."""
    directory = Path(directory).resolve()
    prefix = _prefix(directory.name)
    if prefix is None:
        return None
    own = _natural_order(directory.name)
    older = [p for p in directory.parent.glob(f"{prefix}*")
             if p.is_dir() and _prefix(p.name) == prefix and _natural_order(p.name) < own]
    for candidate in sorted(older, key=lambda p: _natural_order(p.name), reverse=True):
        if weights_intact(candidate, names):
            return candidate
    return None


def _damaged(err: CheckpointError, directory: str | Path, names: Collection[str] | None = None) -> CheckpointError:
    """``err`` with, where there is one, the older intact checkpoint beside ``directory`` named."""
    older = older_intact_checkpoint(directory, names)
    if older is None:
        return err
    return CheckpointError(f"{err}; an older intact checkpoint of the same run: {older}")


def architecture(config: ModelConfig) -> str:
    """``lite`` or ``eemc``: which model class a config builds."""
    return config.architecture


def config_differences(saved: ModelConfig, wanted: ModelConfig, identity_only: bool = True) -> list[str]:
    """``field: checkpoint=..., requested=...`` for every setting that differs (``name`` ignored;
    with ``identity_only``, only fields that define the trained model, see
    :func:`~refavs.models.overrides.is_identity_field`). Configs of two architectures differ in
    that alone."""
    if architecture(saved) != architecture(wanted):
        return [f"architecture: checkpoint={architecture(saved)!r}, requested={architecture(wanted)!r}"]
    a, b = flatten(saved), flatten(wanted)
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "name" or (identity_only and not is_identity_field(key, type(wanted))):
            continue
        if a.get(key) != b.get(key):
            out.append(f"{key}: checkpoint={a.get(key)!r}, requested={b.get(key)!r}")
    return out


def sorted_metadata(blob: bytes, meta: Mapping[str, str]) -> bytes:
    """The safetensors file ``blob`` with its ``__metadata__`` entries in sorted order.

    safetensors writes the metadata map in an order that changes from process to process, so the
    same weights would give files that differ in their header; sorted, they give the same bytes
    (the header keeps its length: only the order of its entries changes).
    """
    size = int.from_bytes(blob[:HEADER_LENGTH_BYTES], "little")
    header = blob[HEADER_LENGTH_BYTES:HEADER_LENGTH_BYTES + size]
    wanted = json.dumps(dict(sorted(meta.items())), separators=(",", ":")).encode()
    for order in itertools.permutations(meta.items()):
        written = json.dumps(dict(order), separators=(",", ":")).encode()
        if written in header:
            header = header.replace(written, wanted, 1)
            return blob[:HEADER_LENGTH_BYTES] + header + blob[HEADER_LENGTH_BYTES + size:]
    raise ValueError("the safetensors header does not hold the metadata it was written with")


def save_pretrained(model, directory: str | Path) -> Path:
    """Write ``model`` (any model of the family: it has a ``config``) into ``directory`` atomically."""
    from safetensors.torch import save  # pulls in safetensors

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, SCHEMA_KEY: CONFIG_SCHEMA_VERSION,
              "config": model.config.to_dict()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        for name, what, data in ((WEIGHTS_FILE, "the model weights", sorted_metadata(save(state, metadata=meta), meta)),
                                 (CONFIG_FILE, "the model config", (json.dumps(config, indent=2) + "\n").encode())):
            try:
                (tmp / name).write_bytes(data)
            except OSError as err:  # a full disk, an I/O error: say which file of which checkpoint
                raise write_error(directory / name, what, err) from err
        replace_folder(tmp, directory, refuse_other=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_config(directory: str | Path) -> ModelConfig:
    """The model config (of any architecture) a checkpoint folder was saved with, upgraded to the
    current schema when it is older (:func:`refavs.models.registry.upgrade_config_dict`)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an EEMC checkpoint (no {CONFIG_FILE})")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an EEMC checkpoint config (format {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {data.get('format_version')}; this refavs reads "
                              f"version {FORMAT_VERSION}")
    if "config" not in data:
        raise CheckpointError(f"{path} holds no model config")
    try:
        return model_config_from_dict(data["config"], data.get(SCHEMA_KEY))
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


LISTED_PER_KIND = 6
"""How many keys of each kind (missing, unexpected, wrongly shaped) an error names."""

_PIXEL = "segmenter.model.pixel_level_module."
_SWIN_BLOCK = re.compile(r"^segmenter\.model\.pixel_level_module\.encoder\.swin\.encoder\."
                         r"layers\.(\d+)\.blocks\.(\d+)\.")
_PIXEL_LAYER = re.compile(r"^segmenter\.model\.pixel_level_module\.decoder\.encoder\.layers\.(\d+)\.")
_DECODER_LAYER = re.compile(r"^segmenter\.model\.transformer_module\.decoder\.layers\.(\d+)\.")


def settings_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """The architecture settings (dotted config fields) that a state dict in this model's names
    reveals by its keys and shapes; a setting whose tensors are absent is left out."""
    out: dict[str, object] = {}

    def shape(key: str) -> tuple[int, ...] | None:
        return tuple(state[key].shape) if key in state else None

    if (s := shape(_PIXEL + "encoder.swin.embeddings.patch_embeddings.projection.weight")) is not None:
        out["segmenter.embed_dim"], out["segmenter.patch_size"] = s[0], s[-1]
    blocks: dict[int, int] = {}
    for key in state:
        if m := _SWIN_BLOCK.match(key):
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    if blocks:
        out["segmenter.depths"] = tuple(blocks.get(i, 0) for i in range(max(blocks) + 1))
    if (s := shape(_PIXEL + "decoder.encoder.layers.0.self_attn.value_proj.weight")) is not None:
        out["segmenter.feature_size"] = s[0]
    for field, pattern, extra in (("segmenter.encoder_layers", _PIXEL_LAYER, 0),
                                  ("segmenter.decoder_layers", _DECODER_LAYER, 1)):  # the decoder runs n - 1
        found = {int(m.group(1)) for key in state if (m := pattern.match(key))}
        if found:
            out[field] = max(found) + 1 + extra
    if (s := shape("segmenter.model.transformer_module.queries_features.weight")) is not None:
        out["segmenter.num_queries"], out["segmenter.hidden_dim"] = s
    if (s := shape("segmenter.class_predictor.weight")) is not None:
        out["segmenter.num_labels"] = s[0] - 1
    for field, key in (("fusion.audio_dim", "fusion.audio_proj.0.weight"),
                       ("fusion.text_dim", "fusion.text_proj.0.weight")):
        if (s := shape(key)) is not None:
            out[field] = s[1]
    return out


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_PER_KIND])
    return shown if len(items) <= LISTED_PER_KIND else f"{shown}, ... ({len(items) - LISTED_PER_KIND} more)"


def load_state_dict_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """Load ``state`` into ``model``, refusing any missing, unexpected or wrongly shaped tensor.

    The error counts each kind and names the first few keys of each; when the two state dicts
    reveal different architecture settings (:func:`settings_from_state`), it names those first,
    since they are what a user has to change."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k}: {source} {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                    for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        theirs, ours = settings_from_state(state), settings_from_state(expected)
        differ = [f"{k}={theirs[k]!r} (model: {ours[k]!r})" for k in theirs if k in ours and theirs[k] != ours[k]]
        parts = [f"its weights are of another architecture: {', '.join(differ)}"] if differ else []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                parts.append(f"{len(items)} {label}: " + _listed(items))
        raise CheckpointError(f"{source} does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_into(model_class, directory: str | Path, config: ModelConfig | None = None,
              device: str | torch.device = "cpu"):
    """A ``model_class`` (built with ``load_pretrained=False``) holding the weights saved in ``directory``.

    Args:
        model_class: the model's class (``EEMC``, ``LiteEEMC``); its ``__init__`` takes
            ``(config, load_pretrained=...)``.
        directory: a folder written by :func:`save_pretrained`.
        config: the configuration the caller expects; a checkpoint whose settings differ (other
            than non-identity fields, which are taken from ``config``) is refused. None: the saved one.
        device: where the model ends up (tensors are read on the CPU first).
    """
    from safetensors import SafetensorError  # pulls in safetensors
    from safetensors.torch import load_file  # pulls in safetensors

    saved = load_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    try:
        check_weights_file(weights)
    except CheckpointError as err:
        raise _damaged(err, directory) from None
    if config is not None:
        differences = config_differences(saved, config)
        if differences:
            raise CheckpointError(f"{directory} holds a checkpoint of config {saved.name!r}, not of the requested "
                                  f"{config.name!r}; settings that differ: " + "; ".join(differences))
    model = model_class(config or saved, load_pretrained=False)
    try:
        state = load_file(str(weights), device="cpu")
    except SafetensorError as err:  # what the header check does not see
        raise _damaged(CheckpointError(f"{weights}: damaged: {err}"), directory) from None
    try:
        load_state_dict_strict(model, state, source=str(weights))
    except CheckpointError as err:  # a tensor missing or renamed: the header was altered, or other weights
        raise _damaged(err, directory, model.state_dict().keys()) from None
    return model.to(device)
