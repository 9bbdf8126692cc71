"""A picture of one dataset sample: the expression, its 10 frames with masks, and the audio.

The figure (drawn with matplotlib's Agg backend, no pyplot state) shows, top to bottom:

- the expression (wrapped) with its split, cue types, uid and target;
- the 10 frames, each with the ground-truth mask outlined in green and, when predictions are
  given, the predicted mask (probability > 0.4, the J threshold) tinted and outlined in
  magenta with the frame's J above it;
- the clip's log-mel spectrogram (the features' front end: 64 bands, 125-7,500 Hz) on a 0-10 s
  axis whose seconds line up with the frames above (frame ``t`` sits over second ``t``).

:func:`render_sample` writes the PNG; :func:`sample_figure` returns the figure for other uses.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, DatasetLayout
from refavs.data.masks import MediaError, load_clip_masks
from refavs.data.metadata import read_metadata
from refavs.data.records import Expression
from refavs.features.audio.io import load_waveform, to_mono
from refavs.features.config import LogMelConfig
from refavs.scoring.predictions import load_prediction
from refavs.viz import new_figure, save_figure

TITLE_PT = 15
"""Font size of the expression."""
LEGEND_IN = 3.2
"""Width kept at the top right for the legend; the expression wraps before it."""


class SampleError(ValueError):
    """The sample cannot be drawn (unknown uid, index out of range, missing file); one line."""


@dataclass(frozen=True)
class SampleStyle:
    """Sizes and colours of the sample figure. The PNG is ``width_in * dpi`` x ``height_in * dpi`` pixels.

    Attributes:
        dpi: pixels per inch of the PNG.
        width_in: figure width in inches.
        margin_left_in: left margin (row labels), inches.
        margin_right_in: right margin (colour bar), inches.
        title_lines: lines kept for the wrapped expression (longer ones end in an ellipsis).
        spectrogram_in: height of the spectrogram, inches.
        frame_gap: empty share of each one-second cell around its frame.
        threshold: a pixel is predicted foreground above this probability (the J threshold).
        truth_colour: outline colour of the ground truth.
        prediction_colour: tint and outline colour of the prediction.
        tint: opacity of the prediction's tint.
        line_width: width of the mask outlines, points.
        colormap: matplotlib colour map of the spectrogram.
    """

    dpi: int = 100
    width_in: float = 15.0
    margin_left_in: float = 0.9
    margin_right_in: float = 0.9
    title_lines: int = 2
    spectrogram_in: float = 2.0
    frame_gap: float = 0.04
    threshold: float = 0.4
    truth_colour: str = "#28dc3c"
    prediction_colour: str = "#ff00ff"
    tint: float = 0.4
    line_width: float = 1.8
    colormap: str = "magma"

    def __post_init__(self) -> None:
        if self.dpi < 10 or self.width_in < 8 or self.title_lines < 1:
            raise ValueError("SampleStyle needs dpi >= 10, width_in >= 8 and title_lines >= 1")

    @property
    def cell_in(self) -> float:
        """Width (inches) of one second, i.e. of one frame's cell."""
        return (self.width_in - self.margin_left_in - self.margin_right_in) / NUM_FRAMES

    @property
    def height_in(self) -> float:
        """Figure height in inches (depends on the style only, never on the sample)."""
        return self.title_in + self.frames_in + 0.25 + self.spectrogram_in + 0.6

    @property
    def title_in(self) -> float:
        """Height (inches) of the top block: the legend, the expression and the line of facts."""
        return 0.25 + 0.3 * (self.title_lines + 1)

    @property
    def frames_in(self) -> float:
        """Height (inches) of the row of frames, each with its label line."""
        return self.cell_in + 0.25

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        return round(self.width_in * self.dpi), round(self.height_in * self.dpi)


