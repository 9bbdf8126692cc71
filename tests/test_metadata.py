from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from refavs.data import DatasetLayout, MetadataError, folder_from_uid, read_metadata, scan_metadata, split_counts


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_real_metadata_counts(real_metadata):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_metadata(real_metadata)
    assert split_counts(rows) == {"train": 14113, "val": 1349, "test_s": 2288, "test_u": 1656, "test_n": 1028}
    assert len(rows) == 20459 - 25
    messages = [str(w.message) for w in caught]
    assert any("skipped 25 row(s)" in m for m in messages)
    assert len({r.vid for r in rows}) <= 3574
    assert max(r.fid for r in rows) == 32
    # null expressions (uids null_c-<vid>_null_n, null_m-<vid>_null_n) live in folders that differ from vid
    null = [r for r in rows if r.uid.startswith("null_")]
    assert all(r.uid.startswith("null_") for r in rows if r.split == "test_n")
    assert all(r.folder in (f"null_c-{r.vid}", f"null_m-{r.vid}") for r in null)
    assert all(r.folder == r.vid for r in rows if not r.uid.startswith("null_"))


def test_real_metadata_keeps_odd_expressions_verbatim(real_metadata):
    rows = read_metadata(real_metadata)
    by_uid = {r.uid: r for r in rows}
    # trailing spaces are stripped, inner text kept verbatim
    assert by_uid["2CNglKMVNtg_30000_40000_keyboard_2"].exp == "The object making a sound by being tapped with fingers."
    assert any("错误" in r.exp for r in rows)


def test_unknown_split_skipped_with_one_counting_warning(tmp_path):
    csv = write_csv(tmp_path / "metadata.csv", "vid,uid,split,fid,exp\n"
                    "a_0_1,a_0_1_cat_1,train,0,  The cat.  \n"
                    "a_0_1,a_0_1_cat_2,TODO,0,The cat\n"
                    "a_0_1,a_0_1_cat_3,weird,1,The dog\n")
    with pytest.warns(UserWarning, match=r"skipped 2 row\(s\)"):
        rows = read_metadata(csv)
    assert [r.exp for r in rows] == ["The cat."]
    assert rows[0].row == 2 and rows[0].fid == 0


def test_malformed_rows_name_file_and_row(tmp_path):
    csv = write_csv(tmp_path / "metadata.csv", "vid,uid,split,fid,exp\n"
                    "a_0_1,a_0_1_cat_1,train,0,ok\n"
                    "a_0_1,a_0_1_cat_2,train,x,bad fid\n"
                    "a_0_1,a_0_1_cat_3,train,0\n"
                    "a_0_1,a_0_1_cat_4,train,0,   \n")
    with pytest.raises(MetadataError) as info:
        read_metadata(csv)
    text = str(info.value)
    assert f"{csv}:3" in text and "fid 'x'" in text
    assert f"{csv}:4" in text and "4 fields" in text
    assert f"{csv}:5" in text and "empty" in text
    assert {p.kind for p in info.value.problems} == {"bad-row", "empty-expression"}


def test_missing_column_and_missing_file(tmp_path):
    csv = write_csv(tmp_path / "metadata.csv", "vid,uid,split,exp\nx,y,train,z\n")
    with pytest.raises(MetadataError, match="missing column"):
        read_metadata(csv)
    scan = scan_metadata(tmp_path / "nothing_here.csv")
    assert scan.problems[0].kind == "missing-metadata"


def test_extra_columns_and_duplicates(tmp_path):
    csv = write_csv(tmp_path / "metadata.csv", "vid,uid,split,fid,exp,cue\n"
                    "a_0_1,a_0_1_cat_1,test_s,0,The cat,visual\n"
                    "a_0_1,a_0_1_cat_1,test_s,1,The cat again,visual\n")
    with pytest.warns(UserWarning, match="kept 1 row"):
        rows = read_metadata(tmp_path)
    assert len(rows) == 2 and rows[0].extra["cue"] == "visual"
    with pytest.raises(ValueError, match="unknown split"):
        read_metadata(tmp_path, ["nope"])


def test_folder_rule_and_fallback(tmp_path):
    assert folder_from_uid("2_CBZqpEhhs_83000_93000_guitar_2") == "2_CBZqpEhhs_83000_93000"
    assert folder_from_uid("null_c--cLOg0sQ0Zo_420000_430000_null_1") == "null_c--cLOg0sQ0Zo_420000_430000"
    layout = DatasetLayout(tmp_path)
    (tmp_path / "media" / "v_0_1").mkdir(parents=True)
    # derived folder missing, vid present: fall back to vid
    assert layout.resolve_folder("null_c-v_0_1_null_1", "v_0_1") == "v_0_1"
    (tmp_path / "media" / "null_c-v_0_1").mkdir()
    assert layout.resolve_folder("null_c-v_0_1_null_1", "v_0_1") == "null_c-v_0_1"
