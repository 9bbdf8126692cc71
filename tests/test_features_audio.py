"""Audio features: the VGGish front end against a direct numpy computation of its definition,
the length rule, resampling, decoding errors, the VGGish network and its weight files."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from refavs.data.masks import MediaError
from refavs.features import download
from refavs.features.audio.encoder import AudioFeaturizer, build_audio_featurizer
from refavs.features.audio.frontend import LogMelFrontEnd
from refavs.features.audio.io import fit_length, load_waveform
from refavs.features.audio.logmel import LogMelSummary
from refavs.features.audio.resample import resample
from refavs.features.audio.vggish import VGGish, VGGishPostprocess, load_pca, load_vggish_weights
from refavs.features.config import AudioFeatureConfig, LogMelConfig

RATE = 16_000
FRONTEND_ATOL = 1e-4
"""Largest allowed |torch float32 - numpy float64| on log(mel + 0.01) values (they span about -4.6..6;
the measured gap is about 1.2e-5)."""


def numpy_vggish_logmel_patches(x: np.ndarray) -> np.ndarray:
    """The VGGish front end written straight from its definition, in float64 numpy."""
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop:i * hop + win] for i in range(n_frames)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)          # periodic
    mag = np.abs(np.fft.rfft(frames * hann, n=nfft))                      # [F, 257]
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)          # noqa: E731  HTK
    bins = mel(np.linspace(0, RATE / 2, nfft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), 64 + 2)
    weights = np.zeros((nfft // 2 + 1, 64))
    for band in range(64):
        lo, mid, hi = edges[band:band + 3]
        for k, m in enumerate(bins):
            if k == 0:
                continue  # the DC bin carries no weight
            weights[k, band] = max(0.0, min((m - lo) / (mid - lo), (hi - m) / (hi - mid)))
    logmel = np.log(mag @ weights + 0.01)
    n_patches = 1 + (len(logmel) - 96) // 96
    return np.stack([logmel[i * 96:(i + 1) * 96] for i in range(n_patches)])


def logmel_featurizer(**overrides) -> AudioFeaturizer:
    return build_audio_featurizer(AudioFeatureConfig(encoder="logmel", vggish_weights=None, vggish_pca=None,
                                                     **overrides))


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * noise).astype(np.float32)


def test_frontend_matches_numpy_definition():
    x = tone(10.0)
    expected = numpy_vggish_logmel_patches(x.astype(np.float64))
    got = LogMelFrontEnd(LogMelConfig())(torch.from_numpy(x)[None])[0].numpy()
    assert expected.shape == got.shape == (10, 96, 64)
    assert np.abs(got - expected).max() < FRONTEND_ATOL


def test_config_sizes_follow_the_definition():
    fe = LogMelConfig()
    assert (fe.window_length, fe.hop_length, fe.fft_length, fe.patch_frames) == (400, 160, 512, 96)
    cfg = AudioFeatureConfig()
    assert cfg.clip_samples == 160_000 and cfg.available_windows == 10 and cfg.dim == 128
    with pytest.raises(ValueError, match="only 4 windows"):
        AudioFeatureConfig(clip_seconds=4.0)


def test_silence_and_empty_audio_give_finite_features():
    f = logmel_featurizer()
    out = f.embed_waveforms([(np.zeros(RATE * 10, np.float32), RATE), (np.zeros(0, np.float32), RATE)])
    assert out.shape == (2, 10, 128) and torch.isfinite(out).all()
    # silence is log(0.01) in every band, with zero spread over time
    assert torch.allclose(out[0, :, :64], torch.full((10, 64), math.log(0.01)))
    assert torch.equal(out[0, :, 64:], torch.zeros(10, 64))


def test_length_rule_trims_long_and_repeats_or_zero_pads_short():
    x = tone(12.0)
    f = logmel_featurizer()
    assert torch.equal(f.embed_waveforms([(x, RATE)]), f.embed_waveforms([(x[: 10 * RATE], RATE)]))
    short = tone(3.0)
    np.testing.assert_array_equal(fit_length(short, 10 * RATE, "repeat")[3 * RATE:6 * RATE], short)
    zero = fit_length(short, 10 * RATE, "zeros")
    assert zero.shape == (10 * RATE,) and not zero[3 * RATE:].any()
    repeated = f.embed_waveforms([(short, RATE)])[0]
    padded = logmel_featurizer(pad_mode="zeros").embed_waveforms([(short, RATE)])[0]
    # the last window lies in the padding: silence with zeros, sound when repeated
    assert torch.allclose(padded[-1, :64], torch.full((64,), math.log(0.01)))
    assert repeated[-1, :64].mean() > padded[-1, :64].mean() + 1.0


def test_channels_are_mixed_to_mono():
    left, right = tone(10.0, seed=1), tone(10.0, freq=880.0, seed=2)
    f = logmel_featurizer()
    stereo = f.embed_waveforms([(np.stack([left, right]), RATE)])
    mono = f.embed_waveforms([((left + right) / 2, RATE)])
    assert torch.allclose(stereo, mono, atol=1e-5)


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_resample_keeps_a_sine(rate):
    n = rate  # one second
    x = np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)
    y = resample(torch.from_numpy(x), rate, RATE).numpy()
    assert len(y) == math.ceil(n * RATE / rate)
    expected = np.sin(2 * np.pi * 440.0 * np.arange(len(y)) / RATE)
    edge = 200  # the filter sees zeros beyond both ends
    assert np.abs(y[edge:-edge] - expected[edge:-edge]).max() < 2e-3


def test_resample_removes_what_the_new_rate_cannot_hold_and_is_identity_at_equal_rates():
    x = torch.from_numpy(np.sin(2 * np.pi * 11_000.0 * np.arange(48_000) / 48_000))
    y = resample(x, 48_000, RATE)
    assert y[500:-500].abs().max() < 0.02  # 11 kHz is above the 8 kHz Nyquist of 16 kHz
    assert resample(x, RATE, RATE) is x


def test_any_sample_rate_gives_ten_windows():
    f = logmel_featurizer()
    out = f.embed_waveforms([(tone(10.0, rate=44_100), 44_100), (tone(10.0, rate=8_000), 8_000)])
    assert out.shape == (2, 10, 128) and torch.isfinite(out).all()
    reference = f.embed_waveforms([(tone(10.0), RATE)])
    # the same tone at another rate gives nearly the same spectral envelope
    assert (out[0, :, :64] - reference[0, :, :64]).abs().mean() < 0.5


def test_logmel_summary_is_band_mean_then_band_std():
    patches = torch.randn(3, 96, 64, dtype=torch.float64)
    out = LogMelSummary()(patches).numpy()
    p = patches.numpy()
    np.testing.assert_allclose(out[:, :64], p.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(out[:, 64:], p.std(axis=1), atol=1e-12)


def test_wav_decoding_and_errors_name_the_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, np.stack([tone(1.0), tone(1.0)], axis=1), 22_050, subtype="PCM_16")
    waveform, rate = load_waveform(good)
    assert waveform.shape == (2, RATE) and rate == 22_050
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    with pytest.raises(MediaError, match="corrupt.wav"):
        load_waveform(bad)
    with pytest.raises(MediaError, match="missing.wav: audio file not found"):
        load_waveform(tmp_path / "missing.wav")
    f = logmel_featurizer()
    with pytest.raises(MediaError, match="corrupt.wav"):
        f.embed_files([good, bad])


TORCH_PORT_KEYS = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")} | {
    f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}


def test_vggish_has_the_published_architecture_and_names():
    with torch.device("meta"):  # shapes only, no 290 MB of random numbers
        shapes = {k: tuple(v.shape) for k, v in VGGish().state_dict().items()}
    assert set(shapes) == TORCH_PORT_KEYS
    assert [shapes[f"features.{i}.weight"][:2] for i in (0, 3, 6, 8, 11, 13)] == [
        (64, 1), (128, 64), (256, 128), (256, 256), (512, 256), (512, 512)]
    assert shapes["embeddings.0.weight"] == (4096, 512 * 6 * 4)
    assert shapes["embeddings.2.weight"] == (4096, 4096) and shapes["embeddings.4.weight"] == (128, 4096)


def test_vggish_forward_and_weight_file_round_trip(tmp_path):
    torch.manual_seed(0)
    small = dict(patch_frames=32, num_bands=32, hidden_size=64)  # same layers and names, small sizes
    model = VGGish(**small).eval()
    assert set(model.state_dict()) == TORCH_PORT_KEYS
    patches = torch.randn(4, 32, 32)
    with torch.no_grad():
        out = model(patches)
    assert out.shape == (4, 128) and (out >= 0).all()  # the port keeps the final ReLU
    path = tmp_path / "vggish.pth"
    torch.save(model.state_dict(), path)
    # the file loads strictly into a model without the final ReLU (same names): the outputs
    # agree once clamped, and negative values appear without it
    no_relu = VGGish(final_relu=False, **small).eval()
    load_vggish_weights(no_relu, path)
    with torch.no_grad():
        raw = no_relu(patches)
    assert torch.equal(raw.clamp(min=0), out) and (raw < 0).any()
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="missing keys"):
        load_vggish_weights(no_relu, tmp_path / "wrong.pth")


def test_postprocess_is_pca_clip_and_8bit_quantisation(tmp_path):
    vectors, means = torch.eye(128) * 2.0, torch.full((128,), 0.5)
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means.reshape(128, 1)}, tmp_path / "pca.pth")
    post = load_pca(tmp_path / "pca.pth")
    x = torch.zeros(1, 128)
    x[0, :4] = torch.tensor([0.5, 1.0, 5.0, -9.0])  # projected: 0, 1, 9 -> clip 2, -19 -> clip -2
    out = post(x)[0]
    assert out[:4].tolist() == [round(2 * 255 / 4), round(3 * 255 / 4), 255.0, 0.0]
    assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    assert isinstance(post, VGGishPostprocess)
    np.savez(tmp_path / "bad.npz", pca_eigen_vectors=np.eye(3), pca_means=np.zeros(3))
    with pytest.raises(ValueError, match="expected \\(128, 128\\)"):
        load_pca(tmp_path / "bad.npz")


def test_random_vggish_featurizer_end_to_end():
    cfg = AudioFeatureConfig(encoder="vggish", vggish_weights=None, vggish_pca=None, postprocess=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = build_audio_featurizer(cfg)
        again = build_audio_featurizer(cfg)
    x = [(tone(10.0), RATE)]
    out = f.embed_waveforms(x)
    assert out.shape == (1, 10, 128)
    assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    assert torch.equal(again.embed_waveforms(x), out)  # seeded random weights are reproducible


def test_fetch_downloads_once_atomically_and_checks_the_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("REFAVS_CACHE", str(tmp_path / "cache"))
    payload = b"weights bytes"
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    digest = __import__("hashlib").sha256(payload).hexdigest()
    url = f"https://example.org/files/model-{digest[:8]}.pth"
    path = download.fetch(url)
    assert path.read_bytes() == payload and path.parent == tmp_path / "cache" / "weights"
    assert download.fetch(url) == path and len(calls) == 1  # cached
    with pytest.raises(OSError, match="does not match the hash"):
        download.fetch("https://example.org/files/model-deadbeef.pth")
    assert not list((tmp_path / "cache" / "weights").glob("*deadbeef*"))  # nothing half-written left
    with pytest.raises(FileNotFoundError, match="nowhere.pth does not exist"):
        download.fetch(str(tmp_path / "nowhere.pth"))

    def offline(url, timeout=None):
        raise OSError("Name or service not known")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    url = "https://example.org/files/other-12345678.pth"
    place = tmp_path / "cache" / "weights" / "other-12345678.pth"
    with pytest.raises(OSError, match="cannot download") as err:
        download.fetch(url, "VGGish weights")
    assert str(err.value).startswith("VGGish weights: ") and f"put it at {place}" in str(err.value)
    place.write_bytes(b"by hand")  # what the message tells an offline user to do
    assert download.fetch(url, "VGGish weights") == place
