"""Every input a user gives is bounded, and so is the time it costs: the longest accepted
expression takes about as long as a five-word one to draw into the overlay; one character more is
refused on every path (``refavs predict --expression``, a CSV row, the pipeline, the web demo's
handler) with the same message; frames over the largest side are refused before any is decoded.
A tiny EEMC with random weights stands in for a trained checkpoint."""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from refavs.app import AppConfig, check_expression, expression_hint, predict, text_tokens
from refavs.cli import main as refavs_main
from refavs.data.video_writer import write_video
from refavs.features.config import TextFeatureConfig
from refavs.inference import InferenceError, RefAVSPipeline, decode_video
from refavs.inference.limits import MAX_EXPRESSION_CHARS, MAX_FRAME_SIDE, expression_length_error
from refavs.inference.overlay import ELLIPSIS, OverlayStyle, _fit, _font, overlay_frame, overlay_frames
from refavs.inference.pipeline import check_expression_text

SHORT = "the square that moves left"
"""An ordinary five-word expression."""

LONGEST = ("the red object on the far left of the man who plays the loudest guitar, " * 10)[:MAX_EXPRESSION_CHARS]
"""The longest expression accepted: exactly MAX_EXPRESSION_CHARS characters of words."""

TOO_LONG = LONGEST + "s"
"""One character over the limit."""

TOKENS = TextFeatureConfig().max_tokens
"""Tokens of an expression the model reads (the text feature config's)."""

TIME_RATIO = 3.0
"""The overlay of the longest accepted expression may take at most this multiple of a short one's."""

REPEATS = 5
"""Timed runs of each expression (interleaved; the fastest counts, so a busy machine only adds noise)."""

CLIP_FRAMES = 10
FRAME_HW = (48, 64)
RATE = 16_000


