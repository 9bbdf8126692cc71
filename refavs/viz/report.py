"""A picture of an evaluation report: a per-split table and per-cue bar charts.

Every report JSON that refavs writes names its kind in a ``kind`` field, and
:func:`parse_report` reads the three kinds by that field alone (:data:`READERS`):

- ``refavs-score`` (:data:`~refavs.scoring.report_kinds.SCORE_KIND`): ``refavs score --json`` and
  ``refavs eval --json`` with several splits (both print
  :meth:`ScoreReport.to_dict <refavs.scoring.score.ScoreReport.to_dict>`):
  ``{"kind", "aggregation", "splits": {name: split}, "Mix_J", "Mix_F"}``;
- ``refavs-split-score`` (:data:`~refavs.scoring.report_kinds.SPLIT_SCORE_KIND`): the same with one
  split, flat: ``{"kind", "split", "aggregation", "J", "F", "S", ..., "cues"}``;
- ``refavs-demo-report`` (:data:`~refavs.scoring.report_kinds.DEMO_REPORT_KIND`): the main job's ``report.json``
  (:meth:`DemoReport.to_dict <refavs.demo.DemoReport.to_dict>`): ``{"kind", "splits", "mix",
  "needs_audio", "without_audio", "baseline_every_object", "goals", ...}``.

A JSON object of another kind is refused with a :class:`ReportError` naming the file. Files
written without the field are read by one fallback, :func:`kind_without_field`: each kind has
one key that only it holds at its top level (:data:`UNMARKED_KEYS`).

A split is ``{"J", "F", "S", "n_expressions", "n_frames", "n_frames_with_object", "cues":
{cue: {...}}}``. The figure (matplotlib, Agg canvas) shows the per-split table (expressions,
frames, J, F, S, and the Mix row), J and F per cue type with one bar per split (test_n, whose
J only counts background pixels, is left out of the bars when other splits are there: its
headline is S, in the table), and for the main job's report the goals and a chart of J with
the audio, with the audio features zeroed and of the every-object baseline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from refavs.scoring.cues import CUE_TYPES
from refavs.scoring.report_kinds import DEMO_REPORT_KIND as REPORT_KIND
from refavs.scoring.report_kinds import SCORE_KIND, SPLIT_SCORE_KIND
from refavs.viz import new_figure, save_figure

ReportKind = Literal["score", "demo"]
"""The figure's layout: ``score`` (a table and per-cue charts) or ``demo`` (with goals and ablations)."""

SPLIT_COLOURS: dict[str, str] = {"train": "#2ca02c", "val": "#8c8c8c", "test_s": "#1f77b4",
                                 "test_u": "#ff7f0e", "test_n": "#9467bd"}
"""Bar colour of each split."""

RUN_COLOURS: dict[str, str] = {"model": "#3557a8", "audio zeroed": "#9db4e0", "text zeroed": "#e0a85c",
                               "every-object baseline": "#b8b8b8"}
"""Bar colour of each run in the with/without-audio (and text) chart of the main job's report."""

NULL_SPLIT, NULL_CUE, NEEDS_AUDIO = "test_n", "null", "needs_audio"
_SPLIT_KEYS = ("J", "F", "S", "n_expressions", "n_frames")


NOTES = ("J: mean IoU (p > 0.4);  F: F-measure (beta^2 = 0.3), n/a without objects;  S: sqrt of the share of "
         "pixels predicted (p > 0.5), the test_n headline, lower is better;  Mix: mean of test_s and test_u")
"""The line under the title that says what the numbers are."""


class ReportError(ValueError):
    """The file is missing, not JSON, or not a report of a kind this module draws; the message
    names the file."""


@dataclass(frozen=True)
class ReportStyle:
    """Sizes of the report figure. The PNG is ``width_in * dpi`` x ``height_in(kind) * dpi`` pixels.

    Attributes:
        dpi: pixels per inch of the PNG.
        width_in: figure width in inches.
        table_row_in: height of one table row, inches.
        chart_in: height of the per-cue charts, inches.
        audio_chart_in: height of the with/without-audio chart (main job's report only), inches.
    """

    dpi: int = 100
    width_in: float = 15.0
    table_row_in: float = 0.27
    chart_in: float = 3.4
    audio_chart_in: float = 3.0

    def __post_init__(self) -> None:
        if self.dpi < 10 or self.width_in < 8:
            raise ValueError("ReportStyle needs dpi >= 10 and width_in >= 8")

    @property
    def table_in(self) -> float:
        """Height kept for a table of a header, five splits and the Mix row."""
        return 7 * self.table_row_in

    def height_in(self, kind: ReportKind) -> float:
        """Figure height in inches: depends on the style and the report's kind only."""
        base = 1.35 + self.table_in + 0.6 + self.chart_in + 0.75
        return base + (self.audio_chart_in + 0.9 if kind == "demo" else 0.0)

    def pixels(self, kind: ReportKind) -> tuple[int, int]:
        """(width, height) of the PNG in pixels for a report of ``kind``."""
        return round(self.width_in * self.dpi), round(self.height_in(kind) * self.dpi)


