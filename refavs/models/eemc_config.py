"""Typed settings of the EEMC model (Mask2Former prompted by audio and text) and its named configurations.

Every size the model uses is a field here or is derived from one (see the properties of
:class:`EEMCConfig`): the fusion width ``d`` is the backbone's last-stage width, the positions
per frame ``P`` follow the image size and the backbone's total stride, the prompt width is the
Mask2Former decoder's hidden size, ``L`` and the feature widths follow the cached features.

Named configurations (:data:`EEMC_CONFIGS`, listed with every other model's in
:mod:`refavs.models.registry`):

- ``paper``: Mask2Former Swin-B ADE (``facebook/mask2former-swin-base-ade-semantic``, downloaded
  by transformers), distilroberta text (768-d), VGGish audio (128-d), 384 px frames. The paper
  recipe trains the projections, the fusion blocks, the adapters and the query attention.
- ``paper-reference``: ``paper`` with every reference switch of section 6 on (what
  ``refavs import-reference`` builds for a checkpoint of the published code).
- ``tiny``: a tiny randomly initialised Swin (no download), MiniLM text (384-d), log-mel audio
  (128-d), 128 px frames; the whole segmenter trains too, since nothing is pretrained.
- ``tiny-reference``: ``tiny`` with the reference switches on (tests, timing).

Each configuration names its feature preset (:mod:`refavs.features.config`) so training can
check that the cached features fit the model (:func:`refavs.models.config_base.feature_mismatches`).
Fields marked ``identity: False`` do not change what a trained model computes
(:func:`refavs.models.overrides.is_identity_field`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

from refavs.data.layout import MASK_SIZE, NUM_FRAMES
from refavs.models.config_base import ConfigMethods

ARCHITECTURE = "eemc"
"""The ``architecture`` of every :class:`EEMCConfig`."""

PAPER_CHECKPOINT = "facebook/mask2former-swin-base-ade-semantic"
"""The pretrained Mask2Former of the paper (Swin-B backbone, ADE20k semantic, 150 classes)."""

GROUPS: tuple[str, ...] = (
    "projections", "fusion", "adapters", "query_attention",
    "backbone", "pixel_decoder", "transformer_decoder", "class_head",
)
"""Named module groups; every parameter of the model belongs to exactly one.

