"""Distributions of a Ref-AVS Synth dataset per split (``refavs synth --stats``).

Everything is read from ``scenes.jsonl`` (which holds each expression with its cue tags,
needs_audio flag and target, and each object's drawn area per frame) and ``synth.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from refavs.data.layout import NUM_FRAMES, SPLITS
from refavs.synth.expressions import CLAUSES, CUE_TYPES
from refavs.synth.layout import read_scenes, read_synth_info

AREA_PERCENTILES: tuple[int, ...] = (10, 50, 90)
"""Percentiles of the referred objects' mask area that the table shows."""


@dataclass
class SplitStats:
    """Distributions of one split.

    Attributes:
        clips: clips of the split.
        expressions: expressions (metadata rows).
        needs_audio: expressions with ``needs_audio = 1``.
        twin_ambiguous: needs_audio expressions that the (mono) audio cannot settle either: the
            target has a look-alike (same category, hence the same sound) among the objects that
            fit without the audio, on screen in a second the target sounds in (or the target is
            silent). Hearing the category does not say which of the two it is; see
            :func:`twin_ambiguous`.
        objects_per_clip: number of clips with 1, 2, 3, 4 objects.
        cues: expressions using each cue type (an expression may use several).
        kinds: expressions per meaning kind (clause name or ``relation``).
        categories: expressions per referred category (``null`` for null expressions).
        mask_area: percentiles (keys ``p10``, ``p50``, ``p90``) and ``mean`` of the referred object's
            area, in % of the frame, averaged over the frames it is on screen (non-null expressions).
        empty_frames: % of (expression, frame) pairs whose ground-truth mask is empty.
        null_kinds: null rows per kind (``muted``, ``changed``, ``condition``, ``absent``).
    """

    clips: int = 0
    expressions: int = 0
    needs_audio: int = 0
    twin_ambiguous: int = 0
    objects_per_clip: dict[int, int] = field(default_factory=dict)
    cues: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    mask_area: dict[str, float] = field(default_factory=dict)
    empty_frames: float = 0.0
    null_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def needs_audio_share(self) -> float:
        return self.needs_audio / self.expressions if self.expressions else 0.0


@dataclass
class SynthStats:
    """Distributions of every split of a dataset, with the options it was made with."""

    root: str
    info: dict
    splits: dict[str, SplitStats]

    def to_dict(self) -> dict:
        return {"root": self.root, "seed": self.info.get("seed"), "preset": self.info.get("preset", {}).get("name"),
                "size": self.info.get("size"), "version": self.info.get("version"),
                "splits": {name: {**asdict(s), "needs_audio_share": s.needs_audio_share}
                           for name, s in self.splits.items()}}


def dataset_stats(root: str | Path) -> SynthStats:
    """Distributions per split of the Ref-AVS Synth dataset in ``root``.

    Raises:
        FileNotFoundError: ``root`` lacks synth.json or scenes.jsonl (not a finished Synth dataset).
    """
    info = read_synth_info(root)
    records = read_scenes(root)
    stereo = is_stereo(info)
    splits: dict[str, SplitStats] = {}
    areas: dict[str, list[float]] = {}
    frames: dict[str, list[int]] = {}
    for rec in records:
        s = splits.setdefault(rec["split"], SplitStats())
        s.clips += 1
        n = len(rec["objects"])
        s.objects_per_clip[n] = s.objects_per_clip.get(n, 0) + 1
        pixels = rec["size"] ** 2
        for e in [*rec["expressions"], *(e for extra in rec.get("null_folders", ()) for e in extra["expressions"])]:
            s.expressions += 1
            s.needs_audio += e["needs_audio"]
            for cue in e["cue"].split(";"):
                s.cues[cue] = s.cues.get(cue, 0) + 1
            m = e["meaning"]
            kind = "relation" if m["relation"] else m["clause"]
            s.kinds[kind] = s.kinds.get(kind, 0) + 1
            counted = frames.setdefault(rec["split"], [0, 0])
            if e["target"] is None:
                s.categories["null"] = s.categories.get("null", 0) + 1
                kind = e.get("null_kind", "")
                if kind:
                    s.null_kinds[kind] = s.null_kinds.get(kind, 0) + 1
                counted[0] += NUM_FRAMES
                counted[1] += NUM_FRAMES
                continue
            target = rec["objects"][e["target"]]
            s.twin_ambiguous += twin_ambiguous(rec, e, stereo)
            name = target["visual"]["category"]
            s.categories[name] = s.categories.get(name, 0) + 1
            area = target["visual"]["area"]
            on = [a for a in area if a > 0]
            counted[0] += len(area) - len(on)
            counted[1] += len(area)
            if on:
                areas.setdefault(rec["split"], []).append(100.0 * float(np.mean(on)) / pixels)
    for name, s in splits.items():
        values = areas.get(name, [])
        if values:
            s.mask_area = {f"p{p}": float(np.percentile(values, p)) for p in AREA_PERCENTILES}
            s.mask_area["mean"] = float(np.mean(values))
        empty, total = frames.get(name, [0, 0])
        s.empty_frames = 100.0 * empty / total if total else 0.0
        s.cues = {c: s.cues[c] for c in CUE_TYPES if c in s.cues}
        s.kinds = {k: s.kinds[k] for k in (*CLAUSES, "relation") if k in s.kinds}
        s.categories = dict(sorted(s.categories.items(), key=lambda kv: (-kv[1], kv[0])))
        s.objects_per_clip = dict(sorted(s.objects_per_clip.items()))
    ordered = {name: splits[name] for name in SPLITS if name in splits}
    return SynthStats(root=str(root), info=info, splits=ordered)