@dataclass
class Sample:
    """Everything the figure shows of one expression.

    Attributes:
        expression: the metadata row.
        frames: ``uint8 [10, 256, 256, 3]`` frames at the mask size.
        truth: ``bool [10, 256, 256]`` ground-truth masks.
        spectrogram: ``[time frames, 64]`` log-mel values at 100 frames per second.
        seconds: length of the audio shown (at most 10 s).
        prediction: ``float32 [10, 256, 256]`` probabilities, or None.
        iou: J of each frame (official definition), when there is a prediction.
    """

    expression: Expression
    frames: np.ndarray
    truth: np.ndarray
    spectrogram: np.ndarray
    seconds: float
    prediction: np.ndarray | None = None
    iou: np.ndarray | None = None


def find_expression(data_dir: str | Path, uid: str | None = None, split: str | None = None,
                    index: int | None = None) -> Expression:
    """The metadata row with ``uid``, or the ``index``-th row (0-based, metadata order) of ``split``."""
    if (uid is None) == (split is None):
        raise SampleError("give either a uid or a split and an index")
    if uid is not None:
        rows = [e for e in read_metadata(data_dir) if e.uid == uid]
        if not rows:
            raise SampleError(f"uid {uid!r} is not in {Path(data_dir) / 'metadata.csv'}")
        return rows[0]
    rows = read_metadata(data_dir, [split])
    index = 0 if index is None else index
    if not 0 <= index < len(rows):
        raise SampleError(f"index {index} is out of range: split {split} of {Path(data_dir) / 'metadata.csv'} "
                          f"has {len(rows)} expression(s) (0 to {len(rows) - 1})" if rows else
                          f"split {split} of {Path(data_dir) / 'metadata.csv'} has no expression")
    return rows[index]


def clip_log_mel(path: str | Path, seconds: float = float(NUM_FRAMES)) -> tuple[np.ndarray, float]:
    """The log-mel spectrogram ``[frames, 64]`` of the first ``seconds`` of an audio file, and
    the length (s) it covers; mono, resampled to the features' rate, not padded."""
    import torch  # pulls in torch

    from refavs.features.audio.frontend import LogMelFrontEnd  # pulls in torch
    from refavs.features.audio.resample import resample  # pulls in torch

    config = LogMelConfig()
    waveform, rate = load_waveform(path)
    mono = torch.from_numpy(np.ascontiguousarray(to_mono(waveform)))
    if not torch.isfinite(mono).all():
        raise SampleError(f"{path}: the audio holds NaN or infinite samples")
    mono = resample(mono.double(), rate, config.sample_rate).float()[: int(seconds * config.sample_rate)]
    if mono.shape[-1] < config.window_length:
        raise SampleError(f"{path}: the audio is shorter than one {config.stft_window_seconds * 1000:.0f} ms window")
    with torch.no_grad():
        spec = LogMelFrontEnd(config).log_mel(mono[None])[0].numpy()
    covered = ((spec.shape[0] - 1) * config.hop_length + config.window_length) / config.sample_rate
    return spec, covered


def frame_iou(truth: np.ndarray, prediction: np.ndarray, threshold: float) -> np.ndarray:
    """J of each frame by the official definition (``[T]`` float)."""
    import torch  # pulls in torch

    from refavs.metrics import iou_per_frame  # pulls in torch

    return iou_per_frame(torch.from_numpy(prediction), torch.from_numpy(truth), threshold).numpy()


def load_sample(data_dir: str | Path, expression: Expression, pred_dir: str | Path | None = None,
                threshold: float = 0.4) -> Sample:
    """Read the frames, masks, audio and (optionally) the prediction of one expression.

    Raises:
        SampleError: a file is missing or unreadable (the message names it).
    """
    from refavs.data.frames import load_clip_frames  # pulls in torch

    layout = DatasetLayout(Path(data_dir))
    folder = layout.resolve_folder(expression.uid, expression.vid)
    try:
        frames = load_clip_frames(layout, folder, MASK_SIZE)
        truth = load_clip_masks(layout, expression)
        spectrogram, seconds = clip_log_mel(layout.audio(folder))
        prediction = iou = None
        if pred_dir is not None:
            if not Path(pred_dir).is_dir():
                raise SampleError(f"{pred_dir}: prediction folder not found")
            prediction = load_prediction(pred_dir, expression.uid)
            iou = frame_iou(truth, prediction, threshold)
    except MediaError as err:
        raise SampleError(str(err)) from None
    return Sample(expression, frames, truth, spectrogram, seconds, prediction, iou)


