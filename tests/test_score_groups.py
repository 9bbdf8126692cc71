"""Scores per clause kind and per kind of null row: grouping from hand-built rows, the real
benchmark's folder-prefix fall-back, the tables and the JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from types import MappingProxyType

import numpy as np
import pytest
import torch

from refavs.cli import main
from refavs.data import DatasetLayout, load_clip_masks, read_metadata
from refavs.data.records import Expression
from refavs.data.writer import write_metadata
from refavs.metrics import RefAVSMetrics
from refavs.scoring.predictions import write_prediction
from refavs.scoring.score import (ScoreReport, clause_groups, null_kind_groups, score_predictions, split_score)
from refavs.scoring.table import format_report

T, H, W = 2, 8, 8


def row(i, split="test_s", uid=None, **extra) -> Expression:
    vid = f"clip{i}_0_10000"
    return Expression(vid, uid or f"{vid}_drum_{i}", split, 0, "the drum", row=i + 2,
                      extra=MappingProxyType({k: str(v) for k, v in extra.items()}))


def accumulate(rows, probs, masks) -> RefAVSMetrics:
    metrics = RefAVSMetrics()
    metrics.update(torch.as_tensor(probs), torch.as_tensor(masks), logits=False)
    assert len(metrics) == len(rows)
    return metrics


def test_clause_groups_from_the_column_in_table_order():
    rows = [row(0, clause="relation"), row(1, clause="loudest"), row(2), row(3, clause=" loudest "),
            row(4, clause="zzz_new"), row(5, clause="none"), row(6, clause="")]
    assert clause_groups(rows) == {"none": [5], "loudest": [1, 3], "relation": [0], "zzz_new": [4]}
    assert list(clause_groups(rows)) == ["none", "loudest", "relation", "zzz_new"]
    assert clause_groups([row(0), row(1)]) == {}                    # the real benchmark: no clause column


def test_null_kind_groups_from_the_column_and_the_folder_prefix():
    synth = [row(0, "test_n", null_kind="changed"), row(1, "test_n", null_kind="muted"), row(2, "test_s"),
             row(3, "test_n", null_kind="muted"), row(4, "test_s", null_kind="")]
    assert null_kind_groups(synth) == {"muted": [1, 3], "changed": [0]}
    # the real benchmark: no null_kind column, the kind is the media folder's prefix
    real = [row(0, "test_n", uid="null_m-clip0_0_10000_null_1"), row(1, "test_s"),
            row(2, "test_n", uid="null_c-clip2_0_10000_null_1"), row(3, "test_n", uid="null_m-clip3_0_10000_null_1")]
    assert null_kind_groups(real) == {"null_m": [0, 3], "null_c": [2]}


def test_split_score_per_clause_and_null_kind_from_one_accumulator():
    rows = [row(0, clause="loudest"), row(1, clause="quietest"), row(2, clause="loudest"),
            row(3, "test_n", null_kind="muted", clause="loudest"), row(4, "test_n", null_kind="changed")]
    probs, masks = np.zeros((5, T, H, W), np.float32), np.zeros((5, T, H, W), bool)
    masks[:3, :, :4, :4] = True
    probs[0, :, :4, :4] = 1.0                    # J 1
    probs[1, :, :4, :8] = 1.0                    # J 0.5
    probs[2, :, :4, :2] = 1.0                    # J 0.5
    probs[3, 0, :, :] = 1.0                      # muted: one frame full, one empty -> S sqrt(1/2), empty 1/2
    probs[4, :, :2, :2] = 0.5                    # changed: exactly 0.5 is not positive -> S 0, empty 1
    rows_metrics = accumulate(rows, probs, masks)
    score = split_score("test_s", rows_metrics, rows)
    assert set(score.clauses) == {"loudest", "quietest"}
    assert score.clauses["quietest"].J == pytest.approx(0.5) and score.clauses["quietest"].n_expressions == 1
    loudest = score.clauses["loudest"]            # rows 0, 2 and the muted null row (J 0.5 on its frames)
    assert loudest.n_expressions == 3 and loudest.J == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert list(score.null_kinds) == ["muted", "changed"]
    muted, changed = score.null_kinds["muted"], score.null_kinds["changed"]
    assert muted.S == pytest.approx(math.sqrt(0.5)) and muted.empty_share == pytest.approx(0.5)
    assert changed.S == 0.0 and changed.empty_share == 1.0 and changed.n_frames_without_object == T
    assert score.result.empty_share == pytest.approx(3 / 4)     # 4 null frames over the split, 3 empty
    d = json.loads(json.dumps(score.to_dict()))
    assert set(d["clauses"]) == {"loudest", "quietest"} and d["null_kinds"]["muted"]["empty_share"] == 0.5
    assert d["null_kinds"]["changed"]["S"] == 0.0 and d["clauses"]["quietest"]["n_expressions"] == 1


def test_format_report_prints_the_clause_and_null_kind_tables():
    rows = [row(0, clause="loudest"), row(1, clause="relation"), row(2, "test_n", null_kind="muted"),
            row(3, "test_n", null_kind="absent")]
    probs, masks = np.zeros((4, T, H, W), np.float32), np.zeros((4, T, H, W), bool)
    masks[:2, :, :4, :4] = True
    probs[0, :, :4, :4] = 1.0
    probs[3, 1] = 1.0
    metrics = accumulate(rows, probs, masks)
    seen = split_score("test_s", metrics, rows)
    null = dataclasses.replace(seen, split="test_n", clauses={})
    plain = dataclasses.replace(seen, clauses={}, null_kinds={})
    text = format_report(ScoreReport({"test_s": seen, "test_n": null}, "dataset"))
    lines = text.splitlines()
    start = lines.index("J per clause (n = expressions)")
    assert lines[start + 1].split() == ["clause", "test_s"]             # test_n has no clause: no column
    assert lines[start + 2].split() == ["loudest", "1.000", "(1)"]
    assert lines[start + 3].split() == ["relation", "0.000", "(1)"]      # empty prediction on an object
    kinds = next(i for i, line in enumerate(lines) if line.startswith("null rows per kind"))
    assert kinds > start and lines[kinds + 1].split() == ["kind", "test_s", "test_n"]
    assert lines[kinds + 2].split() == ["muted", "0.000", "/", "1.000", "(1)", "0.000", "/", "1.000", "(1)"]
    assert lines[kinds + 3].split() == ["absent", "0.707", "/", "0.500", "(1)", "0.707", "/", "0.500", "(1)"]
    # the lines above the new tables are those of a report without groups
    before = format_report(ScoreReport({"test_s": plain, "test_n": dataclasses.replace(plain, split="test_n")},
                                       "dataset"))
    assert text.startswith(before) and "J per clause" not in before and "null rows per kind" not in before


@pytest.fixture()
def grouped_dataset(toy_dataset):
    """The toy dataset with Ref-AVS Synth's clause and null_kind columns."""
    layout = DatasetLayout(toy_dataset)
    rows = read_metadata(toy_dataset)
    clauses = iter(["loudest", "first_sound"] * 10)
    rows = [dataclasses.replace(e, extra=MappingProxyType(
        {"clause": "none", "null_kind": "muted"} if e.split == "test_n" else {"clause": next(clauses), "null_kind": ""}))
        for e in rows]
    write_metadata(layout.metadata, rows, extra_columns=("clause", "null_kind"))
    return toy_dataset


