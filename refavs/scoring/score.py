"""Scoring stored predictions against a dataset's ground truth (the API behind ``refavs score``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
from tqdm import tqdm

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.masks import MaskResize, load_clip_masks
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.scoring.cues import CUE_TYPES, classify_cues
from refavs.scoring.predictions import load_prediction, missing_predictions
from refavs.scoring.report_kinds import SCORE_KIND, SPLIT_SCORE_KIND

CueSource = Literal["auto", "column", "keywords"]

NEEDS_AUDIO = "needs_audio"
"""The group of expressions that cannot be resolved without hearing the clip (Ref-AVS Synth)."""

CLAUSE_KINDS: tuple[str, ...] = ("none", "sounding", "silent", "keeps_sounding", "stops_sounding",
                                  "starts_sounding", "appears", "leaves", "loudest", "quietest", "lowest_pitch",
                                  "highest_pitch", "first_sound", "last_sound", "relation")
"""The clause kinds of the metadata's ``clause`` column (Ref-AVS Synth), in the order tables list
them; any other value is listed after them, sorted."""

NULL_KINDS: tuple[str, ...] = ("muted", "changed", "condition", "absent", "null_m", "null_c")
"""Why a null row refers to nothing, in the order tables list them: the ``null_kind`` column of
Ref-AVS Synth, else the media folder's prefix of the real benchmark (``null_m``, ``null_c``)."""

SEEN_SPLIT, UNSEEN_SPLIT = "test_s", "test_u"
"""The two splits whose mean is the Mix figure."""

"""The ``kind`` field of the ``--json`` object of ``refavs score`` and ``refavs eval``: several
splits (``{"splits", "Mix_J", "Mix_F"}``), or one split, flat (``{"split", "J", "F", ...}``)."""


class MissingPredictionsError(ValueError):
    """Some expressions have no prediction; the message names the first uids and the count."""

    def __init__(self, pred_dir: Path, missing: Sequence[str], shown: int = 5):
        self.missing = list(missing)
        head = ", ".join(self.missing[:shown])
        more = f" and {len(self.missing) - shown} more" if len(self.missing) > shown else ""
        super().__init__(f"{pred_dir}: no prediction for {len(self.missing)} expression(s): {head}{more} "
                         f"(expected {pred_dir}/<uid>/0.png ... {NUM_FRAMES - 1}.png; "
                         f"--allow-missing scores them as empty masks)")


@dataclass
class SplitScore:
    """The score of one split.

    Attributes:
        split: the split's name.
        result: J, F, S and counts over the whole split (a ``refavs.metrics.MetricResult``).
        cues: the same per cue type (only the cue types that occur), and for the
            ``needs_audio`` subset when the metadata marks it (Ref-AVS Synth).
        n_missing: expressions scored as empty masks because their prediction was missing.
        clauses: the same per clause kind (``Expression.clause``; empty without the metadata's
            ``clause`` column).
        null_kinds: the same per kind of null row (``Expression.null_kind``: the ``null_kind``
            column, else the ``null_m`` / ``null_c`` folder prefix); S and the empty share are
            their headline.
    """

    split: str
    result: "MetricResult"  # noqa: F821 (imported lazily with torch)
    cues: dict = field(default_factory=dict)
    n_missing: int = 0
    clauses: dict = field(default_factory=dict)
    null_kinds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "n_missing": self.n_missing,
                "cues": {name: r.to_dict() for name, r in self.cues.items()},
                "clauses": {name: r.to_dict() for name, r in self.clauses.items()},
                "null_kinds": {name: r.to_dict() for name, r in self.null_kinds.items()}}