def is_stereo(info: dict) -> bool:
    """Whether the dataset whose synth.json is ``info`` has stereo tracks (preset ``stereo``)."""
    return bool(info.get("preset", {}).get("stereo", False))


def twin_ambiguous(scene: dict, expression: dict, stereo: bool = False) -> bool:
    """Whether a needs_audio expression stays ambiguous to a listener who hears every category's
    sound but not where it comes from (mono audio): a look-alike of the target that fits the
    expression without the audio is on screen while the target sounds (or the target is silent).
    With ``stereo`` (a track panned by place) a look-alike in another column is heard apart: only
    one in the target's column leaves the expression ambiguous."""
    if not expression["needs_audio"] or expression["target"] is None:
        return False
    objects = scene["objects"]
    target = objects[expression["target"]]
    seconds = target["audio"]["seconds"]
    for fid in expression["candidates_without_audio"]:
        other = objects[fid]
        if fid == expression["target"] or other["visual"]["category"] != target["visual"]["category"]:
            continue
        if stereo and other["visual"]["column"] != target["visual"]["column"]:
            continue
        if not seconds or any(other["visual"]["area"][k] > 0 for k in seconds):
            return True
    return False


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return [fmt(header), *map(fmt, rows)]


def format_stats(stats: SynthStats) -> str:
    """The stats as plain-text tables."""
    info = stats.info
    lines = [f"Ref-AVS Synth {stats.root}: seed {info.get('seed')}, preset {info.get('preset', {}).get('name')}, "
             f"{info.get('size')} px, generator {info.get('version')}" + (", stereo" if is_stereo(info) else ""), ""]
    max_objects = max((n for s in stats.splits.values() for n in s.objects_per_clip), default=4)
    counts = list(range(1, max_objects + 1))

    def pct(a: int, b: int) -> str:
        return f"{a} ({100.0 * a / b:.0f}%)" if b else "0"

    rows = []
    for name, s in stats.splits.items():
        area = "/".join(f"{s.mask_area[f'p{p}']:.1f}" for p in AREA_PERCENTILES) if s.mask_area else "-"
        rows.append([name, str(s.clips), str(s.expressions), pct(s.needs_audio, s.expressions),
                     pct(s.twin_ambiguous, s.needs_audio),
                     "/".join(str(s.objects_per_clip.get(n, 0)) for n in counts), area, f"{s.empty_frames:.0f}%"])
    lines += _table(["split", "clips", "expressions", "needs_audio", "of which twin-ambiguous", f"objects/clip {'/'.join(map(str, counts))}",
                     "target area % p10/p50/p90", "empty target frames"], rows)
    lines += ["", "cue types (expressions using each; one expression may use several)"]
    lines += _table(["split", *CUE_TYPES],
                    [[name, *(pct(s.cues.get(c, 0), s.expressions) for c in CUE_TYPES)]
                     for name, s in stats.splits.items()])
    kinds = [k for k in (*CLAUSES, "relation") if any(k in s.kinds for s in stats.splits.values())]
    lines += ["", "meaning kinds (clause or relation) per split"]
    for name, s in stats.splits.items():
        lines.append(f"  {name:<7} " + ", ".join(f"{k} {s.kinds[k]}" for k in kinds if k in s.kinds))
    if any(s.null_kinds for s in stats.splits.values()):
        lines += ["", "null rows per kind (muted, changed: another track in null_m-/null_c- folders; "
                      "condition, absent: Synth's own)"]
        for name, s in stats.splits.items():
            if s.null_kinds:
                lines.append(f"  {name:<7} " + ", ".join(f"{k} {v}" for k, v in sorted(s.null_kinds.items())))
    lines += ["", "referred categories per split (null: null expressions)"]
    for name, s in stats.splits.items():
        lines.append(f"  {name:<7} " + ", ".join(f"{k} {v}" for k, v in s.categories.items()))
    return "\n".join(lines)
