"""Validating a dataset folder in the official layout (``refavs data check``).

Every problem is collected with its file (and metadata row where there is one); the
checker never stops at the first bad file and never raises for bad data.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import soundfile as sf
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from refavs.data.layout import NUM_FRAMES, SPLITS, DatasetLayout
from refavs.data.metadata import Problem, scan_metadata
from refavs.data.records import Expression

MIN_AUDIO_SECONDS = 9.6
"""Audio shorter than this yields fewer than 10 VGGish windows of 0.96 s (``short-audio``)."""

PROBLEM_KINDS: dict[str, str] = {
    "missing-metadata": "metadata.csv is missing or unreadable",
    "bad-header": "metadata.csv lacks one of the columns vid, uid, split, fid, exp",
    "bad-row": "a metadata row has the wrong number of fields, an empty id or a bad fid",
    "unknown-split": "a row's split is none of " + ", ".join(SPLITS) + " (readers skip it)",
    "duplicate-uid": "a uid already used on an earlier row (readers keep both rows)",
    "empty-expression": "a row's expression is empty",
    "missing-media": "no media folder for the clip (neither the uid-derived name nor vid)",
    "missing-frame": "a frame 0..9.jpg is missing",
    "frame-count": "the frames folder does not hold exactly 10 frames 0..9.jpg",
    "unreadable-frame": "a frame cannot be decoded",
    "frame-size": "frames of one clip differ in size",
    "missing-audio": "audio.wav is missing",
    "unreadable-audio": "audio.wav cannot be decoded",
    "short-audio": f"audio shorter than {MIN_AUDIO_SECONDS} s (fewer than 10 windows of 0.96 s)",
    "missing-mask-folder": "no gt_mask/<folder>/fid_<fid> folder for a row's fid",
    "missing-mask": "a mask 0000N.png is missing",
    "unreadable-mask": "a mask cannot be decoded",
    "mask-size": "a mask has another size than its clip's frames, or is empty (0 pixels)",
}
"""Every kind of problem the checker reports, with what it means."""


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        root: the dataset folder.
        problems: every problem, metadata ones first, then per clip in metadata order.
        n_expressions: rows checked (of the requested splits).
        n_clips: media folders checked.
        n_mask_folders: ``fid_<fid>`` folders checked.
    """

    root: str
    problems: list[Problem] = field(default_factory=list)
    n_expressions: int = 0
    n_clips: int = 0
    n_mask_folders: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, int]:
        """Problem counts per kind, in :data:`PROBLEM_KINDS` order."""
        counts = Counter(p.kind for p in self.problems)
        return {k: counts[k] for k in PROBLEM_KINDS if counts[k]}

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "n_expressions": self.n_expressions,
            "n_clips": self.n_clips,
            "n_mask_folders": self.n_mask_folders,
            "n_problems": len(self.problems),
            "summary": self.summary(),
            "problems": [
                {"kind": p.kind, "path": p.path, "row": p.row, "uid": p.uid, "message": p.message}
                for p in self.problems
            ],
        }


def _image_size(path: Path, kind: str) -> tuple[tuple[int, int] | None, Problem | None]:
    """Decode an image fully (a truncated file fails) and return its size, or the problem.

    JPEGs are decoded at 1/8 scale (``draft``), which still reads every byte of the file.
    """
    try:
        with Image.open(path) as img:
            size = img.size
            if img.format == "JPEG":
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
            return size, None
    except FileNotFoundError:
        return None, Problem(f"missing-{kind}", str(path), f"{kind} not found")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return None, Problem(f"unreadable-{kind}", str(path), f"cannot decode {kind}: {err}")