def write_truth(data_dir, pred_dir):
    layout = DatasetLayout(data_dir)
    for e in read_metadata(data_dir):
        write_prediction(pred_dir, e.uid, load_clip_masks(layout, e).astype(np.float32))


def test_score_predictions_real_benchmark_fallback_and_cli(toy_dataset, tmp_path, capsys):
    """The toy dataset has no clause or null_kind column; its null row is null_c-<vid>."""
    write_truth(toy_dataset, tmp_path / "pred")
    report = score_predictions(toy_dataset, ["test_s", "test_n"], tmp_path / "pred", workers=1)
    assert report.splits["test_s"].clauses == {} and report.splits["test_s"].null_kinds == {}
    assert set(report.splits["test_n"].null_kinds) == {"null_c"}
    assert report.splits["test_n"].null_kinds["null_c"].empty_share == 1.0
    assert main(["score", "--data-dir", str(toy_dataset), "--split", "test_s", "test_n",
                 "--pred-dir", str(tmp_path / "pred")]) == 0
    out = capsys.readouterr().out
    assert "null rows per kind" in out and "null_c" in out and "J per clause" not in out


def test_score_predictions_with_the_columns(grouped_dataset, tmp_path, capsys):
    write_truth(grouped_dataset, tmp_path / "pred")
    report = score_predictions(grouped_dataset, ["test_s", "test_u", "test_n"], tmp_path / "pred", workers=1)
    assert set(report.splits["test_s"].clauses) == {"loudest", "first_sound"}
    assert report.splits["test_s"].clauses["loudest"].J == 1.0
    assert set(report.splits["test_n"].null_kinds) == {"muted"} and set(report.splits["test_n"].clauses) == {"none"}
    assert main(["score", "--data-dir", str(grouped_dataset), "--split", "test_s", "test_n",
                 "--pred-dir", str(tmp_path / "pred"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["splits"]["test_s"]["clauses"]["first_sound"]["n_expressions"] == 1
    assert data["splits"]["test_n"]["null_kinds"]["muted"]["empty_share"] == 1.0


def test_real_benchmark_null_rows_are_null_m_and_null_c(real_metadata):
    with pytest.warns(UserWarning):
        rows = read_metadata(real_metadata)
    null_rows = [e for e in rows if e.split == "test_n"]
    groups = null_kind_groups(null_rows)
    assert set(groups) == {"null_m", "null_c"} and sum(map(len, groups.values())) == len(null_rows) > 0
    assert clause_groups(rows) == {}
