"""Overlay frames (the mask tinted and outlined on each frame, the expression above) and the
overlay video.

Each overlay frame is the clip frame scaled to ``OverlayStyle.height`` pixels high (aspect
kept, at most ``max_width`` wide, both sides even for H.264), the mask (probability above the
threshold, the 256x256 probabilities resized bilinearly to the frame) tinted magenta and
outlined, the colours of :mod:`refavs.viz.predictions`, under a black caption band with the
expression and the frame's index, time and mask area.

The video plays one clip frame per second (``fps``), so it runs as long as the clip:
``overlay.mp4`` (H.264, yuv420p, ``+faststart`` for browsers) when PyAV has an H.264 encoder,
else ``overlay.gif`` (Pillow). Both are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from refavs.data.video_writer import write_video
from refavs.data.writer import atomic_write_bytes
from refavs.metrics.accumulator import MetricConfig

OVERLAY_STEM = "overlay"
H264_ENCODER = "libx264"
FORMATS: tuple[str, ...] = ("mp4", "gif")
ELLIPSIS = "…"
"""Ends a caption line cut to fit the frame's width."""


@dataclass(frozen=True)
class OverlayStyle:
    """Sizes, colours and encoding of the overlay.

    Attributes:
        height: height of the frame part in pixels (the caption band comes on top).
        max_width: the frame is scaled down further when it would be wider than this.
        threshold: a pixel is shown as mask when its probability exceeds this (J's threshold).
        mask_rgb: tint and outline colour of the mask (magenta, as in ``refavs.viz``).
        tint: opacity of the tint.
        outline_width: outline thickness in pixels.
        font_size: caption font size in pixels (Pillow's default font).
        caption_lines: lines of the caption band (the expression, then frame, time and area).
        text_rgb: caption text colour.
        caption_rgb: caption band colour.
        fps: overlay frames per second (1: one clip frame per second, the clip's own pace).
        crf: H.264 quality (lower is better, 23 is x264's default).
    """

    height: int = 360
    max_width: int = 960
    threshold: float = MetricConfig.j_threshold
    mask_rgb: tuple[int, int, int] = (255, 0, 255)
    tint: float = 0.45
    outline_width: int = 2
    font_size: int = 14
    caption_lines: int = 2
    text_rgb: tuple[int, int, int] = (255, 255, 255)
    caption_rgb: tuple[int, int, int] = (0, 0, 0)
    fps: float = 1.0
    crf: int = 23

    @property
    def caption_height(self) -> int:
        """Pixels of the caption band (even)."""
        return _even(self.caption_lines * (self.font_size + 4) + 6)

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the frame part for a ``width x height`` frame (even sides)."""
        scale = self.height / height
        if width * scale > self.max_width:
            scale = self.max_width / width
        return _even(width * scale), _even(height * scale)


def _even(x: float) -> int:
    return max(2, 2 * int(round(x / 2)))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` on one line of ``width`` pixels: whole when it fits, else its longest prefix that
    fits with :data:`ELLIPSIS` after it (the ellipsis alone when not even one character does).
    Line breaks in ``text`` become spaces.

    The time grows linearly with the length of ``text``: the whole text is measured once; when it
    is too wide, the cut is estimated by adding up the advances of its characters (as far as the
    line reaches), then settled by a search outward from the estimate and a bisection, each step
    measuring a prefix near the cut. With the default font, whose advances simply add up, that is
    two measurements of about a line; where kerning or combining characters move the cut by ``d``
    characters, ``O(log d)``.
    """
    text = " ".join(text.splitlines())
    if draw.textlength(text, font=font) <= width:
        return text

    def fits(k: int) -> bool:
        return k == 0 or draw.textlength(text[:k] + ELLIPSIS, font=font) <= width

    lo, hi = 0, len(text)  # fits(lo); not fits(hi), since the whole text does not fit
    guess = max(0, min(hi - 1, _prefix_within(draw, text, font, width - draw.textlength(ELLIPSIS, font=font))))
    step = 1
    if fits(guess):
        lo = guess
        while lo + step < hi:
            if not fits(lo + step):
                hi = lo + step
                break
            lo, step = lo + step, 2 * step
    else:
        hi = guess
        while hi - step > lo:
            if fits(hi - step):
                lo = hi - step
                break
            hi, step = hi - step, 2 * step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return text[:lo] + ELLIPSIS