def _title(sample: Sample, style: SampleStyle) -> tuple[str, str]:
    """The wrapped expression and the line of facts under it."""
    e = sample.expression
    free_in = style.width_in - style.margin_left_in - style.margin_right_in - LEGEND_IN
    chars = max(int(free_in * 72 / (TITLE_PT * 0.58)), 10)      # ~characters of a bold title line
    lines = textwrap.wrap(f"\u201c{e.exp}\u201d", width=chars) or ["\u201c\u201d"]
    if len(lines) > style.title_lines:
        lines = lines[: style.title_lines]
        lines[-1] = lines[-1][: max(chars - 1, 1)].rstrip() + "\u2026"
    cues = e.extra.get("cue")
    facts = [f"split {e.split}"]
    if cues:
        facts.append("cues " + cues.replace(";", ", "))
    if e.extra.get("needs_audio", "").strip() == "1":
        facts.append("needs audio")
    target = "nothing (empty masks)" if not sample.truth.any() else f"object fid {e.fid}"
    facts += [f"target {target}", f"uid {e.uid}"]
    if sample.iou is not None:
        facts.append(f"J {float(np.mean(sample.iou)):.3f}")
    return "\n".join(lines), "   \u00b7   ".join(facts)


def _draw_frame(ax, sample: Sample, t: int, style: SampleStyle) -> None:
    from matplotlib.colors import to_rgb  # pulls in matplotlib

    ax.imshow(sample.frames[t], interpolation="bilinear")
    if sample.prediction is not None:
        predicted = sample.prediction[t] > style.threshold
        overlay = np.zeros((*predicted.shape, 4), dtype=np.float32)
        overlay[predicted] = (*to_rgb(style.prediction_colour), style.tint)
        ax.imshow(overlay, interpolation="nearest")
        if predicted.any() and not predicted.all():
            ax.contour(predicted.astype(np.float32), levels=[0.5], colors=[style.prediction_colour],
                       linewidths=style.line_width * 0.8)
    if sample.truth[t].any():
        ax.contour(sample.truth[t].astype(np.float32), levels=[0.5], colors=[style.truth_colour],
                   linewidths=style.line_width)
    label = f"frame {t}" if sample.iou is None else f"frame {t}   J {sample.iou[t]:.2f}"
    ax.set_title(label, fontsize=9, pad=3)
    ax.set_xlim(-0.5, MASK_SIZE - 0.5)
    ax.set_ylim(MASK_SIZE - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_spectrogram(fig, rect, sample: Sample, style: SampleStyle, cbar_rect) -> None:
    from refavs.features.audio.frontend import hz_to_mel  # pulls in torch

    config = LogMelConfig()
    ax = fig.add_axes(rect)
    spec = sample.spectrogram
    low, high = float(np.percentile(spec, 1)), float(spec.max())
    image = ax.imshow(spec.T, origin="lower", aspect="auto", cmap=style.colormap, vmin=low, vmax=max(high, low + 1e-6),
                      extent=(0.0, sample.seconds, 0.0, config.num_mel_bins), interpolation="nearest")
    ax.set_xlim(0, NUM_FRAMES)
    ax.set_ylim(0, config.num_mel_bins)
    ax.set_xticks(range(NUM_FRAMES + 1))
    ax.set_xticklabels([f"{s} s" for s in range(NUM_FRAMES + 1)], fontsize=9)
    for s in range(1, NUM_FRAMES):
        ax.axvline(s, color="white", linewidth=0.6, alpha=0.5)
    mel_low, mel_high = hz_to_mel(config.mel_min_hz), hz_to_mel(config.mel_max_hz)
    ticks_hz = [f for f in (250, 500, 1000, 2000, 4000, 7000) if config.mel_min_hz < f < config.mel_max_hz]
    # band b is centred on the (b + 1)-th of num_bands + 2 evenly spaced mel edges
    positions = [(hz_to_mel(f) - mel_low) / (mel_high - mel_low) * (config.num_mel_bins + 1) - 0.5 for f in ticks_hz]
    ax.set_yticks(positions)
    ax.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks_hz], fontsize=8)
    ax.set_ylabel("Hz (mel scale)", fontsize=9)
    ax.set_xlabel("time (frame t shows second t)", fontsize=9)
    ax.set_title(f"log-mel spectrogram of audio.wav ({config.num_mel_bins} bands, "
                 f"{config.mel_min_hz:g}-{config.mel_max_hz:g} Hz, as the audio features see it)",
                 fontsize=9, loc="left", pad=4)
    cax = fig.add_axes(cbar_rect)
    bar = fig.colorbar(image, cax=cax)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("log energy", fontsize=8)