- ``projections``: the audio and text projections and the prompt projection (MLPs).
- ``fusion``: the two temporal bi-modal attention blocks and the integration attention.
- ``adapters``: the adapters in the pixel decoder's deformable-attention encoder layers.
- ``query_attention``: the gated cross-attention that prompts the decoder's queries.
- ``backbone``, ``pixel_decoder``, ``transformer_decoder``, ``class_head``: Mask2Former's parts.
"""

SEGMENTER_GROUPS: tuple[str, ...] = ("backbone", "pixel_decoder", "transformer_decoder", "class_head")
"""The groups :attr:`TrainableConfig.train_segmenter` adds."""

AdapterMode = Literal["residual", "replace"]
VisualLayout = Literal["frames", "reference_view"]
CachedMemoryAxis = Literal["frames", "tokens"]
VisualTokenSource = Literal["shared_pass", "separate_pass", "separate_pixel_pass"]


@dataclass(frozen=True)
class SegmenterConfig:
    """Mask2Former with a Swin backbone: the architecture, and where its weights come from.

    Attributes:
        checkpoint: a Hugging Face model name or a local folder holding a
            ``Mask2FormerForUniversalSegmentation`` whose architecture matches the fields below
            (checked when loading); None builds it from these fields with random weights.
        image_size: side of the square input frames (pixels).
        patch_size: side of the Swin patch embedding (pixels per token of the first stage).
        embed_dim: channels of the first Swin stage; each later stage doubles them.
        depths: Swin blocks per stage.
        num_heads: Swin attention heads per stage.
        window_size: Swin attention window (tokens per side).
        drop_path_rate: Swin stochastic depth (training mode only).
        hidden_dim: width of the decoder queries (and of the multimodal prompt).
        feature_size: width of the pixel decoder (and of its adapters' input/output).
        mask_feature_size: width of the per-pixel mask embeddings.
        num_queries: learned queries of the transformer decoder.
        encoder_layers: deformable-attention layers of the pixel decoder (one adapter each).
        decoder_layers: Mask2Former decoder depth (the decoder runs ``decoder_layers - 1`` layers).
        encoder_feedforward_dim: feed-forward width of the pixel decoder layers.
        dim_feedforward: feed-forward width of the transformer decoder layers.
        num_attention_heads: heads of the pixel decoder and transformer decoder attentions.
        num_labels: classes of the class head (150 for ADE20k); the head has one more, "no object".
        object_class: the class whose probability against "no object" weights each query's mask.
    """

    checkpoint: str | None = field(default=None, metadata={"identity": False})
    image_size: int = 384
    patch_size: int = 4
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 12
    drop_path_rate: float = 0.3
    hidden_dim: int = 256
    feature_size: int = 256
    mask_feature_size: int = 256
    num_queries: int = 100
    encoder_layers: int = 6
    decoder_layers: int = 10
    encoder_feedforward_dim: int = 1024
    dim_feedforward: int = 2048
    num_attention_heads: int = 8
    num_labels: int = 150
    object_class: int = 0

    @property
    def visual_dim(self) -> int:
        """Channels of the last Swin stage: ``d`` of the fusion (1024 for Swin-B)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def total_stride(self) -> int:
        """Pixels per position of the last stage (32 for Swin)."""
        return self.patch_size * 2 ** (len(self.depths) - 1)

    @property
    def visual_grid(self) -> int:
        """Positions per side of the last-stage map (12 for 384 px)."""
        return self.image_size // self.total_stride

    @property
    def visual_positions(self) -> int:
        """``P``: visual tokens per frame (144 for 384 px)."""
        return self.visual_grid ** 2


@dataclass(frozen=True)
class FusionConfig:
    """The multimodal fusion of section 4, steps 1 to 6.

    Attributes:
        audio_dim: width of the cached audio features (128 for VGGish and the log-mel summary).
        text_dim: width of the cached text features (768 distilroberta, 384 MiniLM).
        text_tokens: ``L``, text tokens per expression.
        num_frames: ``T``, frames per clip.
        mlp_hidden: hidden width of the audio/text projections and of the prompt projection.
        num_heads: heads of the bi-modal and integration attentions.
        dropout: attention dropout of those blocks.
        cache_beta: ``beta`` of the cached memory, ``(1 + beta) * x_t - mean(x_1..x_t)``.
        cached_memory: apply the cached memory (False: the "without cached memory" ablation).
        modality_tags: insert the two tag tokens (False: the "without modality encoding" ablation).
        tag_values: fill values of the tag token after the audio cues and after the visual cues.
        residual: wrap each of the three fusion attentions as ``LayerNorm(x + attention(x))``
            (False: the bare attention output, as the reference page describes). A bare
            attention at initialisation outputs nearly the mean of its values for every token,
            so the words of the expression reach the prompt smeared; the residual keeps each
            token's own content. Off in ``paper`` and in ``tiny`` (turned on in ``tiny``, the text
            still went unused; docs/experiments.md).
    """

    audio_dim: int = 128
    text_dim: int = 768
    text_tokens: int = 25
    num_frames: int = NUM_FRAMES
    mlp_hidden: int = 2048
    num_heads: int = 8
    dropout: float = 0.0
    cache_beta: float = 1.0
    cached_memory: bool = True
    modality_tags: bool = True
    tag_values: tuple[float, float] = (0.0, 1.0)
    residual: bool = False


@dataclass(frozen=True)
class PromptConfig:
    """The gated query cross-attention of step 7.

    Attributes:
        num_heads: heads of the cross-attention (width: the decoder's hidden size).
        gate_init: initial value of the two scalar gates (passed through a sigmoid).
    """

    num_heads: int = 4
    gate_init: float = field(default=1.0, metadata={"identity": False})


@dataclass(frozen=True)
class AdapterConfig:
    """The adapters of step 8, one per deformable-attention layer of the pixel decoder.

    Attributes:
        enabled: insert the adapters.
        reduction: bottleneck = pixel decoder width // reduction (256 // 4 = 64).
        mode: ``residual`` (output = attention + adapter(attention), the default) or ``replace``
            (output = adapter(attention), as the reference).
        zero_init: initialise the adapter's last layer to zero, so a residual adapter starts as
            the identity and the pretrained pixel decoder is untouched at step 0.
    """

    enabled: bool = True
    reduction: int = 4
    mode: AdapterMode = "residual"
    zero_init: bool = field(default=True, metadata={"identity": False})


@dataclass(frozen=True)
class CompatConfig:
    """Switches reproducing the reference implementation (section 6); all off by default.

    Attributes:
        visual_layout: ``frames`` (tokens ``[T * P, d]`` in frame-major, position-minor order) or
            ``reference_view`` (the reference's layout-ignoring ``view`` of the ``[T, d, h, w]``
            map, which mixes channels, positions and frames).
        integration_across_clips: run the integration attention on batch-first tensors without
            ``batch_first`` as the reference, so it attends across the clips of a batch.
        text_padding_mask: use the text mask as key padding mask in every attention (False: the
            reference, which let padding tokens take part).
        visual_cached_memory: ``frames`` (the intended reading: per position across the T
            frames) or ``tokens`` (the reference: a running mean along the T*P token sequence).
        visual_tokens_from: ``shared_pass`` takes the visual tokens from the backbone pass that
            feeds the pixel decoder. ``separate_pass`` obtains them as the reference does: a
            whole extra, unprompted Mask2Former call (pixel-level module, transformer decoder,
            class head) whose backbone map alone is kept. ``separate_pixel_pass`` runs only the
            pixel-level module a second time. Same outputs in every mode (in eval mode); the
            separate passes cost time and are there for benchmarks.
    """

    visual_layout: VisualLayout = "frames"
    integration_across_clips: bool = False
    text_padding_mask: bool = True
    visual_cached_memory: CachedMemoryAxis = "frames"
    visual_tokens_from: VisualTokenSource = field(default="shared_pass", metadata={"identity": False})


@dataclass(frozen=True)
class LossConfig:
    """The training loss on the ``[B, T, 256, 256]`` mask logits (step 9).

    Attributes:
        bce_weight: weight of the per-pixel binary cross-entropy with logits (the reference's
            only term).
        dice_weight: weight of a soft dice loss per frame (``1 - (2 sum(p g) + 1) / (sum(p) +
            sum(g) + 1)``, averaged over frames; an empty target pushes the frame towards no
            foreground). 0 in ``paper`` as the reference; the CPU recipe ``tiny`` uses it because
            BCE alone on objects of ~3 % of the frame favours background early on.
    """

    bce_weight: float = 1.0
    dice_weight: float = 0.0


@dataclass(frozen=True)
class TrainableConfig:
    """Which named module groups (:data:`GROUPS`) train.

    Attributes:
        groups: the groups that train (default: the paper recipe).
        train_segmenter: also train the backbone, pixel decoder, transformer decoder and class
            head (needed when the segmenter is randomly initialised, as in ``tiny``).
        reference_freeze: keep the fusion blocks frozen, as the reference did.
    """

    groups: tuple[str, ...] = ("projections", "fusion", "adapters", "query_attention")
    train_segmenter: bool = False
    reference_freeze: bool = False

    def resolved(self) -> tuple[str, ...]:
        """The trainable groups after both switches, in :data:`GROUPS` order."""
        chosen = set(self.groups) | (set(SEGMENTER_GROUPS) if self.train_segmenter else set())
        if self.reference_freeze:
            chosen.discard("fusion")
        return tuple(g for g in GROUPS if g in chosen)


@dataclass(frozen=True)
class EEMCConfig(ConfigMethods):
    """Everything that defines an EEMC model.

    Attributes:
        name: the named configuration this came from (informational).
        architecture: always ``eemc`` (how a saved config is told from another model's; configs
            saved before the field existed are upgraded by :mod:`refavs.models.registry`).
        feature_preset: the :mod:`refavs.features.config` preset whose features this model eats.
        mask_size: side of the output mask logits and of the targets.
        segmenter: the Mask2Former.
        fusion: the multimodal fusion.
        prompt: the gated query cross-attention.
        adapter: the pixel decoder adapters.
        compat: reference-reproducing switches.
        trainable: which module groups train (does not change what the model computes).
        loss: the training loss (does not change what the model computes).
    """

    name: str = "custom"
    architecture: Literal["eemc"] = ARCHITECTURE
    feature_preset: str = "paper"
    mask_size: int = MASK_SIZE
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)
    trainable: TrainableConfig = field(default_factory=TrainableConfig, metadata={"identity": False})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"identity": False})

    def __post_init__(self) -> None:
        problems = _validate(self)
        if problems:
            raise ValueError(f"invalid EEMC config {self.name!r}: " + "; ".join(problems))

    @property
    def visual_dim(self) -> int:
        """``d``: the fusion width (the backbone's last-stage width)."""
        return self.segmenter.visual_dim

    @property
    def prompt_dim(self) -> int:
        """Width of the multimodal prompt (the decoder's hidden size)."""
        return self.segmenter.hidden_dim

    # the names every model config answers (refavs.models.config_base.ModelConfig)
    @property
    def input_fields(self) -> Mapping[str, str]:
        return {"image_size": "segmenter.image_size", "num_frames": "fusion.num_frames",
                "audio_dim": "fusion.audio_dim", "text_dim": "fusion.text_dim", "text_tokens": "fusion.text_tokens"}

    @property
    def reads_cached_maps(self) -> bool:
        return False

    @property
    def prompt_tokens(self) -> int:
        """Tokens of one frame's prompt: T audio + tag + P visual + tag + L text (181 for the paper)."""
        tags = 2 if self.fusion.modality_tags else 0
        return self.fusion.num_frames + self.segmenter.visual_positions + self.fusion.text_tokens + tags


