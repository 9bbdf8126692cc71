"""Pictures of data and results.

- :mod:`refavs.viz.predictions`: a grid of frames with true vs predicted masks (Pillow; the demo's
  ``predictions.png``);
- :mod:`refavs.viz.sample`: one expression's frames, masks, prediction and spectrogram
  (matplotlib; ``refavs viz sample``);
- :mod:`refavs.viz.report`: an evaluation report's per-split table and per-cue bars
  (matplotlib; ``refavs viz report``).

Nothing is imported here eagerly; matplotlib is only loaded when a figure is drawn, always on
the Agg canvas (never pyplot's global state).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from refavs.data.writer import atomic_write_bytes


def new_figure(width_in: float, height_in: float, dpi: int):
    """A ``matplotlib.figure.Figure`` on an Agg canvas (no pyplot) of exactly
    ``round(width_in * dpi)`` x ``round(height_in * dpi)`` pixels.

    Matplotlib truncates ``inches * dpi`` to whole pixels, so the size given to it is a quarter
    pixel over the rounded one: rounding errors can then never lose a pixel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pulls in matplotlib
    from matplotlib.figure import Figure  # pulls in matplotlib

    width_px, height_px = round(width_in * dpi), round(height_in * dpi)
    fig = Figure(figsize=((width_px + 0.25) / dpi, (height_px + 0.25) / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out: str | Path) -> Path:
    """Write a matplotlib figure as an RGB PNG at its own size and DPI, atomically (a temporary
    file in the same folder, then a rename), so a reader never sees half a picture."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="PNG")
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
