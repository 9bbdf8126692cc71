"""Training recipes: every setting of a run in one typed config, with named presets.

- ``paper``: the reference recipe: AdamW, lr 1e-4, 50 epochs, 2 clips per step, evaluation
  batches of 4 clips, the checkpoint with the best val J kept.
- ``tiny``: sized for the ``tiny`` model on a 2-core CPU and Ref-AVS Synth ``small``.
- ``lite``: the ``lite`` model on a 2-core CPU and Ref-AVS Synth ``medium`` (the main job).

Override any field with ``key=value`` (``epochs=3``, ``mixed_precision=bf16``), parsed by its type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Literal

from refavs.models.overrides import apply_overrides, config_from_dict

MixedPrecision = Literal["no", "bf16", "fp16", "auto"]
Scheduler = Literal["constant", "cosine"]


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    Attributes:
        name: the recipe this came from (informational).
        epochs: passes over the training split.
        lr: AdamW learning rate (peak, after warm-up).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        batch_size: clips per optimiser step per process (10 frames each); the global batch is
            ``batch_size * processes * grad_accum_steps``.
        eval_batch_size: clips per evaluation batch (4 in the reference, which matters for
            ``--aggregation reference``; the order is always the metadata order).
        grad_accum_steps: micro-batches whose gradients add up before each optimiser step.
        mixed_precision: ``no``, ``bf16``, ``fp16`` (autocast; fp16 with loss scaling) or
            ``auto``. GPU only for fp16; bf16 also runs on CPU. ``auto``: bf16 where the device
            computes it natively (a GPU with bf16, a CPU with AVX512-BF16 or AMX), else ``no``
            (:func:`refavs.training.evaluate.resolve_precision`).
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        scheduler: ``constant`` or ``cosine`` (decay to 0 over the run), after ``warmup_steps``.
        warmup_steps: optimiser steps of linear warm-up from 0.
        seed: seeds model initialisation, data order and everything random in the loop.
        num_workers: DataLoader worker processes per training process.
        val_split: the split evaluated after each epoch; the best checkpoint maximises its J.
        val_every_epochs: evaluate every this many epochs (the last epoch always).
        checkpoint_every_steps: also write ``RUN/last`` every this many optimiser steps (0: only
            at the end of each epoch). Resuming restarts from the last written checkpoint.
        keep_checkpoints: step checkpoints kept besides ``best`` (older ones are deleted).
        log_every_steps: write a line to ``log.jsonl`` every this many optimiser steps.
        max_steps: stop after this many optimiser steps in all (None: run every epoch).
        batch_by_clip: visit the training clips in a seeded order with each clip's expressions
            together, so a batch holds whole clips where its size allows and EEMC runs the
            pixel-level module once per clip (False: expressions in a seeded order, as the
            reference).
        expressions_per_clip: with ``batch_by_clip``, train on at most this many expressions of
            each clip per epoch, a seeded choice that changes from epoch to epoch (None: all). A
            dataset that writes more expressions per clip than a step needs then gives each
            epoch the same length and each batch as many clips, with more sentences over the run.
        drop_twin_ambiguous: on Ref-AVS Synth, leave out the training expressions whose target has
            a look-alike that mono audio cannot tell apart (:func:`refavs.synth.stats.twin_ambiguous`):
            their mask marks one of two identical objects, a choice no input decides. Ignored, with
            a log line, on data without ``scenes.jsonl``.
        null_negatives: on Ref-AVS Synth, add about this many null expressions per training
            expression: another clip's sentence that refers to nothing in the clip, with an
            empty target (:mod:`refavs.synth.negatives`). Ignored, with a log line, on data
            without ``scenes.jsonl`` (the real benchmark). 0: none, as the reference.
        null_negatives_present: keep only null negatives whose sentence names the look of an
            object that is in the clip, so that its sound, place or relation is what fails
            (``present`` of :func:`refavs.synth.negatives.null_negatives`).
    """

    name: str = "custom"
    epochs: int = 50
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 2
    eval_batch_size: int = 4
    grad_accum_steps: int = 1
    mixed_precision: MixedPrecision = "no"
    max_grad_norm: float | None = None
    scheduler: Scheduler = "constant"
    warmup_steps: int = 0
    seed: int = 0
    num_workers: int = 0
    val_split: str = "val"
    val_every_epochs: int = 1
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    log_every_steps: int = 10
    max_steps: int | None = None
    batch_by_clip: bool = False
    expressions_per_clip: int | None = None
    drop_twin_ambiguous: bool = False
    null_negatives: float = 0.0
    null_negatives_present: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "val_every_epochs",
                    "keep_checkpoints", "log_every_steps")
        bad = [f"{name}={getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        if self.lr <= 0:
            bad.append(f"lr={self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            bad.append(f"max_steps={self.max_steps}")
        if self.warmup_steps < 0 or self.checkpoint_every_steps < 0 or self.num_workers < 0:
            bad.append("warmup_steps, checkpoint_every_steps and num_workers must be >= 0")
        if self.expressions_per_clip is not None and self.expressions_per_clip < 1:
            bad.append(f"expressions_per_clip={self.expressions_per_clip} (must be >= 1, or None for all)")
        if self.expressions_per_clip is not None and not self.batch_by_clip:
            bad.append(f"expressions_per_clip={self.expressions_per_clip} needs batch_by_clip=true")
        if self.null_negatives < 0:
            bad.append(f"null_negatives={self.null_negatives} (must be >= 0)")
        if bad:
            raise ValueError(f"invalid training config {self.name!r}: " + ", ".join(bad))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config a :meth:`to_dict` dict describes; unknown keys are an error."""
        return config_from_dict(cls, data)


def _paper() -> TrainConfig:
    return TrainConfig(name="paper", epochs=50, lr=1e-4, batch_size=2, eval_batch_size=4)


def _tiny() -> TrainConfig:
    return TrainConfig(name="tiny", epochs=12, lr=5e-4, batch_size=4, eval_batch_size=8,
                       scheduler="cosine", warmup_steps=20, max_grad_norm=1.0, log_every_steps=5,
                       batch_by_clip=True)


def _lite() -> TrainConfig:
    return TrainConfig(name="lite", epochs=6, lr=1e-3, batch_size=12, eval_batch_size=16, scheduler="cosine",
                       warmup_steps=50, max_grad_norm=1.0, log_every_steps=20, batch_by_clip=True,
                       weight_decay=0.05, val_every_epochs=6, expressions_per_clip=3, drop_twin_ambiguous=True,
                       mixed_precision="auto")


TRAIN_RECIPES = {"paper": _paper, "tiny": _tiny, "lite": _lite}
"""Named recipes; the model config of the same name uses the recipe of the same name by default."""


def recipe_for(model_config_name: str) -> str:
    """The recipe a named model config trains with by default: the one named like its base
    (``tiny-reference`` -> ``tiny``, ``lite-stereo`` -> ``lite``), else ``tiny``."""
    base = model_config_name.removesuffix("-reference").removesuffix("-stereo")
    return base if base in TRAIN_RECIPES else "tiny"


def get_train_config(name: str, overrides: Iterable[str] = ()) -> TrainConfig:
    """The named recipe with ``key=value`` overrides applied."""
    try:
        config = TRAIN_RECIPES[name]()
    except KeyError:
        raise ValueError(f"unknown training recipe {name!r}; choose from {', '.join(TRAIN_RECIPES)}") from None
    return apply_overrides(config, overrides)
