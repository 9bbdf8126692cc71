"""A Ref-AVS Synth clip as a video file: to try ``refavs predict`` or ``refavs app`` on it.

:func:`clip_video` encodes a media folder's ten frames (each held for one second) and its
audio.wav as H.264 + AAC in an MP4, with PyAV. ``refavs predict`` samples one frame per second
from the middle of each second, so it sees the clip's own frames again (up to the codec's loss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refavs.data.layout import NUM_FRAMES, DatasetLayout

FPS = 5
"""Video frames per second of the written file (each clip frame is repeated this many times)."""


def clip_video(data_dir: str | Path, folder: str, out: str | Path, fps: int = FPS) -> Path:
    """Write ``media/<folder>`` of the dataset at ``data_dir`` to ``out`` (H.264 + AAC MP4)."""
    import av
    import soundfile as sf
    from PIL import Image

    layout = DatasetLayout(Path(data_dir))
    frames = [np.asarray(Image.open(layout.frame(folder, t)).convert("RGB")) for t in range(NUM_FRAMES)]
    wave, rate = sf.read(layout.audio(folder), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    h, w = frames[0].shape[:2]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        sound = container.add_stream("aac", rate=rate)
        sound.layout = "mono"
        for i in range(NUM_FRAMES * fps):
            img = frames[i // fps][: video.height, : video.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for k in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, k:k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, k
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return out