def _prefix_within(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> int:
    """How many leading characters of ``text`` fit in ``width`` pixels, by the sum of their advances
    (each distinct character measured once; the scan stops where the line ends)."""
    advances: dict[str, float] = {}
    total = 0.0
    for k, char in enumerate(text):
        if char not in advances:
            advances[char] = draw.textlength(char, font=font)
        total += advances[char]
        if total > width:
            return k
    return len(text)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels (4-neighbour steps) of its outside."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inner
    return mask & ~inner


def overlay_frame(frame: np.ndarray, probabilities: np.ndarray, caption: Sequence[str],
                  style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """One overlay frame, ``uint8 [caption_height + h, w, 3]``, from a ``uint8 [H, W, 3]`` frame and
    its ``[S, S]`` probabilities."""
    w, h = style.display_size(frame.shape[1], frame.shape[0])
    rgb = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    prob = np.asarray(Image.fromarray(np.asarray(probabilities, dtype=np.float32))
                      .resize((w, h), Image.Resampling.BILINEAR))
    mask = prob > style.threshold
    colour = np.asarray(style.mask_rgb, dtype=np.float32)
    rgb[mask] = (1 - style.tint) * rgb[mask] + style.tint * colour
    rgb[_outline(mask, style.outline_width)] = colour
    canvas = Image.new("RGB", (w, style.caption_height + h), style.caption_rgb)
    canvas.paste(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)), (0, style.caption_height))
    draw = ImageDraw.Draw(canvas)
    font = _font(style.font_size)
    for i, line in enumerate(caption[: style.caption_lines]):
        draw.text((4, 3 + i * (style.font_size + 4)), _fit(draw, line, font, w - 8), fill=style.text_rgb, font=font)
    return np.asarray(canvas)


def overlay_frames(frames: np.ndarray, probabilities: np.ndarray, expression: str,
                   frame_times: Sequence[float] | None = None, style: OverlayStyle = OverlayStyle()) -> list[np.ndarray]:
    """Overlay frames of a clip: ``frames`` ``uint8 [T, H, W, 3]``, ``probabilities`` ``[T, S, S]``."""
    out = []
    for t, (frame, prob) in enumerate(zip(frames, probabilities)):
        area = float((np.asarray(prob) > style.threshold).mean())
        when = f"  {frame_times[t]:.1f} s" if frame_times is not None else ""
        out.append(overlay_frame(frame, prob, [expression, f"frame {t}{when}  mask {area:.1%}"], style))
    return out


def h264_available() -> bool:
    """Whether PyAV can encode H.264 here."""
    import av  # pulls in av

    try:
        av.codec.Codec(H264_ENCODER, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def write_overlay(frames: Sequence[np.ndarray], directory: str | os.PathLike, overlay_format: str = "mp4",
                  style: OverlayStyle | None = None) -> Path:
    """Write ``directory/overlay.mp4`` (or ``overlay.gif`` when ``overlay_format="gif"`` or H.264 is
    unavailable) and remove an overlay of the other format; returns the path written."""
    style = style or OverlayStyle()
    if overlay_format not in FORMATS:
        raise ValueError(f"overlay format must be one of {', '.join(FORMATS)}, got {overlay_format!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = None
    if overlay_format == "mp4":
        if h264_available():
            path = _write_mp4(frames, directory / f"{OVERLAY_STEM}.mp4", style)
        else:
            warnings.warn(f"PyAV has no {H264_ENCODER} encoder here: writing {OVERLAY_STEM}.gif instead", stacklevel=2)
    if path is None:
        path = _write_gif(frames, directory / f"{OVERLAY_STEM}.gif", style)
    for other in FORMATS:
        stale = directory / f"{OVERLAY_STEM}.{other}"
        if stale != path and stale.exists():
            stale.unlink()
    return path


def _write_mp4(frames: Sequence[np.ndarray], path: Path, style: OverlayStyle) -> Path:
    return write_video(path, frames, style.fps, codec=H264_ENCODER, pix_fmt="yuv420p", crf=style.crf)


def _write_gif(frames: Sequence[np.ndarray], path: Path, style: OverlayStyle) -> Path:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=int(round(1000 / style.fps)))
    atomic_write_bytes(path, buf.getvalue())
    return path
