"""A Ref-AVS Synth clip as a video file: to try ``refavs predict`` or ``refavs app`` on it.

:func:`clip_video` encodes a media folder's ten frames (each held for one second) and its
audio.wav as H.264 + AAC in an MP4 with :func:`refavs.data.video_writer.write_video`.
``refavs predict`` samples one frame per second from the middle of each second, so it sees the
clip's own frames again (up to the codec's loss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from refavs.data.layout import NUM_FRAMES, DatasetLayout
from refavs.data.video_writer import write_video

FPS = 5
"""Video frames per second of the written file (each clip frame is repeated this many times)."""


def clip_video(data_dir: str | Path, folder: str, out: str | Path, fps: int = FPS) -> Path:
    """Write ``media/<folder>`` of the dataset at ``data_dir`` to ``out`` (H.264 + AAC MP4)."""
    layout = DatasetLayout(Path(data_dir))
    frames = [np.asarray(Image.open(layout.frame(folder, t)).convert("RGB")) for t in range(NUM_FRAMES)]
    wave, rate = sf.read(layout.audio(folder), dtype="float32", always_2d=True)
    h, w = frames[0].shape[:2]
    frames = [f[: h - h % 2, : w - w % 2] for f in frames]  # yuv420p needs even sides
    return write_video(out, (frames[i // fps] for i in range(NUM_FRAMES * fps)), fps, wave.mean(axis=1), rate)
