"""Plain-text tables of scores, as ``refavs score`` prints them."""

from __future__ import annotations

from refavs.scoring.cues import CUE_TYPES
from refavs.scoring.score import NEEDS_AUDIO, ScoreReport


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(report: ScoreReport, title: str | None = None) -> str:
    """The per-split table (J, F, S), the Mix line and the per-cue J / F table."""
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
    return "\n".join(lines)
