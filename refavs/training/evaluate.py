"""Evaluating a model on splits of a dataset: J, F, S per split and per cue type, Mix, ablations.

Clips are taken in metadata order (the order the reference batches in), ``batch_size`` at a
time, with features from the cache. The numbers are the same objects ``refavs score`` prints
(:class:`~refavs.scoring.score.ScoreReport`).

With ``save_pred`` the probabilities are written in the scorer's layout (8-bit PNGs) and the
metrics are computed on exactly those 8-bit values, so ``refavs score`` on the saved folder
gives the same numbers; without it they are computed on the float probabilities.

``ablate`` removes one input to measure how much the model relies on it: ``audio`` and
``text`` zero their features (the text mask is kept), ``visual`` replaces every frame by the
mean image (zeros after normalisation).
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from refavs.data.batch import ClipBatch
from refavs.data.dataset import RefAVSDataset, collate
from refavs.metrics import RefAVSMetrics
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import ScoreReport, SplitScore, cue_groups

Ablation = Literal["audio", "text", "visual"]
ABLATIONS: tuple[str, ...] = ("audio", "text", "visual")


def ablate_batch(batch: ClipBatch, ablate: str | None) -> ClipBatch:
    """``batch`` with one modality's input zeroed (see the module docstring)."""
    if ablate is None:
        return batch
    if ablate not in ABLATIONS:
        raise ValueError(f"ablate must be one of {', '.join(ABLATIONS)}, got {ablate!r}")
    if ablate == "visual":  # the frames, and the backbone maps cached from them
        visual = None if batch.visual is None else {k: torch.zeros_like(v) for k, v in batch.visual.items()}
        pixels = None if batch.pixel_values is None else torch.zeros_like(batch.pixel_values)
        return dataclasses.replace(batch, pixel_values=pixels, visual=visual)
    return dataclasses.replace(batch, **{ablate: torch.zeros_like(getattr(batch, ablate))})


def resolve_precision(mixed_precision: str, device: torch.device) -> str:
    """``mixed_precision`` with ``auto`` decided for ``device``: ``bf16`` where it computes bf16
    natively (a CUDA GPU that supports it; a CPU whose oneDNN has bf16 kernels, i.e. AVX512-BF16
    or AMX), else ``no`` (bf16 emulated on an older CPU is slower than float32)."""
    if mixed_precision != "auto":
        return mixed_precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "no"
    return "no"


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (torch's own test helper asks the same op);
    asked once per process, since :func:`autocast` resolves ``auto`` at every step or batch."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, mixed_precision: str):
    """The autocast context of a ``mixed_precision`` setting (``no``: none; ``auto``: see
    :func:`resolve_precision`)."""
    mixed_precision = resolve_precision(mixed_precision, device)
    if mixed_precision == "no":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model, data_dir: str | Path, splits: Sequence[str], features, image, *, batch_size: int = 4,
             device: str | torch.device = "cpu", aggregation: str = "dataset", ablate: str | None = None,
             save_pred: str | Path | None = None, cue_source: str = "auto", mixed_precision: str = "no",
             num_workers: int = 0, progress: bool = False) -> ScoreReport:
    """Score ``model`` on ``splits`` of the dataset at ``data_dir``.

    Args:
        model: an :class:`~refavs.models.eemc.EEMC` (or anything mapping a ClipBatch to an
            output with ``mask_logits [B, T, 256, 256]``).
        features: the feature source (a :class:`~refavs.features.cache.FeatureStore`).
        image: the frames' :class:`~refavs.features.config.ImageConfig`.
        aggregation: ``dataset`` or ``reference`` (batches of 4 clips in metadata order).
        ablate: ``audio``, ``text`` or ``visual`` to zero that input.
        save_pred: folder to write ``<uid>/<frame>.png`` probabilities into.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    report = ScoreReport(splits={}, aggregation=aggregation)
    try:
        for split in splits:
            dataset = RefAVSDataset(data_dir, split, features, image=image)
            if len(dataset) == 0:
                raise ValueError(f"{data_dir}: no expression of split {split}")
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                num_workers=num_workers)
            metrics = RefAVSMetrics(aggregation)
            bar = None
            if progress:
                bar = tqdm(total=len(dataset), desc=f"eval {split}", unit="clip", leave=False)
            for batch in loader:
                batch = ablate_batch(batch, ablate).to(device)
                inputs = dataclasses.replace(batch, masks=None)
                with autocast(device, mixed_precision):
                    logits = model(inputs).mask_logits.float()
                if save_pred is None:
                    metrics.update(logits, batch.masks, logits=True)
                else:
                    probs = (logits.sigmoid() * 255).round() / 255
                    for uid, p in zip(batch.uids, probs.cpu().numpy()):
                        write_prediction(save_pred, uid, p)
                    metrics.update(probs, batch.masks, logits=False)
                if bar is not None:
                    bar.update(len(batch))
            if bar is not None:
                bar.close()
            groups = cue_groups(dataset.expressions, cue_source)
            report.splits[split] = SplitScore(split=split, result=metrics.compute(),
                                              cues=metrics.compute_groups(groups))
    finally:
        model.train(was_training)
    return report
