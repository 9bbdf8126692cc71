"""``refavs demo``: the main job on the built-in synthetic benchmark, end to end.

Steps, each printed as it runs (everything lands in ``--out``):

1. generate Ref-AVS Synth (``--preset medium``) in the official layout, or reuse it when
   ``OUT/data`` already holds the same generation;
2. validate it with the dataset checker (any problem stops the demo);
3. extract the model's features of every split into the cache (reused when present): for
   ``lite``, the audio, the text and the backbone maps of every frame, the target masks and
   Synth's sounding-object masks; for ``tiny``, the decoded frames instead of backbone maps;
4. train the model config (``--config lite``) into ``OUT/run`` (an interrupted demo resumes it);
5. evaluate the best checkpoint (selected on val) on test_s, test_u and test_n (val's scores are
   those training computed when it chose the checkpoint, unless the training was resumed past
   them), test_s, test_u and test_n also with the audio features zeroed, test_s and test_u with
   the text features zeroed, and score the
   ``every-object`` baseline (look, don't listen) beside it, in memory from the cached masks
   (the numbers ``refavs baseline every-object`` then ``refavs score`` give, without the PNGs);
   the model's predictions go to ``OUT/predictions/<model config>`` (``OUT/predictions/lite``)
   in the scorer's layout;
6. write ``OUT/report.md``, ``OUT/report.json`` (``kind`` :data:`REPORT_KIND`) and
   ``OUT/predictions.png`` (frames with true and predicted masks for expressions of each cue type);
   the report gives J per clause kind of test_s and S and the empty share per null kind of
   test_n, each with the audio zeroed too, and the :data:`GOALS`.

``key=value`` items override the training recipe or the model config, as for ``refavs train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from refavs.baselines import baseline_scores
from refavs.data.check import check_dataset
from refavs.data.masks import MediaError
from refavs.data.metadata import MetadataError, read_metadata
from refavs.data.writer import atomic_write_bytes
from refavs.features.config import get_feature_config
from refavs.models.registry import get_model_config
from refavs.scoring.cues import CUE_TYPES
from refavs.scoring.report_kinds import DEMO_REPORT_KIND as REPORT_KIND
from refavs.scoring.score import ScoreReport, expression_cues
from refavs.scoring.table import format_report
from refavs.synth.generate import generate, is_generation
from refavs.synth.presets import get_preset
from refavs.training.cli import split_overrides
from refavs.training.config import get_train_config, recipe_for

EVAL_SPLITS: tuple[str, ...] = ("val", "test_s", "test_u", "test_n")
MIX_SPLITS: tuple[str, str] = ("test_s", "test_u")
GRID_EXAMPLES_PER_CUE = 2
MODEL_CONFIG = "lite"
"""The model config the main job trains (``--config``)."""
DEFAULT_PRESET = "medium"
"""The Ref-AVS Synth preset the main job generates (``--preset``)."""


def predictions_dir(out_dir: str | Path, config: str = MODEL_CONFIG) -> Path:
    """Where the main job writes the test predictions of the model config ``config`` (scorer's layout)."""
    return Path(out_dir) / "predictions" / config


@dataclass(frozen=True)
class Goal:
    """A target of the main job: ``value(report) >= threshold`` (or ``<=`` when ``lower``)."""

    name: str
    threshold: float
    lower: bool = False

    def met(self, value: float | None) -> bool:
        """Whether ``value`` reaches the goal; a value that could not be computed (None, NaN) does not."""
        if value is None or math.isnan(value):
            return False
        return value <= self.threshold if self.lower else value >= self.threshold


AUDIO_CLAUSES: tuple[str, ...] = ("loudest", "quietest", "highest_pitch", "lowest_pitch")
"""The clause kinds that only the sound decides, whose test_s J must drop with the audio zeroed."""

MUTED_CHANGED: tuple[str, ...] = ("muted", "changed")
"""The null kinds that only the sound makes null: with the audio zeroed, S should rise on them."""

GOALS: tuple[Goal, ...] = (
    Goal("test_s J", 0.72), Goal("test_s F", 0.75), Goal("test_u J", 0.58),
    Goal("test_n S", 0.05, lower=True), Goal("test_n S muted", 0.02, lower=True),
    Goal("test_n S changed", 0.02, lower=True), Goal("test_n empty share", 0.90),
    Goal("test_n S muted+changed without audio - with audio", 0.05),
    Goal("test_s J - J without text", 0.25),
    Goal("test_s needs_audio J - J without audio", 0.15),
    *(Goal(f"test_s J {clause} drop without audio", 0.10) for clause in AUDIO_CLAUSES),
    Goal("minutes", 15.0, lower=True),
)
"""The goals of the main job on Ref-AVS Synth medium: it segments, it reads (zeroing
the text costs test_s J), it listens (zeroing the audio costs J on the test_s rows that only
the sound can decide, and on each clause kind about loudness or pitch), it answers nothing when
a sentence refers to nothing (S per kind of null row, the share of null frames left empty, and
S rising on the muted and changed rows when the audio is zeroed), within 15 minutes. A goal
whose value cannot be computed (a clause or null kind absent from the data) is n/a and not met."""


def _number(value: float | None) -> float | None:
    """``value``, or None when it is missing or NaN (JSON's null, n/a in tables)."""
    return None if value is None or math.isnan(value) else float(value)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else _number(a - b)


def pooled_s(results: Sequence) -> float | None:
    """S of several groups of frames of one size pooled by frames (``S = sqrt(share)``, so the
    shares ``S**2`` are averaged weighted by ``n_frames``); None without frames."""
    frames = sum(r.n_frames for r in results)
    return math.sqrt(sum(r.S ** 2 * r.n_frames for r in results) / frames) if frames else None


@dataclass
class DemoReport:
    """What :func:`run_demo` measured (also written as ``report.json``)."""

    out_dir: Path
    data_dir: Path
    scores: dict = field(default_factory=dict)
    without_audio: dict = field(default_factory=dict)
    without_text: dict = field(default_factory=dict)
    as_mono: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        return sum(self.timings.values()) / 60

    def needs_audio(self) -> dict:
        """J on the ``needs_audio`` rows, with and without audio: of test_s and test_u together,
        and per split (``splits``: test_s, test_u, each with ``J``, ``J_without_audio``,
        ``n_expressions``)."""
        def pooled(scores, splits) -> tuple[float, int]:
            groups = [scores[s].cues.get("needs_audio") for s in splits if s in scores]
            groups = [g for g in groups if g is not None]
            frames = sum(g.n_frames for g in groups)
            return (sum(g.J * g.n_frames for g in groups) / frames if frames else float("nan"),
                    sum(g.n_expressions for g in groups))

        def entry(splits) -> dict:
            j, n = pooled(self.scores, splits)
            return {"J": j, "J_without_audio": pooled(self.without_audio, splits)[0], "n_expressions": n}

        return {**entry(MIX_SPLITS), "splits": {s: entry((s,)) for s in MIX_SPLITS}}

    def clauses_test_s(self) -> dict[str, dict]:
        """J per clause kind of test_s, with and without audio: ``{clause: {"J", "J_without_audio",
        "drop", "n"}}`` (None where not computed); empty without the metadata's clause column."""
        with_audio = self.scores["test_s"].clauses if "test_s" in self.scores else {}
        without = self.without_audio["test_s"].clauses if "test_s" in self.without_audio else {}
        out = {}
        for clause, r in with_audio.items():
            j_without = _number(without[clause].J) if clause in without else None
            out[clause] = {"J": _number(r.J), "J_without_audio": j_without,
                           "drop": _difference(_number(r.J), j_without), "n": r.n_expressions}
        return out

    def null_kinds_test_n(self) -> dict[str, dict]:
        """S and the empty share per kind of null row of test_n, with and without audio:
        ``{kind: {"S", "S_without_audio", "empty_share", "empty_share_without_audio", "n"}}``."""
        with_audio = self.scores["test_n"].null_kinds if "test_n" in self.scores else {}
        without = self.without_audio["test_n"].null_kinds if "test_n" in self.without_audio else {}
        out = {}
        for kind, r in with_audio.items():
            w = without.get(kind)
            out[kind] = {"S": _number(r.S), "S_without_audio": None if w is None else _number(w.S),
                         "empty_share": _number(r.empty_share),
                         "empty_share_without_audio": None if w is None else _number(w.empty_share),
                         "n": r.n_expressions}
        return out

    def goal_values(self) -> dict[str, float | None]:
        """The value of each of :data:`GOALS`, None where it cannot be computed."""
        def result(scores, split):
            return scores[split].result if split in scores else None

        def attr(r, name):
            return None if r is None else _number(getattr(r, name))

        seen, unseen, null = (result(self.scores, s) for s in ("test_s", "test_u", "test_n"))
        kinds = self.scores["test_n"].null_kinds if "test_n" in self.scores else {}
        kinds_without = self.without_audio["test_n"].null_kinds if "test_n" in self.without_audio else {}

        def muted_changed_rise() -> float | None:
            if not all(k in kinds and k in kinds_without for k in MUTED_CHANGED):
                return None
            return _difference(pooled_s([kinds_without[k] for k in MUTED_CHANGED]),
                               pooled_s([kinds[k] for k in MUTED_CHANGED]))

        na = self.needs_audio()["splits"]["test_s"]
        clauses = self.clauses_test_s()
        values = {
            "test_s J": attr(seen, "J"), "test_s F": attr(seen, "F"), "test_u J": attr(unseen, "J"),
            "test_n S": attr(null, "S"), "test_n S muted": attr(kinds.get("muted"), "S"),
            "test_n S changed": attr(kinds.get("changed"), "S"),
            "test_n empty share": attr(null, "empty_share"),
            "test_n S muted+changed without audio - with audio": muted_changed_rise(),
            "test_s J - J without text": _difference(attr(seen, "J"), attr(result(self.without_text, "test_s"), "J")),
            "test_s needs_audio J - J without audio": _difference(_number(na["J"]), _number(na["J_without_audio"])),
            **{f"test_s J {c} drop without audio": clauses.get(c, {}).get("drop") for c in AUDIO_CLAUSES},
            "minutes": self.minutes if self.timings else None,
        }
        return {g.name: values[g.name] for g in GOALS}

    def to_dict(self) -> dict:
        values = self.goal_values()
        mix = {k: sum(getattr(self.scores[s].result, k) for s in MIX_SPLITS) / 2 for k in ("J", "F")}
        return {
            "kind": REPORT_KIND,
            "data_dir": str(self.data_dir),
            "splits": {name: score.to_dict() for name, score in self.scores.items()},
            "mix": mix,
            "needs_audio": self.needs_audio(),
            "clauses_test_s": self.clauses_test_s(),
            "null_kinds_test_n": self.null_kinds_test_n(),
            "without_audio": {name: score.to_dict() for name, score in self.without_audio.items()},
            "without_text": {name: score.to_dict() for name, score in self.without_text.items()},
            **({"as_mono": {name: score.to_dict() for name, score in self.as_mono.items()}} if self.as_mono else {}),
            "baseline_every_object": {name: score.to_dict() for name, score in self.baseline.items()},
            "goals": {g.name: {"goal": g.threshold, "lower_is_better": g.lower, "value": values[g.name],
                               "met": g.met(values[g.name])} for g in GOALS},
            "train": self.train,
            "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
            "minutes": round(self.minutes, 2),
        }


def _cell(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _markdown(report: DemoReport, preset: str, seed: int, model: str) -> str:
    d = report.to_dict()
    lines = [f"# refavs demo: {model} on Ref-AVS Synth", "",
             f"Dataset `{report.data_dir}` (Ref-AVS Synth {preset}, seed {seed}); run `{report.train['run_dir']}`, "
             f"{report.train['steps']} steps; {d['minutes']:.1f} minutes in all "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in d['timings_s'].items())}).", "",
             "| goal | target | reached | met |", "| --- | --- | --- | --- |"]
    for name, g in d["goals"].items():
        sign = "<=" if g["lower_is_better"] else ">="
        lines.append(f"| {name} | {sign} {g['goal']} | {_cell(g['value'])} | {'yes' if g['met'] else 'no'} |")
    na = d["needs_audio"]
    lines += [""] + [f"needs_audio expressions of {name} ({g['n_expressions']}): J {g['J']:.3f} with audio, "
                     f"{g['J_without_audio']:.3f} with the audio features zeroed." for name, g in
                     (("test_s + test_u", na), *na["splits"].items())] + [""]
    if report.without_text:  # how much the model reads the expression
        parts = []
        for name, scores in report.without_text.items():
            metric = "S" if name == "test_n" else "J"
            parts.append(f"{name} {metric} {getattr(scores.result, metric):.3f} "
                         f"(with text {getattr(report.scores[name].result, metric):.3f})")
        lines += ["With the text features zeroed: " + ", ".join(parts) + ".", ""]
    if report.as_mono:  # how much hearing the side adds (a model of stereo features)
        parts = []
        for name, scores in report.as_mono.items():
            heard = report.scores[name]
            part = f"{name} J {scores.result.J:.3f} (stereo {heard.result.J:.3f})"
            if "needs_audio" in scores.cues and "needs_audio" in heard.cues:
                part += (f", its needs_audio rows {scores.cues['needs_audio'].J:.3f} "
                         f"(stereo {heard.cues['needs_audio'].J:.3f})")
            parts.append(part)
        lines += ["With the same sound from both sides (`--ablate mono`): " + "; ".join(parts) + ".", ""]
    if d["clauses_test_s"]:
        lines += ["J per clause kind of test_s, with the audio features zeroed too:", "",
                  "| clause | n | J | J audio zeroed | drop |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {c} | {v['n']} | {_cell(v['J'])} | {_cell(v['J_without_audio'])} | {_cell(v['drop'])} |"
                  for c, v in d["clauses_test_s"].items()] + [""]
    if d["null_kinds_test_n"]:
        lines += ["Null rows of test_n per kind (S lower is better, empty share higher is better), with the "
                  "audio features zeroed too:", "",
                  "| kind | n | S | S audio zeroed | empty share | empty share audio zeroed |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['n']} | {_cell(v['S'])} | {_cell(v['S_without_audio'])} | {_cell(v['empty_share'])} "
                  f"| {_cell(v['empty_share_without_audio'])} |" for k, v in d["null_kinds_test_n"].items()] + [""]
    for title, scores in ((model, report.scores), (f"{model}, audio zeroed", report.without_audio),
                          (f"{model}, text zeroed", report.without_text),
                          *(((f"{model}, the same sound from both sides", report.as_mono),) if report.as_mono else ()),
                          ("baseline every-object", report.baseline)):
        lines += [f"## {title}", "", "```", format_report(ScoreReport(scores, "dataset")), "```", ""]
    lines += ["![true and predicted masks](predictions.png)", ""]
    return "\n".join(lines)