@dataclass
class ReportData:
    """A report in one shape, whatever JSON it came from.

    Attributes:
        kind: the layout: ``score`` (``refavs score --json`` / ``refavs eval --json``) or ``demo``
            (the main job's ``report.json``).
        source: where it was read from (for titles and errors).
        splits: split name -> ``{"J", "F", "S", "n_expressions", "n_frames", ..., "cues"}``.
        aggregation: ``dataset`` or ``reference`` when the JSON says.
        mix: ``{"J", "F"}``, the mean of test_s and test_u, when both are there.
        without_audio: the main job's scores with the audio features zeroed (split -> split dict).
        without_text: the main job's test-split scores with the text features zeroed.
        baseline: the main job's every-object baseline (split -> split dict).
        needs_audio: the main job's ``{"J", "J_without_audio", "n_expressions"}`` on test_s + test_u.
        goals: the main job's goals (name -> ``{"goal", "lower_is_better", "value", "met"}``).
        details: a line about the run (data, steps, minutes), or empty.
    """

    kind: ReportKind
    source: str
    splits: dict[str, dict]
    aggregation: str | None = None
    mix: dict | None = None
    without_audio: dict[str, dict] = field(default_factory=dict)
    without_text: dict[str, dict] = field(default_factory=dict)
    baseline: dict[str, dict] = field(default_factory=dict)
    needs_audio: dict | None = None
    goals: dict[str, dict] = field(default_factory=dict)
    details: str = ""


def _check_split(name: str, split, source: str) -> dict:
    if not isinstance(split, dict) or any(k not in split for k in _SPLIT_KEYS):
        raise ReportError(f"{source}: split {name!r} lacks {', '.join(_SPLIT_KEYS)} (not a refavs report)")
    if not isinstance(split.get("cues", {}), dict):
        raise ReportError(f"{source}: split {name!r} has a malformed 'cues' entry")
    return split


def _check_splits(splits, source: str, what: str = "splits") -> dict[str, dict]:
    if not isinstance(splits, dict):
        raise ReportError(f"{source}: {what!r} is not an object")
    return {name: _check_split(name, s, source) for name, s in splits.items()}


def _mix(splits: dict[str, dict], j, f) -> dict | None:
    if j is not None and f is not None:
        return {"J": float(j), "F": float(f)}
    if "test_s" in splits and "test_u" in splits:
        return {k: (splits["test_s"][k] + splits["test_u"][k]) / 2 for k in ("J", "F")}
    return None


def _read_score(data: dict, source: str) -> ReportData:
    splits = _check_splits(data.get("splits"), source)
    return ReportData(kind="score", source=source, splits=splits, aggregation=data.get("aggregation"),
                      mix=_mix(splits, data.get("Mix_J"), data.get("Mix_F")))


def _read_split_score(data: dict, source: str) -> ReportData:
    name = data.get("split")
    if not isinstance(name, str):
        raise ReportError(f"{source}: a {SPLIT_SCORE_KIND} without a 'split' name")
    return ReportData(kind="score", source=source, splits={name: _check_split(name, data, source)},
                      aggregation=data.get("aggregation"))


def _read_demo(data: dict, source: str) -> ReportData:
    splits = _check_splits(data.get("splits"), source)
    mix = data.get("mix") or {}
    train = data.get("train") or {}
    details = [f"data {data['data_dir']}" if data.get("data_dir") else "",
               f"{train['steps']} training steps" if "steps" in train else "",
               f"{data['minutes']:.1f} minutes end to end" if isinstance(data.get("minutes"), (int, float)) else ""]
    goals = data.get("goals")
    return ReportData(
        kind="demo", source=source, splits=splits, aggregation="dataset",
        mix=_mix(splits, mix.get("J"), mix.get("F")),
        without_audio=_check_splits(data.get("without_audio") or {}, source, "without_audio"),
        without_text=_check_splits(data.get("without_text") or {}, source, "without_text"),
        baseline=_check_splits(data.get("baseline_every_object") or {}, source, "baseline_every_object"),
        needs_audio=data.get("needs_audio") if isinstance(data.get("needs_audio"), dict) else None,
        goals=goals if isinstance(goals, dict) else {},
        details=";  ".join(d for d in details if d))


