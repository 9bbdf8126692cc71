"""Writing a Ref-AVS Synth dataset: the API behind ``refavs synth --out``.

::

    <out>/metadata.csv        vid, uid, split, fid, exp  + cue, needs_audio (ignored by the official reader)
    <out>/media/<folder>/frames/0.jpg ... 9.jpg, audio.wav
    <out>/gt_mask/<folder>/fid_<fid>/00000.png ... 00009.png   every object of the clip, fid = its index
    <out>/gt_sounding/<folder>/00000.png ... 00009.png   per second t, the union of the masks of the
                              objects sounding in it (empty when none does); ignored by the official reader
    <out>/scenes.jsonl        one line per clip: the scene (visual and audio part per object) and its expressions
    <out>/synth.json          generator version, seed, preset, category table, per-split counts (written last)
    <out>/.staging/           clips' folders being written (refavs.synth.files); gone when a run ends

test_n clips keep their media, their sounding-object masks and the empty masks of their null
expressions (``fid_0``) under ``null_c-<vid>``, and the masks of their objects under
``gt_mask/<vid>/``, as in the real benchmark, whose null clips are test_s clips with annotated
objects. ``gt_sounding/<folder>`` exists for every media folder; it is AVSBench-style
sounding-object ground truth that only Synth has (read it with :mod:`refavs.synth.sounding`).

Every clip is generated from its own random generator, seeded by (seed, split, clip index),
so the files do not depend on the number of workers or the order clips are made in; every
encoder used (JPEG, PNG, WAV) is deterministic, so one seed and one set of options give
byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from types import MappingProxyType

import numpy as np
from tqdm import tqdm

from refavs.data.layout import NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.records import CLAUSE_COLUMN, NULL_KIND_COLUMN, Expression
from refavs.data.writer import AUDIO_SAMPLE_RATE, atomic_write_bytes, write_metadata
from refavs.synth.audio import WINDOW_SECONDS, synthesize
from refavs.synth.categories import CATEGORIES, categories_for_split, check_table
from refavs.scoring.cues import CUE_TYPES
from refavs.synth.expressions import choose, enumerate_meanings, name_only, sentence, silent_candidates
from refavs.synth.null_tracks import (CHANGED, MUTED, ORIGINAL, changed_sources, null_kind_of, null_track_folder,
                                      null_track_rows, track_scene)
from refavs.synth.files import STAGING_DIR, ClipFiles, remove_staging
from refavs.synth.layout import SCENES_FILE, SOUNDING_DIR, SYNTH_FILE, read_synth_info
from refavs.synth.presets import SynthPreset, check_size, get_preset
from refavs.synth.render import render_clip
from refavs.synth.scene import sample_scene
from refavs.synth.sounding import sounding_union
from refavs.version import __version__

GENERATOR_VERSION = "1.2"
"""Version of the generator's output; changes whenever the same seed would give other files.

1.1: adds ``gt_sounding/`` (the files of 1.0 are otherwise unchanged).
1.2: null rows in train and val (replaced-track folders ``null_m-``/``null_c-``, as the real
benchmark), test_n clips of the muted and changed kinds beside Synth's own, the metadata
columns ``clause`` and ``null_kind``, and the real benchmark's null sentences as one more
wording of their meanings.
"""

SPLIT_CODES: dict[str, str] = {"train": "tr", "val": "va", "test_s": "ts", "test_u": "tu", "test_n": "tn"}
"""Short split codes used in vids (``syn-tr00012_0_10000``)."""

EXTRA_COLUMNS: tuple[str, ...] = ("cue", "needs_audio", CLAUSE_COLUMN, NULL_KIND_COLUMN)
"""Columns metadata.csv has beyond the official five."""

OWNED_PATHS: tuple[str, ...] = ("media", "gt_mask", SOUNDING_DIR, "metadata.csv", SCENES_FILE, SYNTH_FILE, STAGING_DIR)
"""What a generator run writes (and, with ``force``, replaces in a folder holding an earlier run)."""

NULL_STREAM = 0x4E55
"""Stream of a clip's seed that draws its null folders and their sentences, apart from the rest."""

MAX_SCENE_TRIES = 20
"""Scenes drawn for a clip before giving up on one that allows an expression (never reached in practice)."""


class OutputFolderError(FileExistsError):
    """The output folder cannot be written to as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ClipTask:
    """Everything needed to make one clip (picklable, for worker processes)."""

    root: str
    seed: int
    split: str
    index: int
    size: int
    preset: SynthPreset


@dataclass
class ClipResult:
    """One clip's metadata rows (plain dicts, picklable) and its ``scenes.jsonl`` record."""

    rows: list[dict]
    record: dict

    def expressions(self) -> list[Expression]:
        """The rows as metadata records (official columns plus the extra ones)."""
        return [Expression(vid=r["vid"], uid=r["uid"], split=r["split"], fid=r["fid"], exp=r["exp"],
                           extra=MappingProxyType({c: r[c] for c in EXTRA_COLUMNS})) for r in self.rows]


