"""Frames and exact masks of a scene.

Each object is first drawn as a boolean mask (a pixel belongs to the shape when its centre
lies inside it: no anti-aliasing, so the mask *is* the drawn pixels); frames are then
composed from those masks over the background. Only the frames are JPEG-compressed later;
the masks are stored losslessly, so they match the objects exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.synth.categories import COLOURS
from refavs.synth.scene import Background, ObjectVisual, Scene

SQUARE_HALF = 0.82
"""Half side of a square, in radii (a square of side 2r would look larger than the circle)."""

TRIANGLE_BASE = (0.95, 0.72)
"""Half width and height (in radii, downwards from the centre) of a triangle's base; its apex is at -1."""

STAR_POINTS, STAR_INNER = 5, 0.5
"""A five-pointed star whose inner corners lie at half its outer radius."""

CROSS_HALF_WIDTH, CROSS_ARM = 0.32, 0.95
"""Half width of a cross's bars and their half length, in radii."""

TEXTURE_SHADE = 0.45
"""Brightness of a texture's dark parts relative to the object's colour."""

GRAIN_SEED = 1
"""Stream of the scene seed that draws the per-frame pixel grain."""


@dataclass(frozen=True)
class RenderedClip:
    """A clip's pixels.

    Attributes:
        frames: ``[10, size, size, 3]`` uint8 RGB.
        masks: ``[objects, 10, size, size]`` bool; ``masks[fid, t]`` is exactly the pixels of object
            ``fid`` drawn in frame ``t`` (all False when it is off screen).
    """

    frames: np.ndarray
    masks: np.ndarray


@lru_cache(maxsize=4)
def _pixel_centres(size: int) -> np.ndarray:
    """Pixel-centre coordinates ``0.5, 1.5, ..., size - 0.5`` (read-only, shared)."""
    c = np.arange(size, dtype=np.float64) + 0.5
    c.flags.writeable = False
    return c


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of pixel centres, each ``[size, size]``."""
    return _grid_window(size, (0, size, 0, size))


def _grid_window(size: int, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the pixel centres of ``window`` = ``(y0, y1, x0, x1)``: the same values as the full grid's."""
    c = _pixel_centres(size)
    y0, y1, x0, x1 = window
    return np.meshgrid(c[x0:x1], c[y0:y1])


def object_window(cx: float, cy: float, radius: float, size: int) -> tuple[int, int, int, int]:
    """Rows and columns ``(y0, y1, x0, x1)`` (end exclusive) holding every pixel of a shape centred at (cx, cy).

    Every shape lies within ``radius`` of its centre along each axis; the window adds a
    2-pixel margin. Shapes and textures are computed per pixel centre, so drawing them in
    the window gives exactly the pixels a full-frame drawing would.
    """
    reach = radius + 2.0
    x0, x1 = max(0, int(np.floor(cx - reach))), min(size, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(np.floor(cy - reach))), min(size, int(np.ceil(cy + reach)) + 1)
    return y0, max(y0, y1), x0, max(x0, x1)


def shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """``[size, size]`` bool: pixels whose centre lies inside ``shape`` centred at ``(cx, cy)`` (pixels).

    Shapes point up (image y grows downwards) and fit a circle of ``radius`` pixels.
    """
    out = np.zeros((size, size), dtype=bool)
    window = object_window(cx, cy, radius, size)
    y0, y1, x0, x1 = window
    out[y0:y1, x0:x1] = _shape_in(shape, cx, cy, radius, *_grid_window(size, window))
    return out


