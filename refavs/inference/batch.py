"""Batch inference from a CSV: one output folder per row, a bad row reported and skipped, re-runs
resume.

The CSV has a header with the columns ``video`` and ``expression``, and optionally ``start``
(seconds; empty or absent: the default start) and ``id`` (the row's output folder name).
Relative video paths are resolved against the CSV's folder. Row ``n`` (1-based, header not
counted) is written into ``OUT/<id>/`` or, without an id, ``OUT/<nnn>-<video stem>/``. A row
whose expression is empty or longer than :data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS`
characters fails before its video is read (reported with its row number; the others go on).

A row is complete when its ``summary.json`` (written last) exists, names the same video,
expression, start and checkpoint, and its masks and overlay exist; complete rows are skipped
unless ``overwrite``. ``OUT/summary.json`` indexes every row (status ``written``, ``skipped``
or ``failed``, presence, error) and lists the errors.

Every file is written through a temporary file and renamed. A write the disk refuses (full,
failing, read-only) stops the batch with one line naming the file, the row and what is kept; a
batch killed at any moment leaves every row it finished complete, and the next run skips them,
removes the temporary files of the row it redoes and goes on.
"""

from __future__ import annotations

import csv
import errno
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from refavs.data.writer import WriteError, atomic_write_bytes, remove_temp_files, write_error
from refavs.inference.errors import InferenceError
from refavs.inference.pipeline import MASKS_FOLDER, SUMMARY_FILE, check_expression_text
from refavs.version import __version__

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
"""Errors of the disk, not of a row: the batch stops at the first (every later row would fail too)."""


class BatchWriteError(InferenceError, OSError):
    """The batch stopped because the disk refused a write (full, failing, read-only). The
    message names the file and what it holds, the row, and what is kept; ``errno`` is the cause's."""


REQUIRED_COLUMNS: tuple[str, ...] = ("video", "expression")
OPTIONAL_COLUMNS: tuple[str, ...] = ("start", "id")


@dataclass(frozen=True)
class BatchRow:
    """One row of the batch CSV.

    Attributes:
        number: 1-based row number (the header is not counted).
        video: the video path, resolved against the CSV's folder.
        expression: the expression.
        start: the raw ``start`` cell ('' when absent); parsed when the row runs.
        name: the row's output folder name.
    """

    number: int
    video: Path
    expression: str
    start: str
    name: str

    def start_seconds(self, default: float) -> float:
        """The row's start in seconds (``default`` when the cell is empty)."""
        if not self.start.strip():
            return default
        try:
            return float(self.start)
        except ValueError:
            raise InferenceError(f"start must be a number of seconds, got {self.start!r}") from None


@dataclass
class BatchReport:
    """What happened to every row; written as ``OUT/summary.json``."""

    csv: str
    checkpoint: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    def counts(self) -> dict[str, int]:
        out = {"written": 0, "skipped": 0, "failed": 0}
        for r in self.rows:
            out[r["status"]] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "batch", "csv": self.csv, "checkpoint": self.checkpoint, "refavs_version": __version__,
                "counts": self.counts(), "rows": self.rows,
                "errors": [{"row": r["row"], "video": r["video"], "error": r["error"]} for r in self.errors]}


def _folder_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "row"


def read_batch_csv(path: str | Path) -> list[BatchRow]:
    """The rows of a batch CSV; raises :class:`InferenceError` for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"{path}: CSV file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InferenceError(f"{path}: the header needs the columns {','.join(REQUIRED_COLUMNS)} "
                                     f"(optional: {','.join(OPTIONAL_COLUMNS)}); missing {', '.join(missing)}")
            records = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InferenceError(f"{path}: not a readable CSV file ({err})") from None
    if not records:
        raise InferenceError(f"{path}: no rows under the header")
    rows = []
    for number, record in enumerate(records, start=1):
        video = Path(record["video"].strip()).expanduser()
        if not video.is_absolute():
            video = path.parent / video
        name = record.get("id", "").strip() or f"{number:03d}-{video.stem}"
        rows.append(BatchRow(number, video, record["expression"], record.get("start", ""), _folder_name(name)))
    return rows


def is_complete(folder: Path, video: Path, expression: str, start: float, checkpoint: Path,
                num_frames: int) -> dict[str, Any] | None:
    """The row's summary when ``folder`` holds complete outputs for exactly these inputs, else None."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (summary.get("video") is not None and Path(summary["video"]).resolve() == video.resolve()
            and summary.get("expression") == expression and summary.get("start") == start
            and summary.get("checkpoint") is not None
            and Path(summary["checkpoint"]).resolve() == checkpoint.resolve())
    overlay = (summary.get("outputs") or {}).get("overlay")
    files = [folder / MASKS_FOLDER / f"{t}.png" for t in range(num_frames)]
    if overlay:
        files.append(folder / overlay)
    return summary if same and overlay and all(f.is_file() for f in files) else None