READERS: dict[str, Callable[[dict, str], ReportData]] = {
    SCORE_KIND: _read_score, SPLIT_SCORE_KIND: _read_split_score, REPORT_KIND: _read_demo}
"""The reader of each report kind, by the JSON's ``kind`` field."""

UNMARKED_KEYS: dict[str, str] = {"goals": REPORT_KIND, "Mix_J": SCORE_KIND, "split": SPLIT_SCORE_KIND}
"""For files written without a ``kind`` field: the top-level key that marks each kind."""


def kind_without_field(data: dict) -> str | None:
    """The kind of a report written without a ``kind`` field: that of the first key of
    :data:`UNMARKED_KEYS` it holds, or None."""
    return next((kind for key, kind in UNMARKED_KEYS.items() if key in data), None)


def parse_report(data, source: str = "<report>") -> ReportData:
    """Read a report's JSON object by its ``kind`` field (see the module docstring) into :class:`ReportData`.

    Raises:
        ReportError: ``data`` is not an object, its kind is none of :data:`READERS`, or it is
            malformed; the message names ``source``.
    """
    expected = ", ".join(READERS)
    if not isinstance(data, dict):
        raise ReportError(f"{source}: a JSON {type(data).__name__}, not a report object (kind {expected})")
    kind = data["kind"] if "kind" in data else kind_without_field(data)
    if kind is None:
        raise ReportError(f"{source}: not a report this command draws: no 'kind' field, and none of the keys "
                          f"of a report (found keys: {', '.join(list(data)[:8]) or 'none'}); expected kind "
                          f"{expected}")
    if not isinstance(kind, str) or kind not in READERS:
        raise ReportError(f"{source}: not a report this command draws: kind {kind!r}; expected {expected}")
    return READERS[kind](data, source)


def read_report(path: str | Path) -> ReportData:
    """Read a report JSON file (see :func:`parse_report`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not readable as JSON ({err})") from None
    return parse_report(data, str(path))


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _f_of(split: dict):
    """F, or None when no frame has an object (F is then undefined, scored 0)."""
    return split["F"] if split.get("n_frames_with_object", 1) else None


def _split_table(ax, report: ReportData, style: ReportStyle) -> None:
    demo = report.kind == "demo"
    header = ["split", "expressions", "frames", "J", "F", "S"]
    if demo:
        header += ["J audio zeroed", "J text zeroed", "J every-object"]
    rows = []
    for name, s in report.splits.items():
        row = [name, str(s["n_expressions"]), str(s["n_frames"]), _number(s["J"]), _number(_f_of(s)), _number(s["S"])]
        if demo:
            row += [_number(runs.get(name, {}).get("J")) for runs in
                    (report.without_audio, report.without_text, report.baseline)]
        rows.append(row)
    if report.mix is not None:
        row = ["Mix", "", "", _number(report.mix["J"]), _number(report.mix["F"]), ""]
        if demo:
            row += [_mix_of(report.without_audio), _mix_of(report.without_text), _mix_of(report.baseline)]
        rows.append(row)
    _table(ax, header, rows, style, bold_last=report.mix is not None)
    ax.set_title("scores per split", fontsize=10, loc="left", pad=4)


def _mix_of(splits: dict[str, dict]) -> str:
    if "test_s" in splits and "test_u" in splits:
        return _number((splits["test_s"]["J"] + splits["test_u"]["J"]) / 2)
    return ""


def _table(ax, header: list[str], rows: list[list[str]], style: ReportStyle, bold_last: bool = False,
           colours: dict[tuple[int, int], str] | None = None) -> None:
    """A table filling the top of ``ax`` with one ``style.table_row_in`` row per line."""
    ax.axis("off")
    height_in = ax.get_position().height * ax.figure.get_figheight()
    share = min(1.0, (len(rows) + 1) * style.table_row_in / height_in)
    chars = [max(len(str(line[c])) for line in [header, *rows]) + 3 for c in range(len(header))]
    table = ax.table(cellText=rows, colLabels=header, cellLoc="center", bbox=[0.0, 1.0 - share, 1.0, share],
                     colWidths=[n / sum(chars) for n in chars])
    table.auto_set_font_size(False)
    table.set_fontsize(9.5)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d0d0")
        if r == 0:
            cell.set_facecolor("#eef1f6")
            cell.set_text_props(fontweight="bold")
        elif r % 2 == 0:
            cell.set_facecolor("#fafafa")
        if bold_last and r == len(rows):
            cell.set_text_props(fontweight="bold")
        if colours and (r, c) in colours:
            cell.get_text().set_color(colours[(r, c)])
            cell.set_text_props(fontweight="bold")


def _goal_table(ax, report: ReportData, style: ReportStyle) -> None:
    rows, colours = [], {}
    for i, (name, g) in enumerate(report.goals.items(), start=1):
        sign = "<=" if g.get("lower_is_better") else ">="
        rows.append([name, f"{sign} {g.get('goal')}", _number(g.get("value")), "yes" if g.get("met") else "no"])
        colours[(i, 3)] = "#1a7f37" if g.get("met") else "#c62828"
    _table(ax, ["goal", "target", "reached", "met"], rows, style, colours=colours)
    ax.set_title("goals of the main job", fontsize=10, loc="left", pad=4)


def cue_order(splits: dict[str, dict]) -> list[str]:
    """Cue groups present, in the scorer's table order (cue types, then needs_audio, then others)."""
    present = {c for s in splits.values() for c in s.get("cues", {})}
    names = [c for c in (*CUE_TYPES, NEEDS_AUDIO) if c in present]
    return names + sorted(present - set(names))


