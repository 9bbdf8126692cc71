"""The training loop: one process, or many under ``torchrun`` / ``accelerate launch`` (DDP).

Per epoch every process takes its share of the same seeded permutation of the training clips
(:mod:`refavs.training.sampling`), runs forward and backward (under autocast when mixed
precision is on), and the optimiser steps every ``grad_accum_steps`` micro-batches; DDP
averages the gradients. After each epoch rank 0 evaluates the validation split, logs J and F,
and writes a checkpoint (``RUN/last``, and ``RUN/best`` when val J improved). ``resume=True``
restores the model, optimiser, scheduler, loss scaler, RNG states, epoch and step from
``RUN/last`` and skips the micro-batches already done, so a resumed run continues as if it
had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from refavs.data.dataset import RefAVSDataset, collate
from refavs.data.labels import LabelSource, RowOptions, apply_row_options, label_source_for
from refavs.data.layout import DatasetLayout
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.data.writer import atomic_write_bytes
from refavs.features.cache import FeatureStore, extract_features
from refavs.features.config import get_feature_config
from refavs.models.build import build_model, model_class
from refavs.models.checkpoint import architecture, config_differences
from refavs.models.config_base import ModelConfig, feature_mismatches
from refavs.models.registry import model_config_from_dict
from refavs.training import distributed as dist
from refavs.training.checkpoint import last_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state
from refavs.training.config import TrainConfig
from refavs.training.evaluate import autocast, evaluate, resolve_precision
from refavs.training.sampling import clip_groups, rank_batches
from refavs.version import __version__

if TYPE_CHECKING:
    from refavs.scoring.score import SplitScore

RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"


class TrainingError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        run_dir: the run folder.
        global_step: optimiser steps done in all.
        best_J: best validation J (None without a validation split).
        best: the best checkpoint (``RUN/best``), or the last one without validation.
        seconds: wall time of this call.
        best_scores: the validation scores of ``best`` (J, F and per cue) when this call
            evaluated it, so that a caller need not score the same checkpoint on the same split
            again; None when ``best`` comes from before a resume, or without validation.
    """

    run_dir: Path
    global_step: int
    best_J: float | None
    best: Path
    seconds: float
    best_scores: SplitScore | None = None


def build_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``params`` with the recipe's settings; the fused kernel (one pass over all
    parameters instead of a loop of small ops: 13 ms -> 2.4 ms per ``tiny`` step here) where
    every parameter is a float tensor on a CPU or CUDA device, else the default implementation."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                             fused=True if fused else None)


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (linear warm-up, then constant or cosine)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.scheduler == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _append_log(run_dir: Path, record: dict) -> None:
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _run_info(model_config: ModelConfig, train_config: TrainConfig, data_dir: Path) -> dict:
    return {"refavs_version": __version__, "data_dir": str(data_dir.resolve()),
            "model_config": model_config.to_dict(), "train_config": train_config.to_dict()}


def _check_resume(run_dir: Path, model_config: ModelConfig, train_config: TrainConfig) -> None:
    """Refuse to resume a run with settings other than those it started with."""
    info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    saved_model = model_config_from_dict(info["model_config"])
    saved_train = TrainConfig.from_dict(info["train_config"])
    diffs = config_differences(saved_model, model_config, identity_only=False)
    diffs += [f"train.{k}: run={v!r}, requested={getattr(train_config, k)!r}"
              for k, v in saved_train.to_dict().items() if k != "name" and getattr(train_config, k) != (
                  tuple(v) if isinstance(v, list) else v)]
    if diffs:
        raise TrainingError(f"{run_dir}: cannot resume with other settings than the run started with:\n  "
                            + "\n  ".join(diffs))


def prepare_features(data_dir: Path, model_config: ModelConfig, splits, cache_dir=None, progress: bool = False,
                     media: bool = False):
    """The feature preset of the model, extracted for ``splits`` when missing; returns ``(config, store)``.

    ``media``: also cache the decoded frames and masks (``refavs features --media``)."""
    features = get_feature_config(model_config.feature_preset)
    problems = feature_mismatches(model_config, features)
    if problems:
        raise TrainingError("the model does not fit its feature preset: " + "; ".join(problems))
    store = FeatureStore.open(data_dir, features, cache_dir)
    folders, uids = store.missing(DatasetLayout(data_dir), read_metadata(data_dir, splits), media=media)
    if folders or uids:
        extract_features(data_dir, features, list(splits), cache_dir, progress=progress, media=media)
        store = FeatureStore.open(data_dir, features, cache_dir)
    return features, store


