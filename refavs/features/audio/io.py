"""Reading audio files and bringing waveforms to the features' rate, channel count and length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from refavs.data.masks import MediaError


def load_waveform(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to ``([channels, samples] float32 in [-1, 1], sample_rate)``.

    WAV, FLAC and OGG are read with soundfile; anything soundfile cannot open is tried with
    PyAV when it is installed (mp3, m4a, the audio track of a video). Raises
    :class:`~refavs.data.masks.MediaError` naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: audio file not found")

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(rate)
    except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as err:
        sf_error = err
    except Exception as err:  # soundfile raises assorted types on truncated headers
        sf_error = err
    try:
        return _load_with_av(path)
    except ImportError:
        raise MediaError(f"{path}: unreadable audio ({sf_error})") from None
    except Exception as err:
        raise MediaError(f"{path}: unreadable audio (soundfile: {sf_error}; PyAV: {err})") from None


def _load_with_av(path: Path) -> tuple[np.ndarray, int]:
    import av  # pulls in av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        chunks, rate = [], stream.rate
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if array.dtype.kind == "i":
                array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
            if frame.format.is_planar:
                chunks.append(array.astype(np.float32))
            else:  # packed: [1, samples * channels] interleaved
                channels = len(frame.layout.channels)
                chunks.append(array.reshape(-1, channels).T.astype(np.float32))
    if not chunks:
        raise ValueError("no audio samples decoded")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1)), int(rate)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Average the channels of a ``[channels, samples]`` (or 1-D) waveform into ``[samples]``."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {waveform.shape}")
    return waveform.mean(axis=0)


def fit_length(waveform: np.ndarray, num_samples: int, pad_mode: str = "repeat") -> np.ndarray:
    """Trim a mono waveform to its first ``num_samples`` or extend it to that length.

    ``repeat`` tiles the waveform from its start (a 4 s sound becomes 4 + 4 + 2 s);
    ``zeros`` appends silence. An empty waveform becomes silence either way.
    """
    n = waveform.shape[-1]
    if n >= num_samples:
        return waveform[..., :num_samples]
    if pad_mode == "repeat" and n > 0:
        reps = -(-num_samples // n)
        return np.tile(waveform, reps)[..., :num_samples]
    if pad_mode not in ("repeat", "zeros"):
        raise ValueError(f"pad_mode must be 'repeat' or 'zeros', got {pad_mode!r}")
    out = np.zeros(num_samples, dtype=np.float32)
    out[:n] = waveform
    return out