@dataclass
class SynthSummary:
    """What :func:`generate` wrote.

    Attributes:
        root: the dataset folder.
        seed, preset, size: the options used.
        counts: per split, ``clips``, ``expressions``, ``needs_audio`` (rows with needs_audio = 1)
            and ``temporal`` (rows with a temporal cue).
        seconds: wall-clock time of the run.
    """

    root: str
    seed: int
    preset: str
    size: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


def clip_vid(split: str, index: int) -> str:
    """The vid of clip ``index`` of ``split``, shaped like the real ``<id>_<start ms>_<end ms>``."""
    return f"syn-{SPLIT_CODES[split]}{index:05d}_0_{NUM_FRAMES * 1000}"


def null_folder(vid: str) -> str:
    """Media and mask folder of a test_n clip (the real benchmark's ``null_c-<vid>``)."""
    return f"null_c-{vid}"


def _mask_geometry(masks: np.ndarray) -> tuple[list[int], list[list[int] | None]]:
    """Per frame: pixel count and box ``[x0, y0, x1, y1]`` (end exclusive) or None, of ``[T, H, W]`` masks."""
    areas = [int(a) for a in masks.sum(axis=(1, 2))]
    rows, cols = masks.any(axis=2), masks.any(axis=1)      # [T, H], [T, W]
    boxes: list[list[int] | None] = []
    for area, r, c in zip(areas, rows, cols):
        if not area:
            boxes.append(None)
            continue
        ys, xs = np.flatnonzero(r), np.flatnonzero(c)
        boxes.append([int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1])
    return areas, boxes


def make_clip(task: ClipTask) -> ClipResult:
    """Sample, render and write one clip; return its rows and scene record."""
    split, preset = task.split, task.preset
    rng = np.random.default_rng([task.seed, SPLITS.index(split), task.index])
    nrng = np.random.default_rng([task.seed, SPLITS.index(split), task.index, NULL_STREAM])
    pool = categories_for_split(split)
    vid = clip_vid(split, task.index)
    null = split == "test_n"
    track = preset.test_n_track(nrng) if null else ORIGINAL
    for _ in range(MAX_SCENE_TRIES):
        scene = sample_scene(rng, vid, split, task.size, pool, preset.scene, recolour=preset.recolour_for(split))
        options = enumerate_meanings(scene, pool, use_names=split != "test_u", null=null and track == ORIGINAL)
        if options:
            break
    else:
        raise RuntimeError(f"{vid}: no scene allowing an expression in {MAX_SCENE_TRIES} tries")
    clip = render_clip(scene)
    files = ClipFiles()   # the official writer's bytes, staged and moved into place by folder
    rows, expressions = [], []
    written: list[tuple] = []   # (meaning, words) of the clip's own sentences

    if null and track != ORIGINAL:   # test_n: the clip's frames with a replaced track
        folder = null_track_folder(vid, track)
        heard = changed_sources(scene, pool, nrng) if track == CHANGED else []
        made = null_track_rows(scene, options, (), preset.expressions_for(split), nrng, sentence)
        _add_null_folder(files, folder, clip, scene, track, heard, preset)
        _null_track_entries(rows, expressions, made, vid, folder, split, scene, track)
    else:
        chosen = choose(rng, options, preset.expressions_for(split), preset.needs_audio_share_for(split),
                        preset.relation_weight)
        if split == "train" and preset.train_name_slot:
            chosen += name_only(rng, options, chosen)
        folder = null_folder(vid) if null else vid
        files.add_frames(folder, clip.frames)
        files.add_audio(folder, synthesize(scene, preset.scene.reference_rms, stereo=preset.stereo))
        if null:
            files.add_masks(folder, 0, np.zeros_like(clip.masks[0]))
        # sounding-object masks belong to the media (the audio): under the media folder
        files.add_sounding(folder, sounding_union(clip.masks, [o.audio.seconds for o in scene.objects]))
        per_name: dict[str, int] = {}
        for r in chosen:
            name = "null" if r.target is None else scene.objects[r.target].visual.category
            per_name[name] = per_name.get(name, 0) + 1
            uid = f"{folder}_{name}_{per_name[name]}"
            text = sentence(r.meaning, rng)
            written.append((r.meaning, text))
            fid = 0 if r.target is None else r.target
            cue = ";".join(r.cues)
            kind = "" if r.target is not None else null_kind_of(r.meaning, scene)
            rows.append({"vid": vid, "uid": uid, "split": split, "fid": fid, "exp": text, "cue": cue,
                         "needs_audio": str(int(r.needs_audio)), "clause": r.meaning.kind, "null_kind": kind})
            entry = {"uid": uid, "fid": fid, "target": r.target, "exp": text, "cue": cue,
                     "needs_audio": int(r.needs_audio), "candidates_without_audio": list(r.candidates),
                     "meaning": r.meaning.to_dict()}
            if kind:
                entry["null_kind"] = kind
            expressions.append(entry)
    for obj in scene.objects:   # a null clip's objects under its vid, as the real benchmark's test_s twins
        files.add_masks(vid, obj.fid, clip.masks[obj.fid])

    record = scene.to_dict()
    record["folder"] = folder
    record["track"] = track
    if null and track == CHANGED:
        record["heard"] = [h.to_dict() for h in heard]
    null_folders = []
    if not null and nrng.random() < preset.null_clip_chance(split):
        track_kind = MUTED if nrng.random() < 0.5 else CHANGED
        nfolder = null_track_folder(vid, track_kind)
        heard = changed_sources(scene, pool, nrng) if track_kind == CHANGED else []
        made = null_track_rows(scene, options, written, preset.null_rows_per_folder, nrng, sentence)
        if made:
            _add_null_folder(files, nfolder, clip, scene, track_kind, heard, preset)
            entries: list[dict] = []
            _null_track_entries(rows, entries, made, vid, nfolder, split, scene, track_kind)
            info = {"folder": nfolder, "track": track_kind, "expressions": entries}
            if heard:
                info["heard"] = [h.to_dict() for h in heard]
            null_folders.append(info)
    files.commit(task.root)

    for obj, data in zip(scene.objects, record["objects"]):
        areas, boxes = _mask_geometry(clip.masks[obj.fid])
        data["visual"]["area"], data["visual"]["boxes"] = areas, boxes
    record["expressions"] = expressions
    record["null_folders"] = null_folders
    return ClipResult(rows=rows, record=record)