def training_rows(data_dir: Path, cfg: TrainConfig, labels: LabelSource | None, log) -> list[Expression]:
    """The training split's rows under the recipe's row options (``drop_twin_ambiguous``,
    ``null_negatives``), as the dataset's label source honours them; without one the options are
    ignored, and ``log`` says so."""
    options = RowOptions(cfg.null_negatives, cfg.null_negatives_present, cfg.drop_twin_ambiguous, cfg.seed)
    return apply_row_options(labels, data_dir, read_metadata(data_dir, ["train"]), options, log)


def train(model_config: ModelConfig, train_config: TrainConfig, data_dir: str | Path, run_dir: str | Path,
          resume: bool = False, device: str | None = None, cache_dir: str | Path | None = None,
          progress: bool = True, log=print) -> TrainResult:
    """Train ``model_config`` with ``train_config`` on the dataset at ``data_dir`` into ``run_dir``.

    Launch under ``torchrun --nproc-per-node N`` (or ``accelerate launch``) for N processes.
    Raises :class:`TrainingError` when the run folder already holds a run (without ``resume``),
    or when resuming with other settings.
    """
    start_time = time.perf_counter()
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    env = dist.setup(device)
    cfg = train_config
    if not (data_dir / "metadata.csv").is_file():
        raise TrainingError(f"{data_dir}: no metadata.csv (--data-dir)")
    if cfg.mixed_precision == "fp16" and env.device.type != "cuda":
        raise TrainingError("mixed_precision=fp16 needs a GPU; use bf16 or no on the CPU")
    precision = resolve_precision(cfg.mixed_precision, env.device)
    if cfg.mixed_precision == "auto" and env.is_main:
        log(f"mixed_precision=auto: {precision} on {env.device.type}")
    if resume:
        checkpoint = last_checkpoint(run_dir)
        _check_resume(run_dir, model_config, cfg)
    elif (run_dir / "last").exists():
        raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")

    splits_present = {e.split for e in read_metadata(data_dir)}
    if "train" not in splits_present:
        raise TrainingError(f"{data_dir}: no expression of split train")
    val_split = cfg.val_split if cfg.val_split in splits_present else None
    wanted = ["train"] + ([val_split] if val_split else [])
    if env.is_main:
        features, store = prepare_features(data_dir, model_config, wanted, cache_dir, progress)
    dist.barrier(env)
    if not env.is_main:
        features, store = prepare_features(data_dir, model_config, wanted, cache_dir, False)

    torch.manual_seed(cfg.seed)
    if resume:
        model = model_class(model_config).from_pretrained(checkpoint, config=model_config)
        state = load_state(checkpoint)
    else:
        model = build_model(model_config)
        state = None
    model.to(env.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"model config {model_config.name!r} trains no parameter (trainable.groups)")
    optimizer = build_optimizer(params, cfg)

    labels = label_source_for(data_dir)  # a dataset's extra targets and row options (Ref-AVS Synth's)
    train_rows = training_rows(data_dir, cfg, labels, log if env.is_main else lambda m: None)
    train_set = RefAVSDataset(data_dir, "train", store, image=features.image, expressions=train_rows,
                              labels=labels)
    groups = clip_groups(train_set.clips) if cfg.batch_by_clip else None
    per_group = cfg.expressions_per_clip  # None unless batch_by_clip (TrainConfig checks)
    steps_per_epoch = len(rank_batches(len(train_set), cfg.seed, 0, cfg.batch_size, env.rank,
                                       env.world_size, groups, per_group)) // cfg.grad_accum_steps
    if steps_per_epoch < 1:
        raise TrainingError(f"grad_accum_steps={cfg.grad_accum_steps} exceeds the micro-batches of an epoch")
    total_steps = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps,
                                                                                 cfg.epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))
    scaler = torch.amp.GradScaler(env.device.type, enabled=precision == "fp16")

    epoch, step_in_epoch, global_step, best_j = 0, 0, 0, None
    best_scores = None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch, step_in_epoch, global_step, best_j = (state["epoch"], state["step_in_epoch"],
                                                     state["global_step"], state["best_J"])
        if len(state["rng"]) != env.world_size:
            raise TrainingError(f"{run_dir} ran with {len(state['rng'])} process(es); resume it with the same "
                                f"number (now {env.world_size})")
        set_rng_state(state["rng"][env.rank])
        if env.is_main:
            log(f"resuming {run_dir} at epoch {epoch + 1}, step {global_step} (from {checkpoint.name})")
    elif env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / RUN_FILE, json.dumps(_run_info(model_config, cfg, data_dir), indent=2).encode())

    net = model
    if env.distributed:
        # lite's auxiliary heads get no gradient where Synth's labels are absent (the real benchmark)
        net = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
                                      find_unused_parameters=architecture(model_config) == "lite")

    def snapshot(best: bool) -> None:
        rngs = [None] * env.world_size
        if env.distributed:
            torch.distributed.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if env.is_main:
            save_checkpoint(run_dir, model, {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rngs, "epoch": epoch, "step_in_epoch": step_in_epoch,
                "global_step": global_step, "best_J": best_j}, best=best, keep=cfg.keep_checkpoints)
        dist.barrier(env)

    writer = None
    if env.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: the tensorboard package

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            writer = None

    stop = global_step >= total_steps
    while epoch < cfg.epochs and not stop:
        batches = rank_batches(len(train_set), cfg.seed, epoch, cfg.batch_size, env.rank, env.world_size, groups,
                               per_group)
        batches = batches[: steps_per_epoch * cfg.grad_accum_steps][step_in_epoch * cfg.grad_accum_steps:]
        # its own generator: creating a loader must not draw from the global RNG (exact resume)
        loader = DataLoader(train_set, batch_sampler=batches, collate_fn=collate, num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        bar = None
        if progress and env.is_main:
            bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       unit="step", leave=False)
        window_loss, window_clips, window_start, window_terms = 0.0, 0, time.perf_counter(), {}
        micro = 0
        optimizer.zero_grad(set_to_none=True)
        for batch in loader:
            batch = batch.to(env.device)
            micro += 1
            final_micro = micro % cfg.grad_accum_steps == 0
            sync = nullcontext() if (final_micro or not env.distributed) else net.no_sync()
            with sync:
                with autocast(env.device, precision):
                    output = net(batch)
                    loss = output.loss
                scaler.scale(loss / cfg.grad_accum_steps).backward()
            window_loss += float(loss.detach())
            for name, value in (getattr(output, "losses", None) or {}).items():  # a model's loss terms
                window_terms[name] = window_terms.get(name, 0.0) + value
            window_clips += len(batch) * env.world_size
            if not final_micro:
                continue
            if cfg.max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_in_epoch += 1
            if bar is not None:
                bar.update(1)
            if global_step % cfg.log_every_steps == 0 or step_in_epoch == steps_per_epoch:
                mean_loss = dist.mean_over_ranks(env, window_loss / (micro or 1))
                clips_per_s = window_clips / max(1e-9, time.perf_counter() - window_start)
                if env.is_main:
                    record = {"step": global_step, "epoch": epoch + 1, "loss": mean_loss,
                              "lr": scheduler.get_last_lr()[0], "clips_per_s": clips_per_s}
                    if window_terms:  # rank 0's terms, averaged over the window's micro-batches
                        record["losses"] = {k: v / (micro or 1) for k, v in window_terms.items()}
                    _append_log(run_dir, record)
                    if writer is not None:
                        writer.add_scalar("train/loss", mean_loss, global_step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", clips_s=f"{clips_per_s:.1f}")
                window_loss, window_clips, micro, window_start, window_terms = 0.0, 0, 0, time.perf_counter(), {}
            if global_step >= total_steps:
                stop = True
                break
            if cfg.checkpoint_every_steps and global_step % cfg.checkpoint_every_steps == 0:
                snapshot(best=False)
        if bar is not None:
            bar.close()
        finished_epoch = step_in_epoch >= steps_per_epoch
        if finished_epoch:
            epoch, step_in_epoch = epoch + 1, 0
        improved = False
        if val_split and (stop or epoch % cfg.val_every_epochs == 0 or epoch == cfg.epochs):
            if env.is_main:
                scores = evaluate(model, data_dir, [val_split], store, features.image,
                                  batch_size=cfg.eval_batch_size, device=env.device,
                                  mixed_precision=precision).splits[val_split]
                val = scores.result
                improved = best_j is None or val.J > best_j
                best_j = val.J if improved else best_j
                best_scores = scores if improved else best_scores
                _append_log(run_dir, {"step": global_step, "epoch": epoch, "val_split": val_split,
                                      "val_J": val.J, "val_F": val.F, "best_J": best_j})
                if writer is not None:
                    writer.add_scalar("val/J", val.J, global_step)
                    writer.add_scalar("val/F", val.F, global_step)
                log(f"epoch {epoch}: step {global_step}, {val_split} J {val.J:.4f} F {val.F:.4f}"
                    + (" (best)" if improved else f" (best {best_j:.4f})"))
            improved = dist.broadcast_object(env, improved)
            best_j = dist.broadcast_object(env, best_j)
        snapshot(best=improved or not val_split)
    if writer is not None:
        writer.close()
    best = (run_dir / "best").resolve() if (run_dir / "best").exists() else (run_dir / "last").resolve()
    dist.teardown(env)
    return TrainResult(run_dir=run_dir, global_step=global_step, best_J=best_j, best=best,
                       seconds=time.perf_counter() - start_time, best_scores=best_scores)
