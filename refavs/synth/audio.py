"""The soundtrack of a scene: 10 s of 16 kHz mono in which chosen objects sound in chosen seconds.

Alignment with the model's audio windows: the features cut the waveform into ten
non-overlapping 0.96 s log-mel windows from time 0, window ``k`` covering
``[0.96 k, 0.96 (k + 1))`` s, so window ``k`` starts *before* second ``k`` for every ``k > 0``.
An object that sounds in second ``k`` is therefore rendered over ``[k, 0.96 (k + 1))`` s,
the part of second ``k`` that window ``k`` covers (0.96 s for ``k = 0`` down to 0.60 s for
``k = 9``): window ``k`` hears exactly the events of second ``k`` and nothing of second ``k - 1``,
and frame ``k`` (taken at second ``k``) shows the objects that sound in it.

Each note is normalised to unit RMS before it is scaled by the object's loudness, so the
``level_db`` steps (8 dB apart) are what a listener hears, whatever the timbre.

Stereo (:attr:`~refavs.synth.presets.SynthPreset.stereo`): each object's sound in second ``k``
is panned by where the object stands in frame ``k`` (:func:`pan_gains`), so the left channel
hears the left of the frame louder. The pan keeps the sum of the channels, so the mono mix of a
stereo track is the mono track (before clipping and 16-bit rounding): the pan adds where a sound
comes from and changes nothing else.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from refavs.data.layout import NUM_FRAMES
from refavs.data.writer import AUDIO_SAMPLE_RATE
from refavs.features.config import LogMelConfig
from refavs.synth.scene import ObjectAudio, Scene

WINDOW_SECONDS = LogMelConfig().patch_seconds
"""Length of one log-mel window of the features (0.96 s); events are cut to fit it."""

FADE_SECONDS = 0.01
"""Raised-cosine fade at both ends of every note (no clicks)."""

MAX_PARTIAL_HZ = 7_000.0
"""Harmonics above this are left out (the features' mel bands stop at 7.5 kHz)."""

RHYTHM_NOTES: dict[str, tuple[float, float]] = {"pulse2": (0.2, 0.3), "pulse4": (0.08, 0.15)}
"""Note length and note spacing (s) of the pulsed rhythms; ``steady`` holds one note over the span."""

VIBRATO_HZ, VIBRATO_DEPTH = 6.0, 0.03
"""Rate and relative depth of the ``vibrato`` timbre's frequency modulation."""

CHIRP_RANGE = (0.85, 1.2)
"""Start and end of the ``chirp`` timbre's sweep, as multiples of the pitch."""

BELL_PARTIALS = ((1.0, 1.0), (2.0, 0.6), (2.76, 0.5), (5.4, 0.3))
"""(frequency ratio, amplitude) of the ``bell`` timbre's inharmonic partials."""

DECAY_SECONDS = {"pluck": 0.12, "bell": 0.3}
"""Exponential decay time of the decaying timbres."""

NOISE_BAND = 1.4
"""The ``noise`` timbre keeps frequencies within ``[pitch / 1.4, pitch * 1.4]``."""

NOISE_STREAM = 2
"""Stream of the scene seed that draws the background noise and the noise timbres."""

PAN_WIDTH = 1.0
"""How far the pan goes: an object at horizontal position ``x`` (0 left edge, 1 right edge) has
pan ``p = PAN_WIDTH * (2 x - 1)`` and channel gains ``1 - p`` (left) and ``1 + p`` (right). The
left column's centre (x = 1/6) is then 14 dB louder on the left, the centre column even."""


def second_span(k: int, sample_rate: int = AUDIO_SAMPLE_RATE) -> tuple[int, int]:
    """Samples ``[start, end)`` in which an event of second ``k`` sounds (see the module doc)."""
    return k * sample_rate, int(round(WINDOW_SECONDS * (k + 1) * sample_rate))


def _fade(n: int, sample_rate: int) -> np.ndarray:
    m = min(int(FADE_SECONDS * sample_rate), n // 2)
    env = np.ones(n)
    if m > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        env[:m] = ramp
        env[n - m:] = ramp[::-1]
    return env


WAVETABLE_SIZE = 4096
"""Samples per period of the wavetables the harmonic timbres are read from."""


@lru_cache(maxsize=64)
def _wavetable(pitch: float, odd_only: bool) -> np.ndarray:
    """One period (``WAVETABLE_SIZE + 1`` points, closed) of the band-limited harmonic sum ``sum_k sin(2 pi k x) / k``."""
    x = np.arange(WAVETABLE_SIZE + 1, dtype=np.float64) / WAVETABLE_SIZE
    table = np.zeros_like(x)
    k = 1
    while k * pitch < MAX_PARTIAL_HZ:
        table += np.sin(2 * np.pi * k * x) / k
        k += 2 if odd_only else 1
    table.flags.writeable = False
    return table


def _harmonics(t: np.ndarray, pitch: float, odd_only: bool) -> np.ndarray:
    """Harmonics of ``pitch`` below :data:`MAX_PARTIAL_HZ` with amplitudes 1/k (odd ones only: a square wave)."""
    phase = np.mod(pitch * t, 1.0) * WAVETABLE_SIZE
    return np.interp(phase, np.arange(WAVETABLE_SIZE + 1), _wavetable(pitch, odd_only))


def note(timbre: str, pitch: float, n: int, rng: np.random.Generator,
         sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """One note of ``n`` samples, unit RMS, faded in and out."""
    t = np.arange(n, dtype=np.float64) / sample_rate
    if timbre == "sine":
        wave = np.sin(2 * np.pi * pitch * t)
    elif timbre == "square":
        wave = _harmonics(t, pitch, odd_only=True)
    elif timbre == "saw":
        wave = _harmonics(t, pitch, odd_only=False)
    elif timbre == "pluck":
        wave = _harmonics(t, pitch, odd_only=False) * np.exp(-t / DECAY_SECONDS["pluck"])
    elif timbre == "bell":
        wave = sum(a * np.sin(2 * np.pi * r * pitch * t) * np.exp(-t * r / DECAY_SECONDS["bell"])
                   for r, a in BELL_PARTIALS)
    elif timbre == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        spectrum[(freqs < pitch / NOISE_BAND) | (freqs > pitch * NOISE_BAND)] = 0.0
        wave = np.fft.irfft(spectrum, n)
    elif timbre == "vibrato":
        phase = 2 * np.pi * pitch * t - (VIBRATO_DEPTH * pitch / VIBRATO_HZ) * np.cos(2 * np.pi * VIBRATO_HZ * t)
        wave = np.sin(phase) + 0.3 * np.sin(2 * phase)
    elif timbre == "chirp":
        f0, f1 = CHIRP_RANGE[0] * pitch, CHIRP_RANGE[1] * pitch
        duration = max(t[-1], 1.0 / sample_rate)
        wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * duration)))
    else:
        raise ValueError(f"unknown timbre {timbre!r}")
    rms = float(np.sqrt(np.mean(wave * wave)))
    return wave / max(rms, 1e-12) * _fade(n, sample_rate)


