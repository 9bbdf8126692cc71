"""Evaluating a model on splits of a dataset: J, F, S per split and per cue type, Mix, ablations.

Clips are taken in metadata order (the order the reference batches in), ``batch_size`` at a
time, with features from the cache. The numbers are the same objects ``refavs score`` prints
(:class:`~refavs.scoring.score.ScoreReport`).

With ``save_pred`` the probabilities are written in the scorer's layout (8-bit PNGs) and the
metrics are computed on exactly those 8-bit values, so ``refavs score`` on the saved folder
gives the same numbers; without it they are computed on the float probabilities.

``ablate`` removes one input to measure how much the model relies on it: ``audio`` and
``text`` zero their features (the text mask is kept), ``visual`` replaces every frame by the
mean image (zeros after normalisation), ``other_audio`` gives each clip the audio of the next
clip of its batch (a batch of one clip: that of the clip before it): a sound is there, but not
the clip's; ``mono`` gives a model of stereo features (``lite-stereo``) the same sound from
both sides (each window's left-minus-right numbers zeroed, what a mono file gives). A model trained on null rows reads
zeroed audio as silence and rightly answers "nothing" to a sentence about a sound, so
``other_audio`` is the ablation that shows whether it uses what it hears (which object is
loudest, highest, first), not only whether anything sounds.

:func:`evaluate_variants` scores several variants (``None``, ``audio``, ``text``, ``visual``)
of the same splits in one pass: each batch is loaded once, and the variants are stacked into
one forward per clip path: the expression-independent part of the model runs once for the
unablated and the text-zeroed rows (zeroing the text leaves it as it is), the audio-zeroed rows
form a second forward (``merge="all"``: one forward for all, the ablated clips under clip ids
of their own). The numbers are those of separate :func:`evaluate` calls with ``ablate=``.
Prediction PNGs are encoded on background threads (``pred_workers``) while the model runs.
"""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from refavs.data.batch import ClipBatch
from refavs.data.dataset import RefAVSDataset, collate
from refavs.data.writer import WriteError, remove_temp_files
from refavs.features.config import stereo_bands
from refavs.metrics import RefAVSMetrics
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import ScoreReport, split_score

Ablation = Literal["audio", "text", "visual"]
ABLATIONS: tuple[str, ...] = ("audio", "text", "visual", "other_audio", "mono")
PREDICTION_NAMES = "[0-9]*.png"
"""The prediction frames' file names (a glob pattern), whose leftover temporary files a writer removes."""


def other_clip_rows(clips: Sequence[str] | None, b: int) -> torch.Tensor | None:
    """For each of the ``b`` rows, a row of the next clip of the batch (in the order clips first
    occur, the last one taking the first's): whose audio ``other_audio`` gives it. None when the
    batch holds a single clip (or no clip ids)."""
    if clips is None or len(clips) != b:
        return None
    order = list(dict.fromkeys(clips))
    if len(order) < 2:
        return None
    first = {c: clips.index(c) for c in order}
    return torch.tensor([first[order[(order.index(c) + 1) % len(order)]] for c in clips])


def ablate_batch(batch: ClipBatch, ablate: str | None, spare_audio: torch.Tensor | None = None) -> ClipBatch:
    """``batch`` with one modality's input zeroed (see the module docstring). ``spare_audio``
    (``[T, A]``, another clip's) is what ``other_audio`` gives a batch of a single clip."""
    if ablate is None:
        return batch
    if ablate not in ABLATIONS:
        raise ValueError(f"ablate must be one of {', '.join(ABLATIONS)}, got {ablate!r}")
    if ablate == "other_audio":  # a sound is there, but another clip's
        rows = other_clip_rows(batch.clips, len(batch))
        if rows is not None:
            return dataclasses.replace(batch, audio=batch.audio[rows.to(batch.audio.device)])
        if spare_audio is None:
            raise ValueError("ablate=other_audio needs a batch of at least two clips, or another clip's audio "
                             "(batch_size >= 2, clip ids set)")
        return dataclasses.replace(batch, audio=spare_audio.to(batch.audio)[None].expand_as(batch.audio))
    if ablate == "mono":  # the same sound from both sides: the stereo features' pan zeroed
        bands = stereo_bands(batch.audio.shape[-1])
        audio = batch.audio.clone()
        audio[..., -bands:] = 0
        return dataclasses.replace(batch, audio=audio)
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


