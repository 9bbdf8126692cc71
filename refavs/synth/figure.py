"""An overview picture of a Ref-AVS Synth dataset (``refavs synth --figure``; docs/synth.png).

For a few clips: the ten frames with the referred objects ringed (one colour per
expression), one strip per object telling when it is on screen and when it sounds, the
log-mel spectrogram of the audio on the same time axis (with the 0.96 s window boundaries
the features use), and the clip's expressions with their cue tags. Drawn with Pillow only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont

from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.writer import atomic_write_bytes
from refavs.synth.audio import WINDOW_SECONDS
from refavs.synth.categories import COLOURS
from refavs.synth.layout import read_scenes, read_synth_info

EXPRESSION_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 60, 60), (60, 200, 255), (255, 220, 0), (90, 255, 120), (255, 110, 255), (255, 160, 50))
"""Tint of each expression's target (by the expression's order in its clip)."""

MAGMA_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (0, 0, 4)), (0.25, (80, 18, 123)), (0.5, (182, 54, 121)), (0.75, (251, 136, 97)), (1.0, (252, 253, 191)))
"""A dark-to-light colour ramp for the spectrogram."""


@dataclass(frozen=True)
class FigureLayout:
    """Sizes of the picture, in pixels.

    Attributes:
        thumb: side of each frame.
        gap: space between frames.
        label_width: left margin for the row labels.
        strip_height: height of one object's on-screen/sounding strip.
        spec_height: height of the spectrogram.
        line_height: height of one line of text.
        ring_width: width of the ring drawn around each expression's target.
        font_size: size of the default font.
    """

    thumb: int = 96
    gap: int = 4
    label_width: int = 150
    strip_height: int = 11
    spec_height: int = 80
    line_height: int = 17
    ring_width: int = 2
    font_size: int = 13

    @property
    def row_width(self) -> int:
        return NUM_FRAMES * (self.thumb + self.gap)


LEGEND = ("Ref-AVS Synth {root} (seed {seed}, preset {preset}, {size} px). Rings: the object each expression refers "
          "to, in its colour. Strips, one per object and second: framed = it sounds,\n"
          "grey = on screen but silent, dashes = off screen. Spectrogram: log-mel, 64 bands 125-7500 Hz, as the "
          "features see it; ticks mark their 0.96 s windows.")
"""The explanation printed above the panels."""


def _options(root: Path) -> dict:
    info = read_synth_info(root)
    return {"seed": info["seed"], "preset": info["preset"]["name"], "size": info["size"]}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:    # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def colour_ramp(values: np.ndarray) -> np.ndarray:
    """``[...]`` values in [0, 1] -> ``[..., 3]`` uint8 colours along :data:`MAGMA_STOPS`."""
    xs = [s for s, _ in MAGMA_STOPS]
    channels = [np.interp(values, xs, [c[i] for _, c in MAGMA_STOPS]) for i in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """``[samples]`` 16 kHz waveform -> ``[frames, 64]`` log-mel spectrogram (the features' front end)."""
    import torch  # pulls in torch

    from refavs.features.audio.frontend import LogMelFrontEnd  # pulls in torch

    with torch.no_grad():
        return LogMelFrontEnd().log_mel(torch.from_numpy(waveform.astype(np.float32))[None])[0].numpy()


def spectrogram_image(waveform: np.ndarray, width: int, height: int) -> Image.Image:
    """The log-mel spectrogram as a ``width`` x ``height`` picture, low bands at the bottom, 0..10 s across."""
    spec = log_mel(waveform)                       # [frames, bands]
    lo, hi = np.percentile(spec, 1), spec.max()
    norm = np.clip((spec - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    image = Image.fromarray(colour_ramp(norm.T[::-1]))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def pick_clips(records: Sequence[dict], count: int = 3) -> list[dict]:
    """Telling clips: look-alikes told apart by sound (train), an unseen-category clip, a null clip."""
    def lookalikes_decided_by_sound(rec: dict) -> bool:
        for e in rec["expressions"]:
            names = [rec["objects"][i]["visual"]["category"] for i in e["candidates_without_audio"]]
            if e["needs_audio"] and e["target"] is not None and len(set(names)) < len(names):
                return True
        return False

    wanted = [
        lambda r: r["split"] == "train" and len(r["objects"]) >= 3 and lookalikes_decided_by_sound(r),
        lambda r: r["split"] == "test_u" and len(r["objects"]) >= 3 and any(e["needs_audio"] for e in r["expressions"]),
        lambda r: r["split"] == "test_n" and len(r["objects"]) >= 2,
        lambda r: r["split"] == "val" and len(r["objects"]) >= 2,
    ]
    chosen: list[dict] = []
    for rule in wanted:
        match = next((r for r in records if rule(r) and r not in chosen), None)
        if match is not None:
            chosen.append(match)
    for r in records:                                  # fill up when a kind is missing
        if len(chosen) >= count:
            break
        if r not in chosen:
            chosen.append(r)
    return chosen[:count]


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` pixels (4-neighbour steps)."""
    out = mask.copy()
    for _ in range(steps):
        padded = np.pad(out, 1)
        out = out | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return out


def _ring(mask: np.ndarray, index: int, width: int) -> np.ndarray:
    """The ``index``-th ring of ``width`` pixels around ``mask`` (0: the one touching it)."""
    return _dilate(mask, width * (index + 1)) & ~_dilate(mask, width * index)


def _panel(root: Path, rec: dict, layout: FigureLayout, font) -> Image.Image:
    data = DatasetLayout(root)
    folder = rec["folder"]
    objects, expressions = rec["objects"], rec["expressions"]
    lw, thumb, gap = layout.label_width, layout.thumb, layout.gap
    title_h = layout.line_height + 4
    frames_top = title_h
    strips_top = frames_top + thumb + 6
    spec_top = strips_top + len(objects) * (layout.strip_height + 3) + 4
    text_top = spec_top + layout.spec_height + 6
    height = text_top + len(expressions) * layout.line_height + 10
    panel = Image.new("RGB", (lw + layout.row_width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    n_obj = len(objects)
    draw.text((4, 2), f"{rec['split']}  {rec['vid']}  ({n_obj} object{'s' * (n_obj != 1)})", fill=(0, 0, 0), font=font)

    targets = [(e["target"], EXPRESSION_COLOURS[i % len(EXPRESSION_COLOURS)]) for i, e in enumerate(expressions)]
    for t in range(NUM_FRAMES):
        tile = Image.open(data.frame(folder, t)).convert("RGB")
        if tile.size != (thumb, thumb):
            tile = tile.resize((thumb, thumb), Image.Resampling.NEAREST)
        frame = np.array(tile)
        rings: dict[int, int] = {}     # expressions about one object get rings one outside the other
        for fid, colour in targets:
            if fid is None:
                continue
            mask = Image.open(data.mask(folder, fid, t))
            mask = np.asarray(mask.resize((thumb, thumb), Image.Resampling.NEAREST)) > 0
            frame[_ring(mask, rings.get(fid, 0), layout.ring_width)] = colour
            rings[fid] = rings.get(fid, 0) + 1
        tile = Image.fromarray(frame)
        x = lw + t * (thumb + gap)
        panel.paste(tile, (x, frames_top))
        draw.text((x + 3, frames_top + 2), f"{t}s", fill=(255, 255, 255), font=font)
    draw.text((4, frames_top + thumb // 2 - 8), "frames (targets ringed)", fill=(0, 0, 0), font=font)

    for k, obj in enumerate(objects):
        y = strips_top + k * (layout.strip_height + 3)
        vis, aud = obj["visual"], obj["audio"]
        draw.text((4, y - 3), f"fid {obj['fid']} {vis['category']} {aud['level_db']:+.0f} dB",
                  fill=(0, 0, 0), font=font)
        sounding = set(aud["seconds"])
        for t in range(NUM_FRAMES):
            x = lw + t * (thumb + gap)
            box = [x, y, x + thumb - 1, y + layout.strip_height - 1]
            if t in sounding:            # sounding: the object's colour, framed in black
                draw.rectangle(box, fill=COLOURS[vis["colour"]], outline=(0, 0, 0), width=2)
            elif vis["centers"][t] is not None:   # on screen but silent: grey
                draw.rectangle(box, fill=(215, 215, 215), outline=(160, 160, 160))
            else:                        # off screen: a thin dashed line
                for dx in range(0, thumb, 8):
                    draw.line([x + dx, y + layout.strip_height // 2, x + dx + 3, y + layout.strip_height // 2],
                              fill=(170, 170, 170))

    waveform, _ = sf.read(str(data.audio(folder)), dtype="float32")
    spec = spectrogram_image(waveform, layout.row_width, layout.spec_height)
    panel.paste(spec, (lw, spec_top))
    px_per_second = thumb + gap
    for k in range(NUM_FRAMES + 1):   # the features' 0.96 s window boundaries
        x = lw + int(round(k * WINDOW_SECONDS * px_per_second))
        draw.line([x, spec_top, x, spec_top + 6], fill=(255, 255, 255), width=2)
    draw.text((4, spec_top + layout.spec_height // 2 - 16), "log-mel, 64 bands\n(ticks: 0.96 s windows)",
              fill=(0, 0, 0), font=font)

    for i, e in enumerate(expressions):
        y = text_top + i * layout.line_height
        colour = EXPRESSION_COLOURS[i % len(EXPRESSION_COLOURS)]
        draw.rectangle([lw, y + 2, lw + 11, y + 13], fill=colour if e["target"] is not None else (255, 255, 255),
                       outline=(0, 0, 0))
        target = "nothing (null)" if e["target"] is None else f"fid {e['target']}"
        tags = f"[{e['cue']}]" + ("  needs audio" if e["needs_audio"] else "")
        draw.text((lw + 18, y), f"\"{e['exp']}\"  -> {target}  {tags}", fill=(0, 0, 0), font=font)
    return panel


def make_figure(root: str | Path, out: str | Path, clips: Sequence[str] | None = None, count: int = 3,
                layout: FigureLayout = FigureLayout()) -> Path:
    """Draw the overview picture of the dataset in ``root`` and write it (PNG) to ``out``.

    Args:
        root: a Ref-AVS Synth dataset folder.
        out: the PNG to write.
        clips: vids (or folders) of the clips to show; telling ones are picked when None.
        count: how many clips to pick when ``clips`` is None.
        layout: sizes of the picture.

    Raises:
        FileNotFoundError: ``root`` is not a Ref-AVS Synth dataset.
        KeyError: a clip of ``clips`` is not in the dataset.
    """
    root = Path(root)
    records = read_scenes(root)
    if clips:
        by_name = {r["vid"]: r for r in records} | {r["folder"]: r for r in records}
        missing = [c for c in clips if c not in by_name]
        if missing:
            raise KeyError(f"clip(s) {', '.join(missing)} not in {root}/scenes.jsonl")
        chosen = [by_name[c] for c in clips]
    else:
        chosen = pick_clips(records, count)
    font = _font(layout.font_size)
    panels = [_panel(root, rec, layout, font) for rec in chosen]
    width = max(p.width for p in panels)
    legend = LEGEND.format(root=root.name, **_options(root))
    header = layout.line_height * (legend.count("\n") + 1) + 8
    sheet = Image.new("RGB", (width, header + sum(p.height for p in panels) + 4 * len(panels)), (255, 255, 255))
    ImageDraw.Draw(sheet).text((4, 4), legend, fill=(40, 40, 40), font=font, spacing=4)
    y = header
    for p in panels:
        sheet.paste(p, (0, y))
        y += p.height
        ImageDraw.Draw(sheet).line([0, y + 1, width, y + 1], fill=(180, 180, 180), width=1)
        y += 4
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