def _validate(c: EEMCConfig) -> list[str]:
    s, f, problems = c.segmenter, c.fusion, []
    if c.architecture != ARCHITECTURE:
        problems.append(f"architecture must be {ARCHITECTURE!r}, got {c.architecture!r}")
    if not (len(s.depths) == len(s.num_heads) and len(s.depths) >= 1):
        problems.append(f"segmenter.depths {s.depths} and segmenter.num_heads {s.num_heads} need the same length")
    if s.image_size % s.total_stride:
        problems.append(f"segmenter.image_size={s.image_size} is not a multiple of the backbone stride "
                        f"{s.total_stride}")
    if not 0 <= s.object_class < s.num_labels:
        problems.append(f"segmenter.object_class={s.object_class} is not a class of num_labels={s.num_labels}")
    if c.visual_dim % f.num_heads:
        problems.append(f"fusion.num_heads={f.num_heads} does not divide the visual width {c.visual_dim}")
    if c.prompt_dim % c.prompt.num_heads:
        problems.append(f"prompt.num_heads={c.prompt.num_heads} does not divide segmenter.hidden_dim={c.prompt_dim}")
    if c.adapter.enabled and s.feature_size % c.adapter.reduction:
        problems.append(f"adapter.reduction={c.adapter.reduction} does not divide segmenter.feature_size")
    if c.adapter.mode not in typing.get_args(AdapterMode):
        problems.append(f"adapter.mode must be one of {typing.get_args(AdapterMode)}, got {c.adapter.mode!r}")
    for name, value, allowed in (("visual_layout", c.compat.visual_layout, VisualLayout),
                                 ("visual_cached_memory", c.compat.visual_cached_memory, CachedMemoryAxis),
                                 ("visual_tokens_from", c.compat.visual_tokens_from, VisualTokenSource)):
        if value not in typing.get_args(allowed):
            problems.append(f"compat.{name} must be one of {typing.get_args(allowed)}, got {value!r}")
    unknown = [g for g in c.trainable.groups if g not in GROUPS]
    if unknown:
        problems.append(f"trainable.groups has unknown groups {unknown}; known: {', '.join(GROUPS)}")
    negative = [f"loss.{k.name}={getattr(c.loss, k.name)}" for k in dataclasses.fields(c.loss)
                if k.type in (float, "float") and getattr(c.loss, k.name) < 0]
    if negative:
        problems.append("loss weights must be >= 0: " + ", ".join(negative))
    for name in ("audio_dim", "text_dim", "text_tokens", "num_frames", "mlp_hidden"):
        if getattr(f, name) < 1:
            problems.append(f"fusion.{name} must be positive")
    return problems


