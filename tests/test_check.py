from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from refavs.cli import main
from refavs.data.check import PROBLEM_KINDS, check_dataset


def test_clean_dataset(toy_dataset, capsys):
    report = check_dataset(toy_dataset)
    assert report.ok, [str(p) for p in report.problems]
    assert report.n_expressions == 9 and report.n_clips == 5 and report.n_mask_folders == 9
    assert main(["data", "check", str(toy_dataset)]) == 0
    assert "no problems found" in capsys.readouterr().out


def break_dataset(root: Path) -> None:
    media = root / "media"
    (media / "clip0_0_10000" / "frames" / "3.jpg").unlink()                          # missing-frame
    (media / "clip0_0_10000" / "frames" / "10.jpg").write_bytes(b"x")                # frame-count
    (media / "clip1_0_10000" / "frames" / "2.jpg").write_bytes(b"\xff\xd8\xff garbage")  # unreadable-frame
    (media / "clip1_0_10000" / "audio.wav").unlink()                                 # missing-audio
    (media / "clip2_0_10000" / "audio.wav").write_bytes(b"RIFF....nonsense")         # unreadable-audio
    sf.write(media / "clip3_0_10000" / "audio.wav", np.zeros(16000 * 2, dtype=np.float32), 16000)  # short-audio
    gt = root / "gt_mask"
    (gt / "clip2_0_10000" / "fid_1" / "00004.png").unlink()                          # missing-mask
    (gt / "clip2_0_10000" / "fid_0" / "00001.png").write_bytes(b"\x89PNG broken")     # unreadable-mask
    from PIL import Image
    Image.new("L", (17, 9)).save(gt / "clip3_0_10000" / "fid_0" / "00000.png")        # mask-size
    with open(root / "metadata.csv", "a", encoding="utf-8") as f:
        f.write("clip0_0_10000,clip0_0_10000_drum_1,test_s,0,Repeated uid\n")          # duplicate-uid
        f.write("clip0_0_10000,clip0_0_10000_drum_9,train,7,No such fid\n")            # missing-mask-folder
        f.write("clip0_0_10000,clip0_0_10000_drum_10,train,0,  \n")                    # empty-expression
        f.write("clip0_0_10000,clip0_0_10000_drum_11,TODO,0,Unknown split\n")          # unknown-split
        f.write("clip0_0_10000,clip0_0_10000_drum_12,train,0\n")                       # bad-row
        f.write("gone_0_10000,gone_0_10000_cat_1,train,0,No media\n")                  # missing-media


def test_every_problem_is_listed_with_its_file_or_row(toy_dataset, capsys):
    break_dataset(toy_dataset)
    report = check_dataset(toy_dataset)
    kinds = report.summary()
    expected = {"missing-frame", "frame-count", "unreadable-frame", "missing-audio", "unreadable-audio",
                "short-audio", "missing-mask", "unreadable-mask", "mask-size", "duplicate-uid",
                "missing-mask-folder", "empty-expression", "unknown-split", "bad-row", "missing-media"}
    assert expected <= set(kinds), kinds
    assert set(kinds) <= set(PROBLEM_KINDS)
    text = {p.kind: str(p) for p in report.problems}
    assert "frames/3.jpg" in text["missing-frame"]
    assert "metadata.csv:" in text["duplicate-uid"] and "already on line" in text["duplicate-uid"]
    assert "fid_7" in text["missing-mask-folder"]
    assert "17x9" in text["mask-size"]

    code = main(["data", "check", str(toy_dataset)])
    out = capsys.readouterr().out
    assert code == 1
    assert "Traceback" not in out
    assert f"{len(report.problems)} problem(s)" in out.splitlines()[-1]

    assert main(["data", "check", str(toy_dataset), "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and payload["n_problems"] == len(report.problems)
    assert payload["summary"] == kinds


def test_split_filter_and_bad_arguments(toy_dataset, tmp_path, capsys):
    (toy_dataset / "media" / "clip0_0_10000" / "audio.wav").unlink()  # a train clip
    assert main(["data", "check", str(toy_dataset), "--split", "test_s", "test_n"]) == 0
    assert main(["data", "check", str(toy_dataset), "--split", "train"]) == 1
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "absent")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    try:
        main(["data", "check", str(toy_dataset), "--split", "nope"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("argparse accepted an unknown split")


def test_missing_metadata_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset(tmp_path / "empty")
    assert [p.kind for p in report.problems] == ["missing-metadata"]
