"""Benchmark: do the ``tiny`` audio features say which categories sound in each second?

The ``tiny`` feature preset's audio features are a parameter-free log-mel summary: per
0.96 s window, the mean and the standard deviation over time of 64 log-mel bands (128
numbers; :mod:`refavs.features.audio.logmel`). Ref-AVS Synth renders an event of second ``t``
inside window ``t`` and records in scenes.jsonl which objects sound in which seconds and how
loud. This probe checks that window ``t``'s features carry that information, linearly:

- labels per second of each clip (media folder): the multi-hot set of categories sounding in
  it, and the category of its loudest sounding object (``level_db``; seconds where objects
  of different categories tie for loudest, or where nothing sounds, have none);
- features: refavs' own audio featurizer (``build_audio_featurizer(get_feature_config("tiny").audio)``,
  the one ``refavs features extract`` caches), window ``t`` for second ``t``;
- probes: logistic regressions on standardised features, trained on train (full batch,
  L-BFGS, a little L2): one-vs-rest for "which categories sound", softmax for "the loudest";
- figures on val: mean average precision over categories (AP computed here with numpy) and
  the accuracy of the loudest category over the seconds that have one. ``chance_mAP`` is the
  mean positive rate (what random scores give).

::

    .venv/bin/python benchmarks/audio_probe.py                       # generates Synth small (train + val)
    .venv/bin/python benchmarks/audio_probe.py --preset medium
    .venv/bin/python benchmarks/audio_probe.py --data-dir data/synth-small

The last line printed is one JSON object with ``mAP``, ``loudest_acc``, ``n_train_seconds``,
``n_val_seconds``, ``seconds`` (wall time of the whole run) and a few details.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

NUM_SECONDS = 10
"""Seconds (and audio windows) per clip."""


@dataclass
class SecondLabels:
    """Per-second labels of a split's clips.

    Attributes:
        folders: the media folders, in scenes.jsonl order.
        sounding: ``[clips, 10, categories]`` bool, which categories sound in each second.
        loudest: ``[clips, 10]`` int, the loudest sounding category's index; -1 when nothing
            sounds or objects of different categories tie for loudest.
    """

    folders: list[str]
    sounding: np.ndarray
    loudest: np.ndarray


def split_categories(data_dir: str | Path, split: str = "train") -> list[str]:
    """Names of the categories the clips of ``split`` may hold (synth.json's table), in table order."""
    from refavs.synth.layout import read_synth_info

    return [c["name"] for c in read_synth_info(data_dir)["categories"] if split in c["splits"]]


def second_labels(data_dir: str | Path, split: str, categories: Sequence[str]) -> SecondLabels:
    """The labels of every second of every clip of ``split``, from scenes.jsonl."""
    from refavs.synth.layout import read_scenes

    index = {name: i for i, name in enumerate(categories)}
    records = [r for r in read_scenes(data_dir) if r["split"] == split]
    sounding = np.zeros((len(records), NUM_SECONDS, len(categories)), dtype=bool)
    loudest = np.full((len(records), NUM_SECONDS), -1, dtype=np.int64)
    for n, rec in enumerate(records):
        for t in range(NUM_SECONDS):
            heard = [(o["audio"]["level_db"], index[o["visual"]["category"]])
                     for o in rec["objects"] if t in o["audio"]["seconds"]]
            if not heard:
                continue
            for _, c in heard:
                sounding[n, t, c] = True
            top = max(level for level, _ in heard)
            winners = {c for level, c in heard if level == top}
            if len(winners) == 1:
                loudest[n, t] = winners.pop()
    return SecondLabels([r["folder"] for r in records], sounding, loudest)


def audio_features(data_dir: str | Path, folders: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """``[clips, 10, 128]`` float32: the ``tiny`` preset's audio features of each media folder's audio.wav."""
    import torch

    from refavs.data.layout import DatasetLayout
    from refavs.features.audio.encoder import build_audio_featurizer
    from refavs.features.config import get_feature_config

    layout = DatasetLayout(Path(data_dir))
    featurizer = build_audio_featurizer(get_feature_config("tiny").audio)
    out = []
    with torch.no_grad():
        for i in range(0, len(folders), batch_size):
            paths = [layout.audio(f) for f in folders[i:i + batch_size]]
            out.append(featurizer.embed_files(paths).numpy())
    feats = np.concatenate(out) if out else np.zeros((0, NUM_SECONDS, 128), dtype=np.float32)
    if feats.shape[1] != NUM_SECONDS:
        raise ValueError(f"expected {NUM_SECONDS} audio windows per clip, got {feats.shape[1]}")
    return feats


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array minus the train mean, over the train standard deviation (per feature)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def fit_linear(x: np.ndarray, y: np.ndarray, multilabel: bool, classes: int | None = None, l2: float = 1e-3,
               steps: int = 200):
    """A logistic regression ``x [N, D] -> y``: ``[N, C]`` 0/1 (one-vs-rest) or ``[N]`` class indices (softmax,
    ``classes`` outputs; the largest index + 1 when None).

    Full-batch L-BFGS on the mean loss plus ``l2 * ||W||^2``; returns ``(W [D, C], b [C])`` as numpy.
    """
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    if multilabel:
        yt = torch.as_tensor(y, dtype=torch.float64)
        classes = yt.shape[1]
    else:
        yt = torch.as_tensor(y, dtype=torch.long)
        classes = classes or (int(yt.max()) + 1 if len(yt) else 1)
    w = torch.zeros(xt.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = xt @ w + b
        if multilabel:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt)
        else:
            loss = torch.nn.functional.cross_entropy(logits, yt)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: the mean, over its positives, of the precision at each positive's rank (NaN without positives).

    Ties are broken against the positives (a tied negative ranks first), so a constant score
    gets the positive rate's worth of AP rather than a lucky ordering.
    """
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.lexsort((labels, -np.asarray(scores, dtype=np.float64)))   # by score desc, negatives first on ties
    hits = labels[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, positives + 1) / ranks))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of :func:`average_precision` over the classes (columns) that have a positive."""
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def probe(train_x: np.ndarray, train: SecondLabels, val_x: np.ndarray, val: SecondLabels,
          shuffle_seed: int | None = None) -> dict:
    """Train both probes on train seconds, score them on val seconds.

    ``train_x`` and ``val_x`` are ``[clips, 10, D]``. With ``shuffle_seed``, the train labels
    are permuted across seconds first (a control: the figures must fall to chance).
    """
    xtr = train_x.reshape(-1, train_x.shape[-1])
    xva = val_x.reshape(-1, val_x.shape[-1])
    xtr, xva = standardise(xtr, xva)
    ytr = train.sounding.reshape(-1, train.sounding.shape[-1])
    yva = val.sounding.reshape(-1, val.sounding.shape[-1])
    ltr, lva = train.loudest.reshape(-1), val.loudest.reshape(-1)
    if shuffle_seed is not None:
        perm = np.random.default_rng(shuffle_seed).permutation(len(xtr))
        ytr, ltr = ytr[perm], ltr[perm]
    w, b = fit_linear(xtr, ytr.astype(np.float64), multilabel=True)
    m_ap = mean_average_precision(xva @ w + b, yva)
    keep_tr, keep_va = ltr >= 0, lva >= 0
    wl, bl = fit_linear(xtr[keep_tr], ltr[keep_tr], multilabel=False, classes=ytr.shape[1])
    pred = np.argmax(xva[keep_va] @ wl + bl, axis=1)
    acc = float(np.mean(pred == lva[keep_va])) if keep_va.any() else float("nan")
    return {"mAP": m_ap, "loudest_acc": acc, "chance_mAP": float(np.mean(yva.mean(axis=0)[yva.any(axis=0)])),
            "n_train_seconds": int(len(xtr)), "n_val_seconds": int(len(xva)),
            "n_val_loudest_seconds": int(keep_va.sum())}


def run(data_dir: str | Path, train_split: str = "train", eval_split: str = "val", shuffle_control: bool = False,
        log=print) -> dict:
    """Labels and features of both splits, then :func:`probe`; the figures, plus feature-extraction time.

    With ``shuffle_control``, also ``shuffled_mAP`` and ``shuffled_loudest_acc``: the probes
    trained on labels shuffled across seconds (near chance when the probe is honest).
    """
    categories = split_categories(data_dir, train_split)
    train = second_labels(data_dir, train_split, categories)
    val = second_labels(data_dir, eval_split, categories)
    if not train.folders or not val.folders:
        raise SystemExit(f"{data_dir}: no {train_split} or no {eval_split} clips in scenes.jsonl")
    started = time.perf_counter()
    train_x = audio_features(data_dir, train.folders)
    val_x = audio_features(data_dir, val.folders)
    features_s = time.perf_counter() - started
    log(f"features of {len(train.folders)} {train_split} + {len(val.folders)} {eval_split} clips "
        f"in {features_s:.1f} s; {len(categories)} categories")
    result = probe(train_x, train, val_x, val)
    if shuffle_control:
        control = probe(train_x, train, val_x, val, shuffle_seed=0)
        result["shuffled_mAP"], result["shuffled_loudest_acc"] = control["mAP"], control["loudest_acc"]
    result["features_seconds"] = round(features_s, 2)
    result["categories"] = len(categories)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="a Ref-AVS Synth dataset (default: generate one)")
    parser.add_argument("--preset", default="small", help="Synth preset to generate (default small; "
                                                           "only its train and val clips are made)")
    parser.add_argument("--seed", type=int, default=0, help="Synth seed when generating (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="generator processes")
    parser.add_argument("--out", type=Path, help="where to generate (default: a temporary folder, removed after)")
    parser.add_argument("--shuffle-control", action="store_true",
                        help="also train on labels shuffled across seconds and report that mAP (must be near chance)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tmp = None
    data_dir = args.data_dir
    generated = None
    if data_dir is None:
        from refavs.synth.generate import generate
        from refavs.synth.presets import get_preset

        spec = get_preset(args.preset)
        spec = spec.with_counts(test_s=0, test_u=0, test_n=0)   # train and val clips are those of the full preset
        if args.out is None:
            tmp = tempfile.TemporaryDirectory(prefix="audio-probe-")
            data_dir = Path(tmp.name) / "data"
        else:
            data_dir = args.out
        summary = generate(data_dir, seed=args.seed, preset=spec, workers=args.workers, force=args.out is not None)
        generated = round(summary.seconds, 2)
        print(f"generated Synth {spec.name} train + val (seed {args.seed}) in {summary.seconds:.1f} s", file=sys.stderr)
    try:
        result = run(data_dir, shuffle_control=args.shuffle_control, log=lambda m: print(m, file=sys.stderr))
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {"mAP": round(result["mAP"], 4), "loudest_acc": round(result["loudest_acc"], 4),
              "n_train_seconds": result["n_train_seconds"], "n_val_seconds": result["n_val_seconds"],
              "seconds": round(time.perf_counter() - started, 2),
              **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()
                 if k not in ("mAP", "loudest_acc", "n_train_seconds", "n_val_seconds")},
              "generate_seconds": generated, "data_dir": None if tmp is not None else str(data_dir),
              "preset": args.preset if args.data_dir is None else None}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