def _shape_in(shape: str, cx: float, cy: float, radius: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """:func:`shape_mask` at the pixel centres ``xs``, ``ys``."""
    u, v = (xs - cx) / radius, (ys - cy) / radius
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= SQUARE_HALF
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":
        half_width, base = TRIANGLE_BASE
        return (v <= base) & (v >= -1.0 + (1.0 + base) * au / half_width)
    if shape == "cross":
        return ((au <= CROSS_HALF_WIDTH) & (av <= CROSS_ARM)) | ((av <= CROSS_HALF_WIDTH) & (au <= CROSS_ARM))
    if shape == "hexagon":
        root3 = np.sqrt(3.0)
        return (av <= root3 / 2) & (root3 * au + av <= root3)
    if shape == "star":
        sector = 2 * np.pi / STAR_POINTS
        rho = np.hypot(u, v)
        phi = np.mod(np.arctan2(v, u) + np.pi / 2, sector)   # 0 at an outer point (the top one)
        phi = np.minimum(phi, sector - phi)                  # fold onto [0, sector / 2]
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        bx, by = STAR_INNER * np.cos(sector / 2), STAR_INNER * np.sin(sector / 2)
        # inside when p lies on the centre's side of the edge from the outer point (1, 0) to the inner corner b
        return (bx - 1.0) * py - by * (px - 1.0) >= 0.0
    raise ValueError(f"unknown shape {shape!r}")


def texture_band(radius: float) -> int:
    """Width in pixels of a texture's stripes and checks (at least 2)."""
    return max(2, int(round(radius / 3)))


def texture_dark(texture: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """``[size, size]`` bool: where the texture darkens the object (in the object's own frame, so it moves with it)."""
    return _texture_in(texture, cx, cy, radius, *_pixel_grid(size))


def _texture_in(texture: str, cx: float, cy: float, radius: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """:func:`texture_dark` at the pixel centres ``xs``, ``ys``."""
    if texture == "solid":
        return np.zeros(xs.shape, dtype=bool)
    band = texture_band(radius)
    dx = np.floor((xs - cx + radius) / band).astype(np.int64)
    dy = np.floor((ys - cy + radius) / band).astype(np.int64)
    if texture == "striped":
        return dy % 2 == 1
    if texture == "checkered":
        return (dx + dy) % 2 == 1
    if texture == "dotted":
        period = 2 * band
        ox = np.mod(xs - cx + radius, period) - band
        oy = np.mod(ys - cy + radius, period) - band
        return ox * ox + oy * oy <= (0.6 * band) ** 2
    raise ValueError(f"unknown texture {texture!r}")


def object_masks(visual: ObjectVisual, size: int) -> np.ndarray:
    """``[10, size, size]`` bool: the object's shape in every frame (before any occlusion)."""
    masks = np.zeros((len(visual.centers), size, size), dtype=bool)
    for t, c in enumerate(visual.centers):
        if c is not None:
            masks[t] = shape_mask(visual.shape, c[0], c[1], visual.radius, size)
    return masks


def render_background(background: Background, size: int) -> np.ndarray:
    """``[size, size, 3]`` float64 backdrop (0..255), without grain."""
    xs, ys = _pixel_grid(size)
    x, y = xs / size, ys / size
    ramp = {"horizontal": x, "vertical": y, "diagonal": (x + y) / 2}[background.direction]
    a = np.asarray(background.colour_a, dtype=np.float64)
    b = np.asarray(background.colour_b, dtype=np.float64)
    image = a * (1.0 - ramp[..., None]) + b * ramp[..., None]
    fx, fy = background.wave_cycles
    wave = background.wave_amplitude * np.sin(2 * np.pi * (fx * x + fy * y) + background.wave_phase)
    return image + wave[..., None]


def render_clip(scene: Scene) -> RenderedClip:
    """Frames and exact masks of a scene (objects painted in ``fid`` order; a later one hides an earlier one)."""
    size = scene.size
    backdrop = render_background(scene.background, size)
    grain = np.random.default_rng([scene.seed, GRAIN_SEED]).normal(
        0.0, scene.background.grain, size=(NUM_FRAMES, size, size, 1))
    pixels = np.empty((NUM_FRAMES, size, size, 3))
    np.add(backdrop[None], grain, out=pixels)
    np.rint(pixels, out=pixels)
    np.minimum(np.maximum(pixels, 0, out=pixels), 255, out=pixels)   # as np.clip(..., 0, 255), in place
    frames = pixels.astype(np.uint8)
    masks = np.zeros((len(scene.objects), NUM_FRAMES, size, size), dtype=bool)
    for obj in scene.objects:
        vis = obj.visual
        colour = np.asarray(COLOURS[vis.colour], dtype=np.float64)
        dark = np.rint(colour * TEXTURE_SHADE).astype(np.uint8)
        bright = colour.astype(np.uint8)
        for t, c in enumerate(vis.centers):
            if c is None:
                continue
            window = object_window(c[0], c[1], vis.radius, size)   # the object lies inside it
            y0, y1, x0, x1 = window
            xs, ys = _grid_window(size, window)
            shape = _shape_in(vis.shape, c[0], c[1], vis.radius, xs, ys)
            shade = _texture_in(vis.texture, c[0], c[1], vis.radius, xs, ys)
            frame = frames[t, y0:y1, x0:x1]
            frame[shape] = bright
            frame[shape & shade] = dark
            masks[:, t, y0:y1, x0:x1] &= ~shape          # occlusion: the new object hides earlier ones
            masks[obj.fid, t, y0:y1, x0:x1] = shape
    return RenderedClip(frames=frames, masks=masks)