# ----------------------------------------------------------------------------------- presets

def paper_config() -> EEMCConfig:
    """``paper``: the published recipe on the pretrained Mask2Former Swin-B ADE."""
    return EEMCConfig(
        name="paper", feature_preset="paper",
        segmenter=SegmenterConfig(checkpoint=PAPER_CHECKPOINT),
        fusion=FusionConfig(audio_dim=128, text_dim=768),
    )


def tiny_config() -> EEMCConfig:
    """``tiny``: a small randomly initialised Mask2Former that trains whole on a CPU."""
    return EEMCConfig(
        name="tiny", feature_preset="tiny",
        segmenter=SegmenterConfig(
            checkpoint=None, image_size=128, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
            window_size=4, drop_path_rate=0.0, hidden_dim=32, feature_size=32, mask_feature_size=32,
            num_queries=8, encoder_layers=2, decoder_layers=3, encoder_feedforward_dim=64,
            dim_feedforward=64, num_attention_heads=4, num_labels=1),
        fusion=FusionConfig(audio_dim=128, text_dim=384, mlp_hidden=256),
        trainable=TrainableConfig(train_segmenter=True),
        loss=LossConfig(dice_weight=1.0),
    )


def with_reference_switches(config: EEMCConfig, name: str | None = None) -> EEMCConfig:
    """``config`` with every reference behaviour of section 6 on (what imported checkpoints need)."""
    return config.replace(
        name=name or f"{config.name}-reference",
        adapter=dataclasses.replace(config.adapter, mode="replace", zero_init=False),
        compat=dataclasses.replace(config.compat, visual_layout="reference_view", integration_across_clips=True,
                                   text_padding_mask=False, visual_cached_memory="tokens"),
        trainable=dataclasses.replace(config.trainable, reference_freeze=True),
    )


EEMC_CONFIGS: dict[str, Callable[[], EEMCConfig]] = {
    "paper": paper_config,
    "paper-reference": lambda: with_reference_switches(paper_config()),
    "tiny": tiny_config,
    "tiny-reference": lambda: with_reference_switches(tiny_config()),
}
"""EEMC's named configurations; each entry builds a fresh :class:`EEMCConfig`."""
