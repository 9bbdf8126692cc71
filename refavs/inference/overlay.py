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


# ------------------------------------------------------------------ whole videos, drawn in YUV 4:2:0

def _yuv(rgb) -> tuple[float, float, float]:
    """BT.601 limited-range Y, U, V of an RGB colour (0..255 each)."""
    r, g, b = (c / 255.0 for c in rgb)
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b, 128 - 37.797 * r - 74.203 * g + 112.0 * b,
            128 + 112.0 * r - 93.786 * g - 18.214 * b)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited-range planes of a ``uint8 [H, W, 3]`` image with even sides: ``Y [H, W]``,
    ``U`` and ``V`` ``[H / 2, W / 2]`` (the mean of each 2x2 block)."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    h, w = y.shape

    def half(p):
        return (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2]) * 0.25

    return (np.rint(y).clip(0, 255).astype(np.uint8), np.rint(half(u)).clip(0, 255).astype(np.uint8),
            np.rint(half(v)).clip(0, 255).astype(np.uint8))


class VideoOverlay:
    """Overlay frames of a whole video, drawn straight on the decoded YUV 4:2:0 planes that the
    H.264 encoder takes, so no frame is converted to RGB and back: the same picture as
    :func:`overlay_frame` (the mask tinted and outlined, the caption band above), at the
    video's own frame rate.

    The frame is scaled to :meth:`OverlayStyle.display_size` only when its size differs (by
    FFmpeg's scaler); the mask, its outline and their pixel indices are computed once per
    distinct probability map (``key``), as every frame of one second shares its map; the
    caption's first line (the expression) is drawn once, its second line per frame.
    """

    def __init__(self, width: int, height: int, expression: str, style: OverlayStyle = OverlayStyle()):
        self.style = style
        self.width, self.height = style.display_size(width, height)
        self.caption_height = style.caption_height
        self.font = _font(style.font_size)
        band = Image.new("RGB", (self.width, self.caption_height), style.caption_rgb)
        draw = ImageDraw.Draw(band)
        draw.text((4, 3), _fit(draw, expression, self.font, self.width - 8), fill=style.text_rgb, font=self.font)
        # rows above ``split`` hold only the expression: converted once; the rows below are redrawn per frame
        self._split = min(self.caption_height, 2 * ((3 + style.font_size + 4) // 2))
        self._static = rgb_to_yuv420(np.asarray(band)[:self._split])
        self._dynamic = band.crop((0, self._split, self.width, self.caption_height))
        colour = _yuv(style.mask_rgb)
        levels = np.arange(256, dtype=np.float32)
        self._tint = [np.rint((1 - style.tint) * levels + style.tint * c).clip(0, 255).astype(np.uint8) for c in colour]
        self._colour = [int(round(min(255.0, max(0.0, c)))) for c in colour]
        self._key = object()
        self._indices: tuple[np.ndarray, ...] = ()
        w, h, ch = self.width, self.height, self.caption_height
        self._luma = (ch + h) * w
        self._chroma = (ch + h) // 2 * (w // 2)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of an overlay frame, caption band included."""
        return self.width, self.caption_height + self.height

    def _mask_indices(self, probabilities: np.ndarray) -> tuple[np.ndarray, ...]:
        w, h, ch = self.width, self.height, self.caption_height
        array = np.asarray(probabilities)
        prob = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
        image = Image.fromarray(prob)
        mask = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR)) > self.style.threshold
        edge = _outline(mask, self.style.outline_width)
        inner = mask & ~edge
        blocks = (h // 2, 2, w // 2, 2)
        c_edge = edge.reshape(blocks).any(axis=(1, 3))
        c_inner = inner.reshape(blocks).all(axis=(1, 3)) & ~c_edge
        y0, c0 = ch * w, ch // 2 * (w // 2)
        return (y0 + np.flatnonzero(inner), y0 + np.flatnonzero(edge),
                c0 + np.flatnonzero(c_inner), c0 + np.flatnonzero(c_edge))

    def render(self, frame, probabilities: np.ndarray, caption: str, key=None) -> np.ndarray:
        """One overlay frame as ``yuv420p`` planes, ``uint8 [(caption + h) * 3 / 2, w]``.

        Args:
            frame: the decoded ``av.VideoFrame``.
            probabilities: its ``[S, S]`` map (``uint8`` 0..255, or float in [0, 1]).
            caption: the caption's second line (frame, time, area).
            key: frames with the same key share ``probabilities`` (the mask is computed once).
        """
        w, h, ch = self.width, self.height, self.caption_height
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (w, h):
            frame = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
        planes = frame.to_ndarray().reshape(-1)
        if key is None or key != self._key:
            self._indices = self._mask_indices(probabilities)
            self._key = key if key is not None else object()
        lower = self._dynamic.copy()
        draw = ImageDraw.Draw(lower)
        draw.text((4, 3 + self.style.font_size + 4 - self._split), _fit(draw, caption, self.font, w - 8),
                  fill=self.style.text_rgb, font=self.font)
        dynamic = rgb_to_yuv420(np.asarray(lower))
        by, bu, bv = (np.concatenate([a, b]) for a, b in zip(self._static, dynamic))
        out = np.empty(self._luma + 2 * self._chroma, dtype=np.uint8)
        luma, chroma, frame_chroma = ch * w, ch // 2 * (w // 2), h // 2 * (w // 2)
        y_plane = out[:self._luma]
        u_plane = out[self._luma:self._luma + self._chroma]
        v_plane = out[self._luma + self._chroma:]
        y_plane[:luma] = by.reshape(-1)
        y_plane[luma:] = planes[:h * w]
        u_plane[:chroma] = bu.reshape(-1)
        u_plane[chroma:] = planes[h * w:h * w + frame_chroma]
        v_plane[:chroma] = bv.reshape(-1)
        v_plane[chroma:] = planes[h * w + frame_chroma:h * w + 2 * frame_chroma]
        y_in, y_edge, c_in, c_edge = self._indices
        for plane, lut, colour, inner, edge in ((y_plane, self._tint[0], self._colour[0], y_in, y_edge),
                                                (u_plane, self._tint[1], self._colour[1], c_in, c_edge),
                                                (v_plane, self._tint[2], self._colour[2], c_in, c_edge)):
            plane[inner] = lut[plane[inner]]
            plane[edge] = colour
        return out.reshape(-1, w)