@dataclass
class ScoreReport:
    """Scores of several splits, with the Mix figure when test_s and test_u are both scored."""

    splits: dict[str, SplitScore]
    aggregation: str

    @property
    def mix(self) -> dict[str, float] | None:
        if SEEN_SPLIT in self.splits and UNSEEN_SPLIT in self.splits:
            seen, unseen = self.splits[SEEN_SPLIT].result, self.splits[UNSEEN_SPLIT].result
            return {"J": (seen.J + unseen.J) / 2, "F": (seen.F + unseen.F) / 2}
        return None

    def to_dict(self) -> dict:
        """The ``--json`` object: flat for one split, ``{"splits": ..., "Mix_J", "Mix_F"}`` for several;
        its ``kind`` (:data:`SPLIT_SCORE_KIND` or :data:`SCORE_KIND`) says which."""
        if len(self.splits) == 1:
            (score,) = self.splits.values()
            return {"kind": SPLIT_SCORE_KIND, "split": score.split, "aggregation": self.aggregation,
                    **score.to_dict()}
        mix = self.mix
        return {"kind": SCORE_KIND, "aggregation": self.aggregation,
                "splits": {name: s.to_dict() for name, s in self.splits.items()},
                "Mix_J": None if mix is None else mix["J"], "Mix_F": None if mix is None else mix["F"]}


def expression_cues(expression: Expression, source: CueSource = "auto") -> tuple[str, ...]:
    """Cue types of one expression: the ``cue`` column when present (Ref-AVS Synth), else keywords."""
    column = expression.extra.get("cue")
    if source == "column" and column is None:
        raise ValueError(f"metadata has no cue column (row {expression.row}); use --cues keywords")
    if source != "keywords" and column is not None:
        tags = {c.strip() for c in column.split(";") if c.strip()}
        return tuple(c for c in CUE_TYPES if c in tags)
    return classify_cues(expression.exp, expression.split)


def cue_groups(expressions: Sequence[Expression], source: CueSource = "auto") -> dict[str, list[int]]:
    """Positions of the expressions of each cue type, and of the ``needs_audio`` subset when the
    metadata has that column (Ref-AVS Synth), for :meth:`RefAVSMetrics.compute_groups`."""
    groups: dict[str, list[int]] = {}
    for index, e in enumerate(expressions):
        for cue in expression_cues(e, source):
            groups.setdefault(cue, []).append(index)
        if e.extra.get("needs_audio", "").strip() == "1":
            groups.setdefault(NEEDS_AUDIO, []).append(index)
    return groups


def _ordered(groups: dict[str, list[int]], order: Sequence[str]) -> dict[str, list[int]]:
    names = [n for n in order if n in groups] + sorted(set(groups) - set(order))
    return {n: groups[n] for n in names}


def clause_groups(expressions: Sequence[Expression]) -> dict[str, list[int]]:
    """Positions of the expressions of each clause kind (``Expression.clause``; rows without one
    are left out), in :data:`CLAUSE_KINDS` order, for :meth:`RefAVSMetrics.compute_groups`."""
    groups: dict[str, list[int]] = {}
    for index, e in enumerate(expressions):
        if e.clause is not None:
            groups.setdefault(e.clause, []).append(index)
    return _ordered(groups, CLAUSE_KINDS)


def null_kind_groups(expressions: Sequence[Expression]) -> dict[str, list[int]]:
    """Positions of the null rows of each kind (``Expression.null_kind``: the ``null_kind``
    column, else the ``null_m-`` / ``null_c-`` folder prefix), in :data:`NULL_KINDS` order."""
    groups: dict[str, list[int]] = {}
    for index, e in enumerate(expressions):
        if e.null_kind is not None:
            groups.setdefault(e.null_kind, []).append(index)
    return _ordered(groups, NULL_KINDS)