def _bar_splits(report: ReportData) -> list[str]:
    """Splits shown in the per-cue bars: all but test_n unless it is alone."""
    names = [s for s in report.splits if s != NULL_SPLIT]
    return names or list(report.splits)


def _bars(ax, groups: list[str], series: dict[str, list], colours: dict[str, str], ylabel: str,
          title: str) -> None:
    """Grouped bars: one group per ``groups`` entry, one bar per series; None = no bar ("n/a")."""
    from matplotlib.patches import Patch  # pulls in matplotlib

    count = max(len(series), 1)
    width = 0.8 / count
    label_size = 8 if count <= 3 else 7
    for k, (name, values) in enumerate(series.items()):
        xs = [g + (k - (count - 1) / 2) * width for g in range(len(groups))]
        for x, v in zip(xs, values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=label_size - 1, color="#777777",
                        rotation=90 if count > 3 else 0)
                continue
            ax.bar(x, v, width=width * 0.92, color=colours.get(name, "#777777"))
            ax.text(x, v + 0.012, f"{v:.2f}", ha="center", va="bottom", fontsize=label_size,
                    rotation=90 if count > 3 else 0)
    handles = [Patch(facecolor=colours.get(name, "#777777"), label=name) for name in series]
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=9)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylim(0, 1.12)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if handles:
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper right", ncol=len(handles))


def _cue_chart(ax, report: ReportData, metric: str) -> None:
    splits = _bar_splits(report)
    chosen = {s: report.splits[s] for s in splits}
    cues = [c for c in cue_order(chosen) if c != NULL_CUE or splits == [NULL_SPLIT]]
    series = {}
    for s in splits:
        values = []
        for cue in cues:
            group = report.splits[s].get("cues", {}).get(cue)
            values.append(None if group is None else (group[metric] if metric != "F" else _f_of(group)))
        series[s] = values
    labels = []
    for cue in cues:
        counts = "/".join(str(report.splits[s].get("cues", {}).get(cue, {}).get("n_expressions", "-")) for s in splits)
        labels.append(f"{cue}\n(n = {counts})")
    left_out = " (test_n left out: see S)" if NULL_SPLIT in report.splits and splits != [NULL_SPLIT] else ""
    _bars(ax, labels or ["(no cue groups)"], series if cues else {}, SPLIT_COLOURS, metric,
          f"{metric} per cue type, per split{left_out}")


def _pooled(splits: dict[str, dict], cue: str) -> float | None:
    """Frame-weighted mean J of a cue group over test_s and test_u (as the main job pools needs_audio)."""
    groups = [splits[s]["cues"].get(cue) for s in ("test_s", "test_u") if s in splits]
    groups = [g for g in groups if g]
    frames = sum(g["n_frames"] for g in groups)
    return sum(g["J"] * g["n_frames"] for g in groups) / frames if frames else None