def _check_clip(layout: DatasetLayout, folder: str, fids: dict[int, Expression]) -> list[Problem]:
    """Frames, audio and the masks of every fid that rows refer to, for one media folder."""
    problems: list[Problem] = []
    media = layout.media_dir(folder)
    first = next(iter(fids.values()))
    if not media.is_dir():
        return [Problem("missing-media", str(media), f"no media folder for {first.uid} "
                        f"(tried {first.folder!r} and vid {first.vid!r})", row=first.row, uid=first.uid)]
    frames_dir = media / "frames"
    expected = {f"{t}.jpg" for t in range(NUM_FRAMES)}
    present = set(os.listdir(frames_dir)) if frames_dir.is_dir() else set()
    jpgs = {n for n in present if n.lower().endswith((".jpg", ".jpeg"))}
    if jpgs != expected:
        extra = sorted(jpgs - expected)
        problems.append(Problem("frame-count", str(frames_dir),
                                f"{len(jpgs & expected)} of the frames 0..{NUM_FRAMES - 1}.jpg present"
                                + (f"; unexpected {', '.join(extra[:5])}" if extra else "")))
    frame_sizes: set[tuple[int, int]] = set()
    for t in range(NUM_FRAMES):
        path = layout.frame(folder, t)
        if path.name not in present:
            problems.append(Problem("missing-frame", str(path), f"frame {t} not found"))
            continue
        size, problem = _image_size(path, "frame")
        if problem:
            problems.append(problem)
        else:
            frame_sizes.add(size)
    if len(frame_sizes) > 1:
        problems.append(Problem("frame-size", str(frames_dir),
                                "frames differ in size: " + ", ".join(f"{w}x{h}" for w, h in sorted(frame_sizes))))
    frame_size = next(iter(frame_sizes)) if len(frame_sizes) == 1 else None

    audio = layout.audio(folder)
    if not audio.is_file():
        problems.append(Problem("missing-audio", str(audio), "audio.wav not found"))
    else:
        try:
            info = sf.info(str(audio))
            if info.frames == 0 or info.samplerate <= 0:
                raise RuntimeError("no samples")
            if info.frames / info.samplerate < MIN_AUDIO_SECONDS:
                problems.append(Problem("short-audio", str(audio),
                                        f"{info.frames / info.samplerate:.2f} s of audio, "
                                        f"expected at least {MIN_AUDIO_SECONDS} s"))
        except (RuntimeError, sf.LibsndfileError) as err:
            problems.append(Problem("unreadable-audio", str(audio), f"cannot decode audio: {err}"))

    for fid, expression in sorted(fids.items()):
        mask_dir = layout.mask_dir(folder, fid)
        if not mask_dir.is_dir():
            problems.append(Problem("missing-mask-folder", str(mask_dir),
                                    f"no mask folder for fid {fid} of {expression.uid}",
                                    row=expression.row, uid=expression.uid))
            continue
        for t in range(NUM_FRAMES):
            path = layout.mask(folder, fid, t)
            size, problem = _image_size(path, "mask")
            if problem:
                problems.append(problem)
            elif size[0] == 0 or size[1] == 0 or (frame_size is not None and size != frame_size):
                problems.append(Problem("mask-size", str(path),
                                        f"mask is {size[0]}x{size[1]}, its frames are "
                                        + (f"{frame_size[0]}x{frame_size[1]}" if frame_size else "unknown")))
    return problems


def _clips(layout: DatasetLayout, expressions: Iterable[Expression]) -> dict[str, dict[int, Expression]]:
    """Media folder -> {fid: first row referring to it}, in metadata order."""
    clips: dict[str, dict[int, Expression]] = defaultdict(dict)
    for e in expressions:
        clips[layout.resolve_folder(e.uid, e.vid)].setdefault(e.fid, e)
    return clips


def check_dataset(root: str | Path, splits: Iterable[str] | None = None, workers: int = 4,
                  progress: bool = False) -> CheckReport:
    """Check a dataset folder and return every problem found.

    Args:
        root: the dataset folder (holding metadata.csv, media/, gt_mask/).
        splits: check only rows of these splits (all when None). Metadata-level problems
            (malformed rows, unknown splits, repeated uids) are always reported.
        workers: threads decoding files in parallel.
        progress: show a progress bar on stderr.
    """
    layout = DatasetLayout(Path(root))
    report = CheckReport(root=str(root))
    scan = scan_metadata(layout.root, splits)
    report.problems.extend(sorted([*scan.problems, *scan.warnings], key=lambda p: (p.row or 0)))
    report.n_expressions = len(scan.expressions)
    clips = _clips(layout, scan.expressions)
    report.n_clips = len(clips)
    report.n_mask_folders = sum(len(f) for f in clips.values())

    def run(item: tuple[str, dict[int, Expression]]) -> list[Problem]:
        return _check_clip(layout, *item)

    results: Iterator[list[Problem]]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(run, clips.items())
        if progress:
            results = tqdm(results, total=len(clips), desc="checking clips", unit="clip", leave=False)
        for problems in results:
            report.problems.extend(problems)
    return report