def evaluate(model, data_dir: str | Path, splits: Sequence[str], features, image, *, batch_size: int = 4,
             device: str | torch.device = "cpu", aggregation: str = "dataset", ablate: str | None = None,
             save_pred: str | Path | None = None, cue_source: str = "auto", mixed_precision: str = "no",
             num_workers: int = 0, progress: bool = False, forward_rows: int | str | None = "auto",
             pred_workers: int = 1) -> ScoreReport:
    """Score ``model`` on ``splits`` of the dataset at ``data_dir`` (:func:`evaluate_variants` with
    the one variant ``ablate``).

    Args:
        model: an :class:`~refavs.models.eemc.EEMC` (or anything mapping a ClipBatch to an
            output with ``mask_logits [B, T, 256, 256]``).
        features: the feature source (a :class:`~refavs.features.cache.FeatureStore`).
        image: the frames' :class:`~refavs.features.config.ImageConfig`.
        aggregation: ``dataset`` or ``reference`` (batches of 4 clips in metadata order).
        ablate: ``audio``, ``text``, ``visual``, ``other_audio`` or ``mono`` (see the module docstring).
        save_pred: folder to write ``<uid>/<frame>.png`` probabilities into.
        forward_rows: at most this many expressions per model forward (a batch of more runs in
            several; the numbers do not change): ``auto``, :func:`auto_forward_rows`; None, the
            whole batch.
        pred_workers: threads encoding the PNGs of ``save_pred`` (0: in the calling thread).
    """
    return evaluate_variants(model, data_dir, splits, features, image, variants=[ablate], batch_size=batch_size,
                             device=device, aggregation=aggregation, save_pred=save_pred, save_variant=ablate,
                             cue_source=cue_source, mixed_precision=mixed_precision, num_workers=num_workers,
                             progress=progress, forward_rows=forward_rows, pred_workers=pred_workers)[ablate]


VARIANTS: tuple[str | None, ...] = (None, "audio", "text")
"""The variants the main job scores: the model as it is, then with its audio or its text zeroed."""

SHARES_CLIP_PATH: frozenset[str | None] = frozenset({None, "text"})
"""Variants whose expression-independent (clip) features equal the unablated ones: the clip path
reads the frames' maps and the audio, never the text."""


def _clip_path(variant: str | None) -> str | None:
    """Which clip path a variant's rows need: None for the unablated one, else the ablation."""
    return None if variant in SHARES_CLIP_PATH else variant


def variant_plan(variants: Sequence[str | None] | Mapping[str | None, Sequence[str]],
                 splits: Sequence[str]) -> dict[str | None, list[str]]:
    """``variant -> splits`` of ``variants``: a sequence (every variant on every split of
    ``splits``) or a mapping (each variant on its own splits). ValueError on an unknown ablation."""
    if isinstance(variants, Mapping):
        plan = {v: list(s) for v, s in variants.items()}
    else:
        plan = {v: list(splits) for v in dict.fromkeys(variants)}
    for v in plan:
        if v is not None and v not in ABLATIONS:
            raise ValueError(f"a variant must be None or one of {', '.join(ABLATIONS)}, got {v!r}")
    if not plan:
        raise ValueError("no variant to evaluate")
    return plan


def forward_groups(variants: Sequence[str | None], merge: str = "clip") -> list[list[str | None]]:
    """The variants run together in one forward: ``clip``, those of one clip path (None with
    ``text``; ``audio`` and ``visual`` alone); ``all``, every variant in one forward; ``none``,
    each variant in its own."""
    if merge == "all":
        return [list(variants)]
    if merge == "none":
        return [[v] for v in variants]
    if merge != "clip":
        raise ValueError(f"merge must be 'clip', 'all' or 'none', got {merge!r}")
    groups: dict[str | None, list[str | None]] = {}
    for v in variants:
        groups.setdefault(_clip_path(v), []).append(v)
    return list(groups.values())


def stack_variants(batch: ClipBatch, variants: Sequence[str | None]) -> ClipBatch:
    """One batch holding ``batch`` once per variant (each ablated as :func:`ablate_batch`), in
    that order, without masks. Rows of one clip path keep the clip's id, so the model computes
    the clip's features once for all of them; the rows of another clip path (``audio``,
    ``visual``) get the clip id ``<clip>|<variant>``."""
    return _stacked([ablate_batch(batch, v) for v in variants], variants)


def _stacked(parts: Sequence[ClipBatch], variants: Sequence[str | None]) -> ClipBatch:
    """The already ablated ``parts`` (one per variant, rows of the same expressions) as one batch
    without masks (see :func:`stack_variants`)."""
    if len(parts) == 1:
        return dataclasses.replace(parts[0], masks=None)
    batch = parts[0]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else torch.cat(values)

    clips = None
    if batch.clips is not None:
        clips = [c if _clip_path(v) is None else f"{c}|{v}" for v in variants for c in batch.clips]
    visual = None
    if all(p.visual is not None for p in parts):
        visual = {k: torch.cat([p.visual[k] for p in parts]) for k in parts[0].visual}
    targets = {k: torch.cat([p.targets[k] for p in parts]) for k in batch.targets}
    return ClipBatch(pixel_values=cat("pixel_values"), audio=cat("audio"), text=cat("text"),
                     text_mask=cat("text_mask"), masks=None, uids=[u for _ in parts for u in batch.uids],
                     clips=clips, visual=visual, targets=targets)