def run_batch(rows: list[BatchRow], out: Path, checkpoint: Path, num_frames: int,
              predict: Callable[[BatchRow, float, Path], dict[str, Any]], default_start: float = 0.0,
              overwrite: bool = False, progress: bool = False, csv_path: str = "") -> BatchReport:
    """Run ``predict(row, start, folder)`` (which writes the row's outputs and returns its summary)
    on every row not already complete; errors are printed, recorded and do not stop the batch.

    ``OUT/summary.json`` is rewritten after every row, so an interrupted batch leaves an index of
    what it did. A write the disk refuses (:data:`DISK_ERRNOS`: full, failing, read-only),
    of a row's outputs or of the index, stops the batch with :class:`BatchWriteError`: the rows
    finished before are complete, and a second run skips them.
    """
    report = BatchReport(csv=csv_path, checkpoint=str(checkpoint))
    remove_temp_files(out, SUMMARY_FILE)  # the index's, left by a batch killed between a write and its rename
    seen: set[str] = set()
    with tqdm(rows, desc="predict", unit="clip", disable=not progress, file=sys.stderr) as bar:
        for row in bar:
            _run_row(row, out, checkpoint, num_frames, predict, default_start, overwrite, csv_path, report, seen)
    return report


def _run_row(row: BatchRow, out: Path, checkpoint: Path, num_frames: int,
             predict: Callable[[BatchRow, float, Path], dict[str, Any]], default_start: float, overwrite: bool,
             csv_path: str, report: BatchReport, seen: set[str]) -> None:
    """One row of :func:`run_batch`: its outputs, its entry in ``report`` and the index rewritten."""
    entry: dict[str, Any] = {"row": row.number, "video": str(row.video), "expression": row.expression,
                             "start": None, "output": row.name, "status": "failed", "present": None,
                             "error": None}
    folder = out / row.name
    try:
        if row.name in seen:
            raise InferenceError(f"output folder {row.name!r} repeats an earlier row's (give distinct ids)")
        seen.add(row.name)
        start = entry["start"] = row.start_seconds(default_start)
        check_expression_text(row.expression)
        done = None if overwrite else is_complete(folder, row.video, row.expression, start, checkpoint,
                                                  num_frames)
        if done is not None:
            entry.update(status="skipped", present=done.get("present"))
        else:
            remove_temp_files(folder, recursive=True)  # left by a batch killed mid-row
            entry.update(status="written", present=predict(row, start, folder).get("present"))
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            entry["error"] = f"{type(err).__name__}: {err}"
        else:  # the disk, not the row: every later row would fail the same way
            entry["error"] = str(err if isinstance(err, WriteError) else write_error(
                getattr(err, "filename", None) or folder, "the row's outputs", err))
            report.rows.append(entry)
            raise _stopped(report, row, entry["error"], out, err) from err
        tqdm.write(f"refavs predict: error: {csv_path or 'CSV'} row {row.number}: {entry['error']}",
                   file=sys.stderr)
    except Exception as err:  # one bad row is reported; the others go on
        message = str(err) if isinstance(err, InferenceError) else f"{type(err).__name__}: {err}"
        entry["error"] = message
        tqdm.write(f"refavs predict: error: {csv_path or 'CSV'} row {row.number}: {message}", file=sys.stderr)
    report.rows.append(entry)
    try:
        _write_index(out, report)
    except WriteError as err:
        raise _stopped(report, row, str(err), None, err) from err


def _write_index(out: Path, report: BatchReport) -> None:
    atomic_write_bytes(out / SUMMARY_FILE, (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8"),
                       what="the batch index")


def _stopped(report: BatchReport, row: BatchRow, message: str, out: Path | None, err: OSError) -> BatchWriteError:
    """The error that stops the batch at ``row``; with ``out``, the index is written first when
    the disk takes it (it records the row's failure)."""
    if out is not None:
        try:
            _write_index(out, report)
        except OSError:
            pass  # the disk refused the row; the index of the row before stays as it was
    done = sum(r["status"] in ("written", "skipped") for r in report.rows)
    kept = (f"the {done} row(s) finished before are complete and a second run skips them" if done
            else "no row was finished")
    error = BatchWriteError(f"{report.csv or 'CSV'} row {row.number}: {message}; the batch stopped there: {kept}")
    error.errno = err.errno
    return error