def quadratic_fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """The caption rule by its definition: drop the last character until the rest and an ellipsis fit."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + ELLIPSIS, font=font) > width:
        text = text[:-1]
    return text + ELLIPSIS


class CountingDraw:
    """An ImageDraw that counts its measurements of more than one character."""

    def __init__(self):
        self.draw = ImageDraw.Draw(Image.new("RGB", (4, 4)))
        self.long_calls = 0

    def textlength(self, text, font=None):
        self.long_calls += len(text) > 1
        return self.draw.textlength(text, font=font)


@pytest.fixture(scope="module")
def clip_arrays():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(CLIP_FRAMES, *FRAME_HW, 3), dtype=np.uint8)
    probabilities = rng.random((CLIP_FRAMES, 256, 256)).astype(np.float32)
    return frames, probabilities, [t + 0.5 for t in range(CLIP_FRAMES)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    root = tmp_path_factory.mktemp("bounds")
    torch.manual_seed(0)
    EEMC(get_model_config("tiny")).save_pretrained(root / "ckpt")
    return root / "ckpt"


@pytest.fixture(scope="module")
def pipe(checkpoint) -> RefAVSPipeline:
    return RefAVSPipeline.from_pretrained(checkpoint, device="cpu")


def test_the_test_expressions_sit_at_the_limit():
    assert len(SHORT.split()) == 5
    assert len(LONGEST) == MAX_EXPRESSION_CHARS and len(TOO_LONG) == MAX_EXPRESSION_CHARS + 1


# ---------------------------------------------------------------------------------- time

def test_the_longest_expression_costs_about_what_a_short_one_does(clip_arrays):
    frames, probabilities, times = clip_arrays
    overlay_frames(frames, probabilities, SHORT, times)  # warm-up: the font, the first allocations
    best = {SHORT: math.inf, LONGEST: math.inf}
    for _ in range(REPEATS):
        for expression in best:
            began = time.perf_counter()
            overlay_frames(frames, probabilities, expression, times)
            best[expression] = min(best[expression], time.perf_counter() - began)
    assert best[LONGEST] <= TIME_RATIO * best[SHORT], (
        f"overlay of {len(LONGEST)} characters: {best[LONGEST]:.3f} s, of 5 words: {best[SHORT]:.3f} s")


@pytest.mark.parametrize("length", [MAX_EXPRESSION_CHARS, 10 * MAX_EXPRESSION_CHARS])
def test_fitting_a_caption_measures_a_few_prefixes_whatever_the_length(length):
    draw = CountingDraw()
    text = (LONGEST * 10)[:length]
    width = OverlayStyle().max_width - 8
    fitted = _fit(draw, text, _font(OverlayStyle().font_size), width)
    assert fitted.endswith(ELLIPSIS) and text.startswith(fitted[:-1])
    assert draw.long_calls <= 4  # the whole text, the estimated cut and its neighbour (plus the ellipsis)


def test_captions_are_cut_exactly_where_the_definition_cuts_them():
    draw = ImageDraw.Draw(Image.new("RGB", (4, 4)))
    font = _font(OverlayStyle().font_size)
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMW iil.,;'\"-éü漢字🙂"
    texts = [SHORT, LONGEST, "The object making a sound by being played by the right hand of the man wearing blue "
             "clothes with white spots.", "", "W" * 80, "i" * 300]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160))) for _ in range(300)]
    for text in texts:
        for width in (-6, 0, 5, 60, 200, 472, OverlayStyle().max_width - 8):
            assert _fit(draw, text, font, width) == quadratic_fit(draw, text, font, width), (text, width)


def test_a_caption_with_line_breaks_is_drawn_on_one_line(clip_arrays):
    frames, probabilities, _ = clip_arrays
    broken = overlay_frame(frames[0], probabilities[0], ["the dog\nthat barks", "frame 0"])
    plain = overlay_frame(frames[0], probabilities[0], ["the dog that barks", "frame 0"])
    np.testing.assert_array_equal(broken, plain)


# ---------------------------------------------------------------------------------- expression length

def test_the_message_names_the_input_the_limit_and_the_tokens_read():
    assert expression_length_error(LONGEST, TOKENS) is None
    message = expression_length_error(TOO_LONG, TOKENS, "--expression")
    assert message == (f"--expression is {MAX_EXPRESSION_CHARS + 1:,} characters long, over the limit of "
                       f"{MAX_EXPRESSION_CHARS:,} characters (the model reads only the first {TOKENS} tokens "
                       f"of an expression)")


def test_the_pipeline_refuses_one_character_more_before_reading_the_video(pipe, tmp_path):
    assert pipe.check_expression(LONGEST)  # accepted (and truncated to the tokens the model reads)
    with pytest.raises(InferenceError) as refused:
        pipe(tmp_path / "missing.mp4", TOO_LONG)
    assert str(refused.value) == expression_length_error(TOO_LONG, pipe.features.text.max_tokens)
    with pytest.raises(InferenceError, match="empty"):
        pipe(tmp_path / "missing.mp4", " \n ")
    with pytest.raises(InferenceError, match="over the limit"):
        check_expression_text(" " * (MAX_EXPRESSION_CHARS + 1))


def test_predict_refuses_a_long_expression_first_with_one_line(tmp_path, capsys):
    for frames, next_check in (("10", "checkpoint not found"), ("all", "video file not found")):
        argv = ["predict", "--checkpoint", str(tmp_path / "no-checkpoint"), "--video", str(tmp_path / "no.mp4"),
                "--frames", frames, "--out", str(tmp_path / "out"), "--expression"]
        assert refavs_main([*argv, TOO_LONG]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "refavs predict: error: " + expression_length_error(TOO_LONG, TOKENS, "--expression")
        assert refavs_main([*argv, LONGEST]) == 2  # accepted: the next check fails
        assert next_check in capsys.readouterr().err


def test_a_csv_row_over_the_limit_fails_by_its_number_and_the_model_never_loads(checkpoint, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.setattr(RefAVSPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: 1 / 0))
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("video", "expression"), ("missing.mp4", "  "), ("missing.mp4", TOO_LONG)])
    out = tmp_path / "out"
    assert refavs_main(["predict", "--checkpoint", str(checkpoint), "--csv", str(rows), "--out", str(out),
                        "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{rows} row 1: the expression is empty" in err
    assert f"{rows} row 2: " + expression_length_error(TOO_LONG, TOKENS) in err
    index = json.loads((out / "summary.json").read_text())
    assert [e["row"] for e in index["errors"]] == [1, 2]


def test_the_web_demo_refuses_it_with_the_same_message(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", [np.zeros((32, 32, 3), np.uint8)] * 8, 4,
                       np.zeros(2 * RATE, np.float32), RATE)
    calls = []
    out = predict(lambda *a, **k: calls.append(a), str(clip), TOO_LONG, 0, AppConfig(), tmp_path / "work")
    assert out["error"] and calls == []
    with pytest.raises(InferenceError) as refused:
        check_expression_text(TOO_LONG)
    assert out["status"] == "**Error:** " + str(refused.value)
    assert check_expression(f"  {LONGEST}\n") == LONGEST  # spaces around are not counted
    model = SimpleNamespace(features=SimpleNamespace(text=SimpleNamespace(max_tokens=7)))
    assert text_tokens(model) == 7 and text_tokens(object()) == TOKENS
    hint = expression_hint(TOKENS)
    assert f"{MAX_EXPRESSION_CHARS} characters" in hint and f"first {TOKENS} tokens" in hint


# ---------------------------------------------------------------------------------- frame size

def test_frames_over_the_largest_side_are_refused_before_decoding(checkpoint, pipe, tmp_path, capsys):
    wide = write_video(tmp_path / "wide.mp4", [np.zeros((16, MAX_FRAME_SIDE + 2, 3), np.uint8)] * 4, 2,
                       np.zeros(2 * RATE, np.float32), RATE)
    with pytest.raises(InferenceError, match=f"{MAX_FRAME_SIDE + 2}x16 pixels; the largest side accepted is "
                                             f"{MAX_FRAME_SIDE} pixels"):
        decode_video(wide)
    assert refavs_main(["predict", "--checkpoint", str(checkpoint), "--video", str(wide), "--expression", SHORT,
                        "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(wide) in err and "largest side accepted" in err
    tall = np.zeros((CLIP_FRAMES, MAX_FRAME_SIDE + 1, 2, 3), np.uint8)
    with pytest.raises(InferenceError, match="largest side accepted"):
        pipe((tall, np.zeros(RATE, np.float32), RATE), SHORT)
    edge = np.zeros((CLIP_FRAMES, MAX_FRAME_SIDE, 2, 3), np.uint8)
    assert pipe.load((edge, np.zeros(RATE, np.float32), RATE)).frames.shape == edge.shape
