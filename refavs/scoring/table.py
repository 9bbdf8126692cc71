"""Plain-text tables of scores, as ``refavs score`` prints them."""

from __future__ import annotations

from refavs.scoring.cues import CUE_TYPES
import math

from refavs.scoring.score import CLAUSE_KINDS, NEEDS_AUDIO, NULL_KINDS, ScoreReport


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _names(present: set[str], order) -> list[str]:
    return [n for n in order if n in present] + sorted(present - set(order))


def _group_table(report: ScoreReport, attribute: str, order, title: str, first: str, cell, width: int) -> list[str]:
    """One row per group name, one column per split that has such groups; ``cell(result)`` fills it."""
    splits = {name: getattr(score, attribute) for name, score in report.splits.items() if getattr(score, attribute)}
    if not splits:
        return []
    names = _names({g for groups in splits.values() for g in groups}, order)
    column = max(width, *(len(s) for s in splits))
    label = max(len(first), *(len(n) for n in names))
    lines = ["", title, f"{first:<{label}} " + " ".join(f"{s:>{column}}" for s in splits)]
    for name in names:
        cells = [cell(groups[name]) if name in groups else "-" for groups in splits.values()]
        lines.append(f"{name:<{label}} " + " ".join(f"{c:>{column}}" for c in cells))
    return lines


def format_report(report: ScoreReport, title: str | None = None) -> str:
    """The per-split table (J, F, S), the Mix line, the per-cue J / F table, J per clause kind
    and the null rows per kind (S, empty share); a table without any group is left out."""
    lines = [] if title is None else [title]
    header = f"{'split':<8} {'expr':>6} {'frames':>7} {'J':>7} {'F':>7} {'S':>7}"
    lines += [header, "-" * len(header)]
    for name, score in report.splits.items():
        r = score.result
        f_value = r.F if r.n_frames_with_object else None
        lines.append(f"{name:<8} {r.n_expressions:>6} {r.n_frames:>7} {_f(r.J):>7} {_f(f_value):>7} {_f(r.S):>7}")
    mix = report.mix
    if mix is not None:
        lines.append(f"{'Mix':<8} {'':>6} {'':>7} {_f(mix['J']):>7} {_f(mix['F']):>7}")
    lines.append(f"(aggregation: {report.aggregation}; S = sqrt(fraction of pixels > 0.5), "
                 "the headline for test_n, lower is better; F is n/a without ground-truth objects)")
    missing = sum(s.n_missing for s in report.splits.values())
    if missing:
        lines.append(f"{missing} expression(s) had no prediction and were scored as empty masks")
    present = {c for score in report.splits.values() for c in score.cues}
    cue_names = [c for c in (*CUE_TYPES, NEEDS_AUDIO) if c in present]
    cue_names += sorted(present - set(cue_names))
    if cue_names:
        lines += ["", "J / F per cue type (n = expressions)"]
        width = 20
        lines.append(f"{'split':<8} " + " ".join(f"{c:>{width}}" for c in cue_names))
        for name, score in report.splits.items():
            cells = []
            for cue in cue_names:
                r = score.cues.get(cue)
                if r is None:
                    cells.append(f"{'-':>{width}}")
                else:
                    f_value = _f(r.F, 3) if r.n_frames_with_object else "n/a"
                    cells.append(f"{f'{r.J:.3f} / {f_value} (n={r.n_expressions})':>{width}}")
            lines.append(f"{name:<8} " + " ".join(cells))
    lines += _group_table(report, "clauses", CLAUSE_KINDS, "J per clause (n = expressions)", "clause",
                          lambda r: f"{r.J:.3f} ({r.n_expressions})", 12)
    lines += _group_table(report, "null_kinds", NULL_KINDS,
                          "null rows per kind: S (lower is better) / empty share (higher is better) (n = expressions)",
                          "kind", lambda r: f"{r.S:.3f} / {_f(r.empty_share, 3)} ({r.n_expressions})", 22)
    return "\n".join(lines)
