"""Reading metadata.csv, the benchmark's expression table.

:func:`scan_metadata` parses every row it can and reports every problem with its row
number (used by ``refavs data check``); :func:`read_metadata` is the strict reader used
everywhere else: it raises :class:`MetadataError` naming the file and rows at fault.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Sequence

from refavs.data.layout import METADATA_COLUMNS, METADATA_FILE, SPLITS
from refavs.data.records import Expression


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, with where it is.

    Attributes:
        kind: a short stable tag (``missing-frame``, ``bad-row`` ...), listed in ``refavs data check --help``.
        path: the file at fault.
        message: what is wrong, for a person.
        row: the metadata.csv line the problem comes from, when there is one.
        uid: the expression concerned, when there is one.
    """

    kind: str
    path: str
    message: str
    row: int | None = None
    uid: str | None = None

    def __str__(self) -> str:
        where = self.path if self.row is None else f"{self.path}:{self.row}"
        return f"{where}: [{self.kind}] {self.message}"


class MetadataError(ValueError):
    """metadata.csv cannot be used as it is; the message names the file and rows."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:10])
        more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        super().__init__(f"{len(self.problems)} problem(s) in metadata:\n  {shown}{more}")


@dataclass
class MetadataScan:
    """What :func:`scan_metadata` found.

    Attributes:
        expressions: rows that parsed, in file order, from the requested splits.
        problems: every malformed row, duplicated uid and empty expression.
        warnings: rows the strict reader tolerates but ``refavs data check`` lists: a split that
            is none of :data:`SPLITS` (the row is skipped; the real file has 25 marked ``TODO``)
            and a uid already used on an earlier row (the row is kept; the real file has 11).
    """

    expressions: list[Expression] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.warnings if p.kind == kind)


def metadata_path(path: str | Path) -> Path:
    """Accept a dataset folder or the csv itself."""
    p = Path(path)
    return p / METADATA_FILE if p.is_dir() else p


def scan_metadata(path: str | Path, splits: Iterable[str] | None = None) -> MetadataScan:
    """Parse metadata.csv, collecting every problem instead of stopping at the first.

    Rows with the same uid are all kept (the real benchmark has 11 such uids, and the
    reference iterates rows), and each repeat is listed in ``warnings``.

    Args:
        path: the dataset folder or its metadata.csv.
        splits: keep only these splits (all known splits when None).
    """
    csv_path = metadata_path(path)
    wanted = set(SPLITS if splits is None else splits)
    scan = MetadataScan()
    where = str(csv_path)
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as err:
        scan.problems.append(Problem("missing-metadata", where, f"cannot open: {err.strerror or err}"))
        return scan
    seen: dict[str, int] = {}
    with handle:
        try:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                scan.problems.append(Problem("bad-header", where, "the file is empty", row=1))
                return scan
            header = [h.strip() for h in header]
            missing = [c for c in METADATA_COLUMNS if c not in header]
            if missing:
                scan.problems.append(
                    Problem("bad-header", where, f"missing column(s) {', '.join(missing)}; "
                            f"found {', '.join(header) or 'none'}; need {', '.join(METADATA_COLUMNS)}", row=1)
                )
                return scan
            index = {name: i for i, name in enumerate(header)}
            for cells in reader:
                row = reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    scan.problems.append(Problem(
                        "bad-row", where, f"{len(cells)} fields, the header has {len(header)}", row=row))
                    continue
                get = {name: cells[i] for name, i in index.items()}
                uid, vid, split = get["uid"].strip(), get["vid"].strip(), get["split"].strip()
                if split not in SPLITS:
                    scan.warnings.append(Problem(
                        "unknown-split", where, f"split {split!r} is none of {', '.join(SPLITS)}",
                        row=row, uid=uid or None))
                    continue
                if not uid or not vid:
                    scan.problems.append(Problem("bad-row", where, "empty vid or uid", row=row))
                    continue
                try:
                    fid = int(get["fid"].strip())
                    if fid < 0:
                        raise ValueError
                except ValueError:
                    scan.problems.append(Problem(
                        "bad-row", where, f"fid {get['fid']!r} is not a non-negative integer", row=row, uid=uid))
                    continue
                if uid in seen:
                    scan.warnings.append(Problem(
                        "duplicate-uid", where, f"uid {uid} already on line {seen[uid]}", row=row, uid=uid))
                else:
                    seen[uid] = row
                exp = get["exp"].strip()
                if not exp:
                    scan.problems.append(Problem("empty-expression", where, "the expression is empty",
                                                 row=row, uid=uid))
                    continue
                if split not in wanted:
                    continue
                extra = {name: get[name] for name in header if name not in METADATA_COLUMNS}
                scan.expressions.append(Expression(
                    vid=vid, uid=uid, split=split, fid=fid, exp=exp, row=row,
                    extra=MappingProxyType(extra)))
        except (csv.Error, UnicodeDecodeError) as err:
            scan.problems.append(Problem("bad-row", where, f"unreadable CSV: {err}", row=None))
    return scan


def read_metadata(path: str | Path, splits: Iterable[str] | None = None) -> list[Expression]:
    """Read the expressions of a dataset, strictly.

    Rows of an unknown split (the real file has 25 marked ``TODO``) are skipped with one
    warning that counts them; repeated uids are kept with one warning that counts them. Any
    other problem raises :class:`MetadataError`.

    Args:
        path: the dataset folder or its metadata.csv.
        splits: keep only these splits (all when None); an unknown name raises ValueError.
    """
    if splits is not None:
        splits = list(splits)
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise ValueError(f"unknown split(s) {', '.join(bad)}; choose from {', '.join(SPLITS)}")
    scan = scan_metadata(path, splits)
    if scan.problems:
        raise MetadataError(scan.problems)
    unknown, repeated = scan.count("unknown-split"), scan.count("duplicate-uid")
    if unknown:
        warnings.warn(f"{metadata_path(path)}: skipped {unknown} row(s) whose split is none of "
                      f"{', '.join(SPLITS)}", stacklevel=2)
    if repeated:
        warnings.warn(f"{metadata_path(path)}: kept {repeated} row(s) whose uid repeats an earlier row's",
                      stacklevel=2)
    return scan.expressions


def split_counts(expressions: Iterable[Expression]) -> dict[str, int]:
    """Number of expressions per split, in :data:`SPLITS` order (only splits present)."""
    counts = {s: 0 for s in SPLITS}
    for e in expressions:
        counts[e.split] += 1
    return {s: n for s, n in counts.items() if n}
