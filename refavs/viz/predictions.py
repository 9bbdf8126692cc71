"""A grid of frames with the true and the predicted mask, a row per expression.

Each row shows the expression's frames (every ``frame_step``-th of the 10) with the ground
truth outlined in green and the prediction (probability > ``threshold``) tinted and outlined
in magenta (an outline too, so a prediction stays visible on an object of the tint's colour),
under a caption with the split, the cue types, the expression and the row's J.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from refavs.data.frames import load_clip_frames
from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.masks import load_clip_masks
from refavs.data.records import Expression
from refavs.data.writer import atomic_write_bytes
from refavs.metrics import iou_per_frame
from refavs.scoring.predictions import load_prediction


@dataclass(frozen=True)
class GridStyle:
    """Sizes and colours of the grid.

    Attributes:
        tile: side of one frame tile in pixels.
        frame_step: show frames 0, step, 2 step, ...
        threshold: a pixel is predicted foreground above this probability (J's threshold).
        caption_height: pixels above each row for its caption.
        truth_rgb: outline colour of the ground truth.
        prediction_rgb: tint and outline colour of the prediction.
        tint: opacity of the tint.
    """

    tile: int = 112
    frame_step: int = 2
    threshold: float = 0.4
    caption_height: int = 18
    truth_rgb: tuple[int, int, int] = (40, 220, 60)
    prediction_rgb: tuple[int, int, int] = (255, 0, 255)
    tint: float = 0.45


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _tile(frame: np.ndarray, truth: np.ndarray, prob: np.ndarray, style: GridStyle) -> Image.Image:
    size = (style.tile, style.tile)
    rgb = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    pred = np.asarray(Image.fromarray((prob > style.threshold).astype(np.uint8) * 255).resize(size)) > 0
    true = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize(size)) > 0
    rgb[pred] = (1 - style.tint) * rgb[pred] + style.tint * np.asarray(style.prediction_rgb, dtype=np.float32)
    rgb[_outline(pred)] = style.prediction_rgb
    rgb[_outline(true)] = style.truth_rgb
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _row_iou(truth: np.ndarray, prob: np.ndarray, threshold: float) -> float:
    """Mean J of one expression's frames, by the official definition."""
    return float(iou_per_frame(torch.from_numpy(prob), torch.from_numpy(truth), threshold).mean())


def prediction_grid(data_dir: str | Path, pred_dir: str | Path, rows: Sequence[tuple[Expression, str]],
                    out_png: str | Path, style: GridStyle | None = None) -> Path:
    """Draw ``rows`` (an expression and its caption tag, e.g. its cue types) into ``out_png``."""
    style = style or GridStyle()
    if not rows:
        raise ValueError("no expression to draw")
    layout = DatasetLayout(Path(data_dir))
    shown = list(range(0, NUM_FRAMES, style.frame_step))
    row_height = style.caption_height + style.tile
    canvas = Image.new("RGB", (len(shown) * style.tile, len(rows) * row_height + style.caption_height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), f"green outline: ground truth; magenta: prediction (p > {style.threshold}); "
                      f"frames {', '.join(map(str, shown))}", fill=(0, 0, 0))
    for r, (e, tag) in enumerate(rows):
        folder = layout.resolve_folder(e.uid, e.vid)
        frames = load_clip_frames(layout, folder, MASK_SIZE)
        truth = load_clip_masks(layout, e)
        probs = load_prediction(pred_dir, e.uid)
        top = style.caption_height + r * row_height
        caption = f"{e.split} [{tag}] J {_row_iou(truth, probs, style.threshold):.2f}: {e.exp}"
        draw.text((4, top + 3), caption[: 6 * len(shown) * style.tile // 36], fill=(0, 0, 0))
        for c, t in enumerate(shown):
            canvas.paste(_tile(frames[t], truth[t], probs[t], style), (c * style.tile, top + style.caption_height))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)