def _add_null_folder(files: ClipFiles, folder: str, clip, scene, track: str, heard, preset: SynthPreset) -> None:
    """The media of a replaced-track folder: the clip's frames, the new track, an empty target
    (``fid_0``) and empty sounding-object masks (no visible object sounds)."""
    files.add_frames(folder, clip.frames)
    files.add_audio(folder, synthesize(track_scene(scene, track, heard), preset.scene.reference_rms,
                                       stereo=preset.stereo))
    empty = np.zeros_like(clip.masks[0])
    files.add_masks(folder, 0, empty)
    files.add_sounding(folder, empty.astype(bool))


def _null_track_entries(rows: list[dict], expressions: list[dict], made, vid: str, folder: str, split: str,
                        scene, track: str) -> None:
    """Metadata rows and scenes.jsonl entries of a replaced-track folder's sentences."""
    visuals = [o.visual for o in scene.objects]
    for n, row in enumerate(made, 1):
        uid = f"{folder}_null_{n}"
        cues = row.meaning.cues() | {"null"}
        cue = ";".join(c for c in CUE_TYPES if c in cues)
        candidates = silent_candidates(row.meaning, visuals)
        needs_audio = int(len(candidates) > 0)   # only listening tells that none of them sounds so
        rows.append({"vid": vid, "uid": uid, "split": split, "fid": 0, "exp": row.text, "cue": cue,
                     "needs_audio": str(needs_audio), "clause": row.meaning.kind, "null_kind": track})
        expressions.append({"uid": uid, "fid": 0, "target": None, "exp": row.text, "cue": cue,
                            "needs_audio": needs_audio, "candidates_without_audio": list(candidates),
                            "meaning": row.meaning.to_dict(), "null_kind": track, "source": row.source})