LITE_FORWARD_ROWS = 8
"""Expressions per forward of the ``lite`` model on a CPU (:func:`auto_forward_rows`): its
per-expression path (fusion, refinement at stride 4) runs faster per row on batches of 4 to 8
than on the evaluation batch of 16, whose activations outgrow the CPU's caches (fp32, one
thread: the unablated pass over test_s of Synth ``medium`` 44.8 s in forwards of 16, 40.2 s in
forwards of 8; ``benchmarks/evaluate.py``)."""


def auto_forward_rows(model, device: torch.device) -> int | None:
    """How many expressions one forward of ``evaluate`` takes under ``forward_rows="auto"``:
    :data:`LITE_FORWARD_ROWS` for the ``lite`` model on a CPU; None (the whole batch) otherwise."""
    lite = getattr(getattr(model, "config", None), "architecture", None) == "lite"
    return LITE_FORWARD_ROWS if lite and device.type == "cpu" else None


def batch_rows(batch: ClipBatch, rows: slice) -> ClipBatch:
    """The expressions ``rows`` of ``batch``."""
    def cut(t):
        return None if t is None else t[rows]
    return dataclasses.replace(
        batch, pixel_values=cut(batch.pixel_values), audio=batch.audio[rows], text=batch.text[rows],
        text_mask=batch.text_mask[rows], masks=cut(batch.masks), uids=batch.uids[rows],
        clips=None if batch.clips is None else batch.clips[rows],
        visual=None if batch.visual is None else {k: v[rows] for k, v in batch.visual.items()},
        targets={k: v[rows] for k, v in batch.targets.items()})