def sample_figure(sample: Sample, style: SampleStyle = SampleStyle()):
    """The sample's figure (a ``matplotlib.figure.Figure`` with an Agg canvas)."""
    from matplotlib.lines import Line2D  # pulls in matplotlib
    from matplotlib.patches import Patch  # pulls in matplotlib

    fig = new_figure(style.width_in, style.height_in, style.dpi)
    width, height = (float(v) for v in fig.get_size_inches())

    def rect(left_in: float, bottom_in: float, w_in: float, h_in: float) -> list[float]:
        return [left_in / width, bottom_in / height, w_in / width, h_in / height]

    expression, facts = _title(sample, style)
    facts_y = height - style.title_in + 0.08          # the expression sits on the facts line
    fig.text(style.margin_left_in / width, (facts_y + 0.3) / height, expression, fontsize=TITLE_PT, va="bottom",
             ha="left", fontweight="bold", linespacing=1.3)
    fig.text(style.margin_left_in / width, facts_y / height, facts, fontsize=10, va="bottom", ha="left",
             color="#333333")

    cell = style.cell_in
    side = cell * (1 - 2 * style.frame_gap)
    frames_bottom = height - style.title_in - style.frames_in
    for t in range(NUM_FRAMES):
        ax = fig.add_axes(rect(style.margin_left_in + t * cell + cell * style.frame_gap, frames_bottom, side, side))
        _draw_frame(ax, sample, t, style)
    fig.text(0.12 / width, (frames_bottom + side / 2) / height, "frames", rotation=90, fontsize=10,
             va="center", ha="left")

    truth_label = "ground truth (outline)" if sample.truth.any() else "ground truth: empty in every frame"
    handles = [Line2D([], [], color=style.truth_colour, linewidth=2.5, label=truth_label)]
    if sample.prediction is not None:
        handles.append(Patch(facecolor=style.prediction_colour, alpha=0.6, edgecolor=style.prediction_colour,
                             label=f"prediction (p > {style.threshold:g})"))
    fig.legend(handles=handles, loc="upper right", ncol=1, fontsize=9, frameon=False,
               bbox_to_anchor=((width - style.margin_right_in) / width, (height - 0.05) / height))

    spec_bottom = 0.6
    spec_width = NUM_FRAMES * cell
    _draw_spectrogram(fig, rect(style.margin_left_in, spec_bottom, spec_width, style.spectrogram_in), sample, style,
                      rect(style.margin_left_in + spec_width + 0.12, spec_bottom, 0.14, style.spectrogram_in))
    return fig


def render_sample(data_dir: str | Path, out: str | Path, *, uid: str | None = None, split: str | None = None,
                  index: int | None = None, pred_dir: str | Path | None = None,
                  style: SampleStyle = SampleStyle()) -> Path:
    """Draw one expression of the dataset in ``data_dir`` (by ``uid``, or ``split`` and ``index``)
    into the PNG ``out``; with ``pred_dir`` (predictions ``<uid>/<frame>.png``) its prediction too.

    Raises:
        SampleError: unknown uid, index out of range, or a missing/unreadable file (named).
        refavs.data.MetadataError: metadata.csv is unusable.
    """
    expression = find_expression(data_dir, uid, split, index)
    sample = load_sample(data_dir, expression, pred_dir, style.threshold)
    return save_figure(sample_figure(sample, style), out)