def prepare_output(out: Path, force: bool) -> None:
    """Make sure ``out`` may be written: it must not exist, be empty, or ``force`` must be given.

    With ``force``, a folder holding an earlier Ref-AVS Synth run (it has synth.json) loses
    that run's files first; any other folder is written into as it is.
    """
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        earlier = (out / SYNTH_FILE).is_file()
        if not force:
            what = ("already holds a Ref-AVS Synth dataset" + _older_note(out) if earlier
                    else "is not empty and does not hold a Ref-AVS Synth dataset (no synth.json)")
            raise OutputFolderError(f"--out {out} {what}; refusing to overwrite it "
                                    f"(choose an empty or new folder, or pass --force)")
        if earlier:
            for name in OWNED_PATHS:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _older_note(out: Path) -> str:
    """`` (generator version X, this is Y)`` when ``out`` holds another version's run, else ``""``."""
    try:
        version = json.loads((out / SYNTH_FILE).read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return ""
    return "" if version == GENERATOR_VERSION else f" (generator version {version}, this is {GENERATOR_VERSION})"


def default_workers() -> int:
    """Worker processes used when none are asked for: the CPUs, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def generate(out_dir: str | Path, seed: int = 0, preset: str | SynthPreset = "small", size: int | None = None,
             workers: int | None = None, force: bool = False, progress: bool = False) -> SynthSummary:
    """Write a Ref-AVS Synth dataset to ``out_dir``.

    Args:
        out_dir: the dataset folder to create (must be new or empty unless ``force``).
        seed: the dataset seed (a non-negative integer).
        preset: a name of :data:`~refavs.synth.presets.PRESETS` or a :class:`SynthPreset`.
        size: frame side in pixels (the preset's when None).
        workers: processes making clips in parallel (:func:`default_workers` when None); the
            files do not depend on it.
        force: write into a non-empty folder (replacing an earlier Ref-AVS Synth run there).
        progress: show a progress bar on stderr.

    Raises:
        ValueError: a bad seed, preset, size or worker count.
        OutputFolderError: ``out_dir`` is not empty and ``force`` is False.
    """
    started = time.perf_counter()
    check_table()
    spec = get_preset(preset)
    size = check_size(spec.size if size is None else size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out_dir)
    prepare_output(out, force)

    tasks = [ClipTask(str(out), int(seed), split, i, size, spec) for split in SPLITS for i in range(spec.clips[split])]
    bar = None
    if progress:
        bar = tqdm(total=len(tasks), desc="synth", unit="clip", leave=False)
    results: list[ClipResult] = []
    try:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                results.append(make_clip(task))
                if bar is not None:
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                for result in pool.map(make_clip, tasks, chunksize=4):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        remove_staging(out)
        if bar is not None:
            bar.close()

    layout = DatasetLayout(out)
    rows = [row for r in results for row in r.expressions()]
    write_metadata(layout.metadata, rows, EXTRA_COLUMNS)
    lines = "".join(json.dumps(r.record, sort_keys=True, separators=(",", ":")) + "\n" for r in results)
    atomic_write_bytes(out / SCENES_FILE, lines.encode("utf-8"))
    counts = split_counts(results)
    info = synth_info(int(seed), spec, size, counts)
    atomic_write_bytes(out / SYNTH_FILE, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return SynthSummary(root=str(out), seed=int(seed), preset=spec.name, size=size, counts=counts,
                        seconds=time.perf_counter() - started)


def split_counts(results: list[ClipResult]) -> dict[str, dict[str, int]]:
    """Per split: clips, expressions, needs_audio rows, rows with a temporal cue, null rows and
    replaced-track media folders (``null_m-``/``null_c-``)."""
    keys = ("clips", "expressions", "needs_audio", "temporal", "null", "null_track_folders")
    counts = {s: dict.fromkeys(keys, 0) for s in SPLITS}
    for r in results:
        c = counts[r.record["split"]]
        c["clips"] += 1
        entries = list(r.record["expressions"])
        for extra in r.record.get("null_folders", []):
            entries += extra["expressions"]
            c["null_track_folders"] += 1
        if r.record.get("track", "original") != "original":
            c["null_track_folders"] += 1
        for e in entries:
            c["expressions"] += 1
            c["needs_audio"] += e["needs_audio"]
            c["temporal"] += "temporal" in e["cue"].split(";")
            c["null"] += e["target"] is None
    return counts


def synth_info(seed: int, preset: SynthPreset, size: int, counts: dict[str, dict[str, int]]) -> dict:
    """The content of synth.json."""
    return {
        "generator": "refavs.synth",
        "version": GENERATOR_VERSION,
        "refavs_version": __version__,
        "seed": seed,
        "preset": preset.to_dict(),
        "size": size,
        "num_frames": NUM_FRAMES,
        "sample_rate": AUDIO_SAMPLE_RATE,
        "audio_alignment": f"an event of second k sounds over [k, {WINDOW_SECONDS} * (k + 1)) s, "
                           f"inside log-mel window k",
        "extra_columns": list(EXTRA_COLUMNS),
        "files": {"metadata": "metadata.csv", "scenes": SCENES_FILE, "sounding_masks": SOUNDING_DIR},
        "categories": [c.to_dict() for c in CATEGORIES],
        "counts": counts,
    }


def is_generation(root: str | Path, seed: int, preset: str | SynthPreset, size: int | None = None) -> bool:
    """True when ``root`` holds a finished run of this generator version with these options (the
    whole preset, not only its name: a preset whose counts changed is generated anew)."""
    try:
        info = read_synth_info(root)
    except (FileNotFoundError, ValueError):
        return False
    spec = get_preset(preset)
    return (info.get("version") == GENERATOR_VERSION and info.get("seed") == seed
            and info.get("preset") == json.loads(json.dumps(spec.to_dict()))  # tuples read back as lists
            and info.get("size") == (spec.size if size is None else size))