def forward_logits(model, batch: ClipBatch, variants: Sequence[str | None], device: torch.device,
                   mixed_precision: str = "no", rows: int | None = None,
                   spare_audio: torch.Tensor | None = None) -> torch.Tensor:
    """float32 mask logits ``[V * B, T, S, S]`` of ``batch`` (B expressions, on ``device``) under
    each of the V ``variants`` (:func:`stack_variants`), variant by variant; at most ``rows``
    rows per forward (None: the whole stack in one), each forward stacking the variants of the
    same expressions so that they share their clips' features. ``spare_audio``: see
    :func:`ablate_batch`."""
    b, v = len(batch), len(variants)
    per = b if rows is None else max(1, rows // v)
    # on the whole batch, before it is cut into forwards (other_audio pairs the batch's clips)
    ablated = [ablate_batch(batch, variant, spare_audio) for variant in variants]
    parts = []
    for start in range(0, b, per):
        subs = ablated if per >= b else [batch_rows(a, slice(start, start + per)) for a in ablated]
        with autocast(device, mixed_precision):
            logits = model(_stacked(subs, variants)).mask_logits.float()
        parts.append(logits.reshape(v, len(subs[0]), *logits.shape[1:]))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    return out.reshape(v * b, *out.shape[2:])


class PredictionWriter:
    """Writes prediction PNGs (:func:`~refavs.scoring.predictions.write_prediction`) on
    ``workers`` background threads, so that PNG encoding (zlib, outside the GIL) overlaps the
    model's forward; at most ``pending`` expressions wait at a time. ``workers=0`` writes in the
    calling thread. :meth:`close` waits for every file and raises the first error.

    Every frame is written through a temporary file and renamed; the temporary files a writer
    killed before its rename left in ``pred_dir`` are removed when a writer starts. A frame
    that cannot be written (a full disk, an I/O error) raises
    :class:`~refavs.data.writer.WriteError` naming it; the frames written before it are complete."""

    def __init__(self, pred_dir: str | Path, workers: int = 1, pending: int = 64):
        self.pred_dir = Path(pred_dir)
        self.pending = max(1, pending)
        remove_temp_files(self.pred_dir, PREDICTION_NAMES, recursive=True)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="refavs-png") if workers > 0 else None
        self._futures: list[Future] = []

    def write(self, uid: str, probs) -> None:
        if self._pool is None:
            _write_frames(self.pred_dir, uid, probs)
            return
        if len(self._futures) >= self.pending:
            self._futures.pop(0).result()
        self._futures.append(self._pool.submit(_write_frames, self.pred_dir, uid, probs))

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every file (``raise_errors``: raise the first error; otherwise, as when
        another error is on its way out, let the queued files be written and say nothing)."""
        try:
            for future in self._futures:
                if raise_errors:
                    future.result()
                else:
                    future.exception()
        finally:
            self._futures.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)


def _write_frames(pred_dir: Path, uid: str, probs) -> None:
    try:
        write_prediction(pred_dir, uid, probs)
    except WriteError as err:
        raise err.kept("the frames written before it are complete; running the evaluation again writes "
                       "every frame") from err


@torch.no_grad()
def evaluate_variants(model, data_dir: str | Path, splits: Sequence[str], features, image, *,
                      variants: Sequence[str | None] | Mapping[str | None, Sequence[str]] = VARIANTS,
                      batch_size: int = 4, device: str | torch.device = "cpu", aggregation: str = "dataset",
                      save_pred: str | Path | None = None, save_variant: str | None = None,
                      cue_source: str = "auto", mixed_precision: str = "no", num_workers: int = 0,
                      progress: bool = False, merge: str = "clip",
                      forward_rows: int | str | None = "auto", pred_workers: int = 1
                      ) -> dict[str | None, ScoreReport]:
    """Score ``model`` on ``splits`` under several variants in one pass over the data; returns
    ``{variant: ScoreReport}``, each report the one ``evaluate(..., ablate=variant)`` gives.

    Args:
        variants: ``None`` (the model as it is) and ablations (``audio``, ``text``, ``visual``),
            each scored on every split of ``splits``; or a mapping ``variant -> splits`` (a split
            is loaded once for every variant that scores it; ``splits`` then only orders them).
        save_pred: folder for the probabilities of the variant ``save_variant`` (None: the model
            as it is) in the scorer's layout; that variant's metrics are then computed on those
            8-bit values, so ``refavs score`` on the folder gives the same numbers.
        merge: ``clip`` (default): the variants that share the clip path (None and ``text``) in
            one forward, each other in its own; ``all``: every variant in one forward;
            ``none``: each variant in its own (the batch is still loaded once).
        forward_rows: at most this many rows (expressions x stacked variants) per forward, as
            in :func:`evaluate` (``auto``: :func:`auto_forward_rows`; None: the whole batch).
        pred_workers: threads encoding the PNGs of ``save_pred`` (0: in the calling thread).

    The other arguments are :func:`evaluate`'s.
    """
    plan = variant_plan(variants, splits)
    if save_pred is not None and save_variant not in plan:
        raise ValueError(f"save_pred writes the predictions of the {save_variant} variant (save_variant), "
                         f"which is not evaluated")
    order = list(dict.fromkeys([*splits, *(s for wanted in plan.values() for s in wanted)]))
    device = torch.device(device)
    rows = auto_forward_rows(model, device) if forward_rows == "auto" else forward_rows
    was_training = model.training
    model.eval()
    reports = {v: ScoreReport(splits={}, aggregation=aggregation) for v in plan}
    writer = None if save_pred is None else PredictionWriter(save_pred, pred_workers)
    try:
        for split in order:
            todo = [v for v in plan if split in plan[v]]
            if not todo:
                continue
            dataset = RefAVSDataset(data_dir, split, features, image=image)
            if len(dataset) == 0:
                raise ValueError(f"{data_dir}: no expression of split {split}")
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                num_workers=num_workers)
            metrics = {v: RefAVSMetrics(aggregation) for v in todo}
            groups = forward_groups(todo, merge)
            bar = None
            if progress:
                bar = tqdm(total=len(dataset), desc=f"eval {split}" + (f" ({len(todo)} variants)" if len(todo) > 1 else ""), unit="clip", leave=False)
            heard: dict[str, torch.Tensor] = {}   # the audio of the last two clips seen (other_audio's spare)
            for batch in loader:
                batch = batch.to(device)
                n = len(batch)
                spare = next((a for c, a in reversed(heard.items()) if batch.clips is None or c not in batch.clips), None)
                for group in groups:
                    logits = forward_logits(model, batch, group, device, mixed_precision, rows, spare)
                    for i, v in enumerate(group):
                        part = logits[i * n:(i + 1) * n]
                        if v == save_variant and writer is not None:
                            probs = (part.sigmoid() * 255).round() / 255
                            for uid, p in zip(batch.uids, probs.cpu().numpy()):
                                writer.write(uid, p)
                            metrics[v].update(probs, batch.masks, logits=False)
                        else:
                            metrics[v].update(part, batch.masks, logits=True)
                for clip, audio in zip(batch.clips or (), batch.audio):
                    heard.pop(clip, None)
                    heard[clip] = audio
                    while len(heard) > 2:
                        heard.pop(next(iter(heard)))
                if bar is not None:
                    bar.update(n)
            if bar is not None:
                bar.close()
            for v in todo:
                reports[v].splits[split] = split_score(split, metrics[v], dataset.expressions, cue_source)
    except BaseException:
        if writer is not None:
            writer.close(raise_errors=False)  # the error on its way out is the one to report
        raise
    else:
        if writer is not None:
            writer.close()
    finally:
        model.train(was_training)
    return reports