def split_score(split: str, metrics: "RefAVSMetrics", expressions: Sequence[Expression],  # noqa: F821
                cue_source: CueSource = "auto") -> SplitScore:
    """The :class:`SplitScore` of an accumulator holding ``expressions`` (in update order): the
    whole split, and per cue type, clause kind and null kind from the same accumulator."""
    return SplitScore(split=split, result=metrics.compute(),
                      cues=metrics.compute_groups(cue_groups(expressions, cue_source)),
                      clauses=metrics.compute_groups(clause_groups(expressions)),
                      null_kinds=metrics.compute_groups(null_kind_groups(expressions)))


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def score_split(data_dir: str | Path, expressions: Sequence[Expression],
                predict: Callable[[Expression], np.ndarray], aggregation: str = "dataset",
                mask_resize: MaskResize = "reference", cue_source: CueSource = "auto",
                batch_clips: int = 8, workers: int = 4, progress: bool = False,
                split: str | None = None,
                truth: Callable[[Expression], np.ndarray] | None = None) -> SplitScore:
    """Score one split's expressions, given a function returning each one's probabilities.

    Args:
        expressions: the split's rows, in metadata order (the order the reference batches in).
        predict: expression -> ``[10, 256, 256]`` float32 probabilities.
        aggregation: ``dataset`` (per frame over the split) or ``reference`` (batches of 4 clips).
        truth: expression -> its ``[10, 256, 256]`` bool ground truth made with ``mask_resize``
            (e.g. from the feature cache's masks); default: read from ``gt_mask``.
    """
    import torch  # pulls in torch

    from refavs.metrics import RefAVSMetrics  # pulls in torch

    layout = DatasetLayout(Path(data_dir))
    metrics = RefAVSMetrics(aggregation=aggregation)

    def load(e: Expression) -> tuple[np.ndarray, np.ndarray]:
        return predict(e), (truth(e) if truth is not None else load_clip_masks(layout, e, MASK_SIZE, mask_resize))

    bar = None
    if progress:
        bar = tqdm(total=len(expressions), desc=f"scoring {split or ''}".strip(), unit="expr", leave=False)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for batch in _batches(list(expressions), batch_clips):
            loaded = list(pool.map(load, batch))
            preds = torch.from_numpy(np.stack([p for p, _ in loaded]))
            masks = torch.from_numpy(np.stack([m for _, m in loaded]))
            metrics.update(preds, masks, logits=False)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    return split_score(split or (expressions[0].split if expressions else ""), metrics, expressions, cue_source)


def check_splits(splits: Iterable[str], aggregation: str = "dataset") -> list[str]:
    """``splits`` without repeats; raises ValueError for an unknown split or aggregation."""
    splits = list(dict.fromkeys(splits))
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {', '.join(bad)}; choose from {', '.join(SPLITS)}")
    if aggregation not in ("dataset", "reference"):
        raise ValueError(f"aggregation must be 'dataset' or 'reference', got {aggregation!r}")
    return splits


def split_rows(data_dir: str | Path, splits: Sequence[str]) -> dict[str, list[Expression]]:
    """The metadata rows of each split, in metadata order; raises ValueError for a split without rows."""
    expressions = read_metadata(data_dir, splits)
    by_split = {s: [e for e in expressions if e.split == s] for s in splits}
    empty_split = [s for s, rows in by_split.items() if not rows]
    if empty_split:
        raise ValueError(f"{data_dir}: no expression of split(s) {', '.join(empty_split)}")
    return by_split


def score_predictions(data_dir: str | Path, splits: Iterable[str], pred_dir: str | Path,
                      aggregation: str = "dataset", allow_missing: bool = False,
                      mask_resize: MaskResize = "reference", cue_source: CueSource = "auto",
                      workers: int = 4, progress: bool = False) -> ScoreReport:
    """Score predictions stored as ``<pred_dir>/<uid>/<frame>.png`` on the given splits.

    Raises:
        MissingPredictionsError: an expression has no prediction and ``allow_missing`` is False
            (checked for every split before anything is scored).
        refavs.data.MediaError: a ground-truth mask or a prediction file is unreadable.
    """
    splits = check_splits(splits, aggregation)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
    by_split = split_rows(data_dir, splits)
    expressions = sorted((e for rows in by_split.values() for e in rows), key=lambda e: e.row)  # metadata order
    missing = missing_predictions(pred_dir, (e.uid for e in expressions))
    if missing and not allow_missing:
        raise MissingPredictionsError(pred_dir, missing)
    missing_set = set(missing)
    empty = np.zeros((NUM_FRAMES, MASK_SIZE, MASK_SIZE), dtype=np.float32)

    def predict(e: Expression) -> np.ndarray:
        return empty if e.uid in missing_set else load_prediction(pred_dir, e.uid)

    report = ScoreReport(splits={}, aggregation=aggregation)
    for split, rows in by_split.items():
        score = score_split(data_dir, rows, predict, aggregation, mask_resize, cue_source,
                            workers=workers, progress=progress, split=split)
        score.n_missing = sum(1 for e in rows if e.uid in missing_set)
        report.splits[split] = score
    return report