def _audio_chart(ax, report: ReportData) -> None:
    runs = {"model": report.splits, "audio zeroed": report.without_audio, "text zeroed": report.without_text,
            "every-object baseline": report.baseline}
    runs = {name: splits for name, splits in runs.items() if splits}
    groups, series = [], {name: [] for name in runs}
    for s in report.splits:
        if s == NULL_SPLIT:
            continue
        groups.append(f"{s}\nJ")
        for name, splits in runs.items():
            series[name].append(splits.get(s, {}).get("J"))
    if report.mix is not None:
        groups.append("Mix\nJ")
        for name, splits in runs.items():
            both = "test_s" in splits and "test_u" in splits
            series[name].append((splits["test_s"]["J"] + splits["test_u"]["J"]) / 2 if both else None)
    na = report.needs_audio or {}
    groups.append(f"needs_audio J\n(test_s + test_u, n = {na.get('n_expressions', '?')})")
    for name, splits in runs.items():
        value = {"model": na.get("J"), "audio zeroed": na.get("J_without_audio")}.get(name, _pooled(splits, NEEDS_AUDIO))
        series[name].append(value)
    if NULL_SPLIT in report.splits:
        groups.append("test_n S\n(lower is better)")
        for name, splits in runs.items():
            series[name].append(splits.get(NULL_SPLIT, {}).get("S"))
    gap = ""
    if isinstance(na.get("J"), (int, float)) and isinstance(na.get("J_without_audio"), (int, float)):
        gap = f": needs_audio J gap {na['J'] - na['J_without_audio']:+.3f}"
    _bars(ax, groups, series, RUN_COLOURS, "J (S for test_n)",
          f"with the audio, with the audio (or text) features zeroed, and the every-object baseline "
          f"(look, don't listen){gap}")


def report_figure(report: ReportData, style: ReportStyle = ReportStyle()):
    """The report's figure (a ``matplotlib.figure.Figure`` with an Agg canvas)."""
    fig = new_figure(style.width_in, style.height_in(report.kind), style.dpi)
    width, height = (float(v) for v in fig.get_size_inches())

    def axes(left_in: float, bottom_in: float, w_in: float, h_in: float):
        return fig.add_axes([left_in / width, bottom_in / height, w_in / width, h_in / height])

    what = {"demo": "the main job's report.json (refavs demo)",
            "score": "refavs score / refavs eval --json"}[report.kind]
    fig.text(0.6 / width, (height - 0.25) / height, f"Evaluation report: {Path(report.source).name}",
             fontsize=15, fontweight="bold", va="top")
    facts = [what, f"aggregation {report.aggregation}" if report.aggregation else "", report.details]
    fig.text(0.6 / width, (height - 0.62) / height, "   \u00b7   ".join(f for f in facts if f), fontsize=9.5,
             va="top", color="#333333")
    fig.text(0.6 / width, (height - 0.86) / height, NOTES, fontsize=8.5, va="top", color="#555555")

    table_top = height - 1.35
    inner = width - 1.2
    if report.kind == "demo":
        _split_table(axes(0.6, table_top - style.table_in, inner * 0.62, style.table_in), report, style)
        _goal_table(axes(0.6 + inner * 0.66, table_top - style.table_in, inner * 0.34, style.table_in), report, style)
    else:
        _split_table(axes(0.6, table_top - style.table_in, inner * 0.62, style.table_in), report, style)

    chart_bottom = table_top - style.table_in - 0.6 - style.chart_in
    half = (inner - 0.8) / 2
    _cue_chart(axes(0.6, chart_bottom, half, style.chart_in), report, "J")
    _cue_chart(axes(0.6 + half + 0.8, chart_bottom, half, style.chart_in), report, "F")
    if report.kind == "demo":
        _audio_chart(axes(0.6, chart_bottom - 0.9 - style.audio_chart_in, inner, style.audio_chart_in), report)
    return fig


def render_report(report: str | Path | dict | ReportData, out: str | Path,
                  style: ReportStyle = ReportStyle()) -> Path:
    """Draw a report (a JSON file, its parsed object, or :class:`ReportData`) into the PNG ``out``.

    Raises:
        ReportError: the file is missing, not JSON, or not of a kind :func:`parse_report` reads.
    """
    if isinstance(report, ReportData):
        data = report
    elif isinstance(report, dict):
        data = parse_report(report)
    else:
        data = read_report(report)
    return save_figure(report_figure(data, style), out)