def _grid_rows(data_dir: Path, splits: Sequence[str]):
    """A few expressions of each cue type (first in metadata order), with their tags."""
    rows, used = [], set()
    expressions = read_metadata(data_dir, splits)
    for cue in CUE_TYPES:
        picked = [e for e in expressions if cue in expression_cues(e) and e.uid not in used]
        for e in picked[:GRID_EXAMPLES_PER_CUE]:
            used.add(e.uid)
            rows.append((e, ";".join(expression_cues(e))))
    return rows


def run_demo(out_dir: str | Path, preset: str = DEFAULT_PRESET, seed: int = 0, workers: int = 2,
             overrides: Sequence[str] = (), device: str | None = None, log=print,
             config: str = MODEL_CONFIG) -> DemoReport:
    """The main job (see the module docstring); returns the report it wrote."""
    from refavs.models.build import load_pretrained  # pulls in torch
    from refavs.training.evaluate import evaluate_variants  # pulls in torch
    from refavs.training.trainer import prepare_features, train  # pulls in torch
    from refavs.viz.predictions import prediction_grid  # pulls in torch

    out_dir = Path(out_dir)
    data_dir, run_dir = out_dir / "data", out_dir / "run"
    report = DemoReport(out_dir=out_dir, data_dir=data_dir)
    train_items, model_items = split_overrides(list(overrides))
    model_config = get_model_config(config, model_items)
    pred_dir = predictions_dir(out_dir, model_config.name)
    train_config = get_train_config(recipe_for(config), train_items)
    model_name = f"EEMC {config}" if not config.startswith("lite") else f"{config} EEMC"
    # a model of stereo features is trained on stereo tracks
    stereo = get_feature_config(model_config.feature_preset).audio.stereo
    spec = dataclasses.replace(get_preset(preset), stereo=True) if stereo else get_preset(preset)
    described = f"{preset}{', stereo' if stereo else ''}, seed {seed}"

    t = time.perf_counter()
    if is_generation(data_dir, seed=seed, preset=spec):
        log(f"[1/6] reusing Ref-AVS Synth ({described}) in {data_dir}")
    else:
        log(f"[1/6] generating Ref-AVS Synth ({described}) in {data_dir} ...")
        summary = generate(data_dir, seed=seed, preset=spec, workers=workers, force=True)
        log("      expressions: " + ", ".join(f"{s} {c['expressions']}" for s, c in summary.counts.items()))
    log("[2/6] checking the dataset ...")
    check = check_dataset(data_dir, workers=workers)
    if not check.ok:
        shown = "\n  ".join(str(p) for p in check.problems[:10])
        raise RuntimeError(f"{data_dir}: the generated dataset has {len(check.problems)} problem(s):\n  {shown}")
    log(f"      {check.n_expressions} expressions, {check.n_clips} clips: no problems")
    report.timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[3/6] extracting the {model_config.feature_preset} features and masks of every split ...")
    features, store = prepare_features(data_dir, model_config, ("train", *EVAL_SPLITS), progress=sys.stderr.isatty(),
                                       media=True)  # decoded frames and masks too: no PNG decoding per step
    report.timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    resume = (run_dir / "last").exists()
    log(f"[4/6] {'resuming' if resume else 'training'} {model_name} into {run_dir} "
        f"({train_config.epochs} epochs of {train_config.batch_size} clips per step) ...")
    result = train(model_config, train_config, data_dir, run_dir, resume=resume, device=device,
                   progress=sys.stderr.isatty(), log=lambda m: log("      " + m))
    report.train = {"run_dir": str(run_dir), "steps": result.global_step, "best_val_J": result.best_J,
                    "best": str(result.best)}
    report.timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    # val's scores of this checkpoint were computed when training chose it: not run again
    known = {} if result.best_scores is None else {result.best_scores.split: result.best_scores}
    todo = [s for s in EVAL_SPLITS if s not in known]
    log(f"[5/6] evaluating {result.best.name} on {', '.join(todo)}"
        + (f" ({', '.join(known)}: scored when training chose it)" if known else "")
        + f", {', '.join(MIX_SPLITS)} and test_n with the audio features zeroed, "
        + f"{' and '.join(MIX_SPLITS)} with the text features zeroed"
        + (", test_s with the same sound from both sides" if stereo else "") + " ...")
    model = load_pretrained(result.best, device=device or "cpu")
    kwargs = dict(batch_size=train_config.eval_batch_size, device=device or "cpu",
                  mixed_precision=train_config.mixed_precision)  # as training scored val
    test_splits = EVAL_SPLITS[1:]
    # one pass over the data: each batch is loaded once, and the rows with the text zeroed share the
    # clip path with the plain ones; val chose the checkpoint, the ablations are measured on the
    # test splits of the goals
    variants = {None: todo, "audio": [*MIX_SPLITS, "test_n"], "text": list(MIX_SPLITS)}
    if stereo:  # what hearing the side adds: the same sound from both sides
        variants["mono"] = ["test_s"]
    reports = evaluate_variants(model, data_dir, test_splits, store, features.image, variants=variants,
                                save_pred=pred_dir, **kwargs)
    report.scores = {s: known.get(s) or reports[None].splits[s] for s in EVAL_SPLITS}
    report.without_audio, report.without_text = reports["audio"].splits, reports["text"].splits
    report.as_mono = reports["mono"].splits if stereo else {}
    # scored in memory from the cached masks (PNGs only for objects the cache lacks): no PNG written
    report.baseline = baseline_scores("every-object", data_dir, test_splits, store, workers=workers).splits
    report.timings["evaluate"] = time.perf_counter() - t

    log("[6/6] writing the report ...")
    prediction_grid(data_dir, pred_dir, _grid_rows(data_dir, test_splits), out_dir / "predictions.png")
    atomic_write_bytes(out_dir / "report.json", json.dumps(report.to_dict(), indent=2).encode(), what="the report")
    markdown = _markdown(report, preset, seed, model_name)
    atomic_write_bytes(out_dir / "report.md", markdown.encode(), what="the report")
    log(markdown.split("\n## ")[0])
    log(f"report: {out_dir / 'report.md'}, {out_dir / 'report.json'}, {out_dir / 'predictions.png'}")
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: Ref-AVS Synth -> features -> train the lite EEMC -> evaluate -> report",
        description="Generate Ref-AVS Synth, check it, extract features, train a model config (lite), evaluate "
                    "every split with and without audio and text beside the every-object baseline, and write "
                    "OUT/report.md, OUT/report.json and OUT/predictions.png. Re-running reuses the data, "
                    "the features and the run (an interrupted training resumes). key=value items override "
                    "the training recipe or the model config, as for `refavs train`.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=("tiny", "small", "medium", "large"),
                   help=f"Ref-AVS Synth size (default {DEFAULT_PRESET}; tiny is a smoke test)")
    p.add_argument("--config", default=MODEL_CONFIG, choices=("lite", "lite-stereo", "tiny"),
                   help=f"the model config to train (default {MODEL_CONFIG}; lite-stereo: lite hearing where "
                        f"sounds come from, on Ref-AVS Synth with stereo tracks; tiny: the Mask2Former EEMC in small)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="processes/threads for generation and I/O (default 2)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when available)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe or model config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refavs.features.cache import FeatureCacheError  # pulls in torch
    from refavs.training.checkpoint import ResumeError  # pulls in torch
    from refavs.training.trainer import TrainingError  # pulls in torch

    if args.workers < 1:
        print("refavs demo: error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        run_demo(args.out, args.preset, args.seed, args.workers, args.overrides, args.device, config=args.config)
    except ValueError as err:
        print(f"refavs demo: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, MediaError, MetadataError, FeatureCacheError, ResumeError, TrainingError, OSError) as err:
        print(f"refavs demo: error: {err}", file=sys.stderr)
        return 1
    return 0
