"""``refavs demo``: the main job on the built-in synthetic benchmark, end to end.

Steps, each printed as it runs (everything lands in ``--out``):

1. generate Ref-AVS Synth (``--preset small``) in the official layout, or reuse it when
   ``OUT/data`` already holds the same generation (same seed, preset and version);
2. validate it with the dataset checker (any problem stops the demo);
3. write the predictions of two simple baselines: ``every-object`` (segment every object of
   the clip, i.e. look without listening or reading) and ``nothing``;
4. score both on test_s, test_u and test_n with the official metrics, print the tables with
   the per-cue breakdown, and write ``OUT/report.md`` and ``OUT/report.json``.

Training the EEMC model joins this job when training lands (issue 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEMO_BASELINES: tuple[str, ...] = ("every-object", "nothing")
DEMO_SPLITS: tuple[str, ...] = ("test_s", "test_u", "test_n")


@dataclass
class DemoReport:
    """What :func:`run_demo` produced.

    Attributes:
        out_dir: the demo folder.
        data_dir: the generated dataset.
        scores: baseline name -> its :class:`~refavs.scoring.score.ScoreReport`.
        seconds: wall time of the whole job.
        generated: False when an existing generation was reused.
    """

    out_dir: Path
    data_dir: Path
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0
    generated: bool = True

    def to_dict(self) -> dict:
        return {"data_dir": str(self.data_dir), "seconds": round(self.seconds, 2),
                "baselines": {name: report.to_dict() for name, report in self.scores.items()}}


def run_demo(out_dir: str | Path, preset: str = "small", seed: int = 0, workers: int = 2,
             log=print) -> DemoReport:
    """Generate, check, run the baselines and score them (see the module docstring)."""
    from refavs.baselines import write_baseline
    from refavs.data.check import check_dataset
    from refavs.data.writer import atomic_write_bytes
    from refavs.scoring.score import score_predictions
    from refavs.scoring.table import format_report
    from refavs.synth.generate import generate, is_generation

    start = time.perf_counter()
    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    report = DemoReport(out_dir=out_dir, data_dir=data_dir)
    if is_generation(data_dir, seed=seed, preset=preset):
        report.generated = False
        log(f"[1/4] reusing Ref-AVS Synth ({preset}, seed {seed}) in {data_dir}")
    else:
        log(f"[1/4] generating Ref-AVS Synth ({preset}, seed {seed}) in {data_dir} ...")
        t = time.perf_counter()
        summary = generate(data_dir, seed=seed, preset=preset, workers=workers, force=True)
        counts = ", ".join(f"{s} {c['expressions']}" for s, c in summary.counts.items())
        log(f"      expressions: {counts} ({time.perf_counter() - t:.1f} s)")
    log("[2/4] checking the dataset ...")
    check = check_dataset(data_dir, workers=workers)
    if not check.ok:
        shown = "\n  ".join(str(p) for p in check.problems[:10])
        raise RuntimeError(f"{data_dir}: the generated dataset has {len(check.problems)} problem(s):\n  {shown}")
    log(f"      {check.n_expressions} expressions, {check.n_clips} clips: no problems")
    tables = []
    for i, name in enumerate(DEMO_BASELINES):
        pred_dir = out_dir / "predictions" / name
        log(f"[{3 + i}/4] baseline {name}: predicting and scoring {', '.join(DEMO_SPLITS)} ...")
        write_baseline(name, data_dir, DEMO_SPLITS, pred_dir, workers=workers)
        scores = score_predictions(data_dir, DEMO_SPLITS, pred_dir, workers=workers)
        report.scores[name] = scores
        table = format_report(scores, title=f"baseline: {name}")
        tables.append(table)
        log(table + "\n")
    report.seconds = time.perf_counter() - start
    atomic_write_bytes(out_dir / "report.json", json.dumps(report.to_dict(), indent=2).encode())
    markdown = ["# refavs demo", "", f"Dataset: `{data_dir}` (Ref-AVS Synth, {preset}, seed {seed}).", ""]
    markdown += [f"```\n{t}\n```\n" for t in tables]
    markdown.append(f"Total time: {report.seconds:.1f} s")
    atomic_write_bytes(out_dir / "report.md", "\n".join(markdown).encode())
    log(f"report: {out_dir / 'report.md'} and {out_dir / 'report.json'} ({report.seconds:.1f} s)")
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on the built-in synthetic benchmark (generate, check, score)",
        description="Generate Ref-AVS Synth, check it, run two baselines (every-object, nothing) and score "
                    "them with the official metrics and the per-cue breakdown; writes OUT/report.md and "
                    "OUT/report.json. Re-running reuses the generated data.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--preset", default="small", choices=("tiny", "small", "medium", "large"),
                   help="Ref-AVS Synth size (default small; tiny is a smoke test)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="processes/threads for generation and I/O (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refavs.data.masks import MediaError
    from refavs.data.metadata import MetadataError

    if args.workers < 1:
        print("refavs demo: error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        run_demo(args.out, args.preset, args.seed, args.workers)
    except (RuntimeError, MediaError, MetadataError, OSError) as err:
        print(f"refavs demo: error: {err}", file=sys.stderr)
        return 1
    return 0