def object_track(audio: ObjectAudio, rng: np.random.Generator, reference_rms: float,
                 sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """``[10 * sample_rate]`` float64: one object's sound alone."""
    track = np.zeros(NUM_FRAMES * sample_rate)
    gain = reference_rms * 10.0 ** (audio.level_db / 20.0)
    for k in audio.seconds:
        start, end = second_span(k, sample_rate)
        if audio.rhythm == "steady":
            onsets, length = [0.0], (end - start) / sample_rate
        else:
            length, spacing = RHYTHM_NOTES[audio.rhythm]
            onsets = list(np.arange(0.0, (end - start) / sample_rate - length + 1e-9, spacing))
        for onset in onsets:
            a = start + int(round(onset * sample_rate))
            n = min(int(round(length * sample_rate)), end - a)
            track[a:a + n] += gain * note(audio.timbre, audio.pitch_hz, n, rng, sample_rate)
    return track


def pan_gains(x: float) -> tuple[float, float]:
    """(left, right) gains of a sound at horizontal position ``x`` (a fraction of the frame width,
    0 at the left edge); their mean is 1 (see :data:`PAN_WIDTH`)."""
    p = PAN_WIDTH * (2.0 * min(max(x, 0.0), 1.0) - 1.0)
    return 1.0 - p, 1.0 + p


def object_pan(centers: Sequence[tuple[float, float] | None], seconds: Sequence[int], size: int,
               sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """``[2, 10 * sample_rate]``: the left and right gains of an object's sound over time, by where
    it stands in the frame of each second it sounds in (1 where it does not sound, or is not seen)."""
    gains = np.ones((2, NUM_FRAMES * sample_rate))
    for k in seconds:
        center = centers[k] if k < len(centers) else None
        if center is None:
            continue
        start, end = second_span(k, sample_rate)
        left, right = pan_gains(center[0] / size)
        gains[0, start:end], gains[1, start:end] = left, right
    return gains


def synthesize(scene: Scene, reference_rms: float, sample_rate: int = AUDIO_SAMPLE_RATE,
               stereo: bool = False) -> np.ndarray:
    """Every object's track plus the background noise, float32 in [-1, 1]: ``[10 * sample_rate]``,
    or ``[10 * sample_rate, 2]`` (left, right) with ``stereo``, each object panned by its place
    (:func:`object_pan`) and the noise the same in both channels. The random draws are the same
    either way, so the mono mix of the stereo track is the mono track."""
    rng = np.random.default_rng([scene.seed, NOISE_STREAM])
    noise = scene.noise_rms * rng.standard_normal(NUM_FRAMES * sample_rate)
    mix = np.stack([noise, noise]) if stereo else noise
    for obj in scene.objects:
        track = object_track(obj.audio, rng, reference_rms, sample_rate)
        if stereo:
            track = track * object_pan(obj.visual.centers, obj.audio.seconds, scene.size, sample_rate)
        mix += track
    mix = mix.T if stereo else mix
    return np.clip(mix, -1.0, 1.0).astype(np.float32)
