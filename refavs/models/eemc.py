"""EEMC: Expression Enhancing with Multimodal Cues (section 4 of the reference page), built
on transformers' Mask2Former by composition.

One forward pass over a batch of B clips of T frames:

1. Mask2Former's pixel-level module (Swin backbone + pixel decoder, with the adapters hooked
   into the pixel decoder's deformable-attention layers) runs once on the B*T frames.
2. Its backbone's last-stage map (the same pass) gives the visual tokens; the fusion
   (:mod:`refavs.models.fusion`) turns them, the audio and the text into one prompt per frame.
3. The transformer decoder runs on the pixel-level outputs, its query features first prompted
   by the gated cross-attention (:mod:`refavs.models.prompt`).
4. The class head and the last layer's query masks become one mask logit map per frame
   (:mod:`refavs.models.readout`); the BCE loss is computed when targets are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from refavs.data.batch import ClipBatch, clip_slots
from refavs.models import checkpoint
from refavs.models.adapters import Adapter, attach_adapters
from refavs.models.eemc_config import GROUPS, EEMCConfig
from refavs.models.fusion import MultimodalFusion
from refavs.models.prompt import DecoderPrompting, QueryPrompt
from refavs.models.readout import mask_loss, probabilities, read_out_masks
from refavs.models.segmenter import build_segmenter

UNUSED_PARAMETERS: tuple[str, ...] = ("segmenter.model.pixel_level_module.encoder.swin.layernorm.",)
"""Name prefixes of parameters that transformers' Mask2Former holds but never uses in its outputs
(SwinBackbone keeps SwinModel's final layer norm, which only feeds SwinModel's pooled output).
They stay frozen whatever the groups, so no optimizer carries them."""


@dataclass
class EEMCOutput:
    """What :meth:`EEMC.forward` returns.

    Attributes:
        mask_logits: ``[B, T, S, S]`` mask logits per frame (S = ``config.mask_size``, 256).
        loss: the BCE loss (scalar) when targets were given, else None.
        query_probabilities: ``[B, T, Q]`` each query's object probability (the read-out weights).
    """

    mask_logits: Tensor
    loss: Tensor | None = None
    query_probabilities: Tensor | None = None

    def probabilities(self) -> Tensor:
        """``[B, T, S, S]`` foreground probabilities (see :func:`refavs.models.readout.probabilities`)."""
        return probabilities(self.mask_logits)


def shared_clips(pixel_values: Tensor, clips: list[str] | None) -> tuple[Tensor | None, Tensor | None]:
    """Which expressions of a batch share a clip (:func:`refavs.data.batch.clip_slots`).

    Returns ``(None, None)`` when ``clips`` is None or every clip id differs; otherwise the index
    of the first expression of each distinct clip (``[C]``) and, for each of the ``B * T``
    frames of the batch, its row among the ``C * T`` frames of those clips.
    Raises ValueError when two expressions of one clip id have different frames.
    """
    b, t = pixel_values.shape[:2]
    if clips is None:
        return None, None
    first, owner = clip_slots(clips, b, pixel_values.device)
    if len(first) == b:
        return None, None
    for i, slot in enumerate(owner.tolist()):
        j = int(first[slot])
        if j != i and not torch.equal(pixel_values[i], pixel_values[j]):
            raise ValueError(f"expressions {j} and {i} of the batch have clip id {clips[i]!r} but different frames")
    frame_index = (owner[:, None] * t + torch.arange(t, device=pixel_values.device)).flatten()
    return first, frame_index


class EEMC(nn.Module):
    """The Ref-AVS model. Build it with :meth:`from_config` / ``EEMC(config)``, or load a saved one
    with :meth:`from_pretrained`.

    Args:
        config: the model's settings (:func:`refavs.models.registry.get_model_config`).
        load_pretrained: fetch the segmenter's pretrained weights when its config names a
            checkpoint (False: random init, e.g. before loading a saved EEMC).

    Submodules: ``segmenter`` (transformers' ``Mask2FormerForUniversalSegmentation``), ``fusion``,
    ``query_prompt``, ``adapters``.
    """

    def __init__(self, config: EEMCConfig, load_pretrained: bool = True):
        super().__init__()
        self.config = config
        self.segmenter = build_segmenter(config.segmenter, load_pretrained=load_pretrained)
        self.fusion = MultimodalFusion.from_config(config)
        self.query_prompt = QueryPrompt(config.prompt_dim, config.prompt.num_heads, config.prompt.gate_init)
        self._prompting = DecoderPrompting(self.query_prompt)
        self._prompting.attach(self.segmenter.model.transformer_module.decoder)
        self.adapters = nn.ModuleList()
        if config.adapter.enabled:
            a, width = config.adapter, config.segmenter.feature_size
            self.adapters.extend(Adapter(width, width // a.reduction, a.mode, a.zero_init)
                                 for _ in range(config.segmenter.encoder_layers))
            attach_adapters(self.pixel_level_module.decoder.encoder.layers, self.adapters)
        self.set_trainable(config.trainable.resolved())

    # ------------------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, config: EEMCConfig, load_pretrained: bool = True) -> "EEMC":
        return cls(config, load_pretrained=load_pretrained)

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: EEMCConfig | None = None,
                        device: str | torch.device = "cpu") -> "EEMC":
        """A model saved by :meth:`save_pretrained` (see :func:`refavs.models.checkpoint.load_into`)."""
        return checkpoint.load_into(cls, directory, config=config, device=device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically."""
        return checkpoint.save_pretrained(self, directory)

    @property
    def pixel_level_module(self) -> nn.Module:
        """Mask2Former's backbone + pixel decoder."""
        return self.segmenter.model.pixel_level_module

    # ------------------------------------------------------------------------- trainable groups

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """The modules of each named group of :data:`refavs.models.eemc_config.GROUPS`."""
        m2f = self.segmenter.model
        return {
            "projections": [self.fusion.audio_proj, self.fusion.text_proj, self.fusion.prompt_proj],
            "fusion": [self.fusion.audio_text, self.fusion.visual_text, self.fusion.integration],
            "adapters": [self.adapters],
            "query_attention": [self.query_prompt],
            "backbone": [m2f.pixel_level_module.encoder],
            "pixel_decoder": [m2f.pixel_level_module.decoder],
            "transformer_decoder": [m2f.transformer_module],
            "class_head": [self.segmenter.class_predictor],
        }

    def parameter_groups(self) -> dict[str, dict[str, nn.Parameter]]:
        """``{group: {parameter name: parameter}}``; every parameter is in exactly one group."""
        group_of = {id(p): g for g, modules in self.module_groups().items() for mod in modules
                    for p in mod.parameters()}
        out: dict[str, dict[str, nn.Parameter]] = {g: {} for g in GROUPS}
        for name, p in self.named_parameters():
            if id(p) not in group_of:
                raise RuntimeError(f"parameter {name} belongs to no group")
            out[group_of[id(p)]][name] = p
        return out

    def set_trainable(self, groups) -> None:
        """Train exactly the named groups (less :data:`UNUSED_PARAMETERS`); freeze every other parameter."""
        groups = set(groups)
        unknown = groups - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
        for group, params in self.parameter_groups().items():
            for name, p in params.items():
                p.requires_grad_(group in groups and not name.startswith(UNUSED_PARAMETERS))

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per group, plus ``trainable`` and ``total``."""
        counts = {g: sum(p.numel() for p in ps.values()) for g, ps in self.parameter_groups().items()}
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # ------------------------------------------------------------------------- forward

    def forward(self, pixel_values: Tensor | ClipBatch, audio: Tensor | None = None, text: Tensor | None = None,
                text_mask: Tensor | None = None, masks: Tensor | None = None,
                clips: list[str] | None = None) -> EEMCOutput:
        """Mask logits for every frame of every clip, and the loss when ``masks`` are given.

        Args:
            pixel_values: ``[B, T, 3, H, W]`` normalised frames, or a whole :class:`ClipBatch`.
            audio: ``[B, T, A]`` audio features.
            text: ``[B, L, Dt]`` text token features.
            text_mask: ``[B, L]`` bool, True for real tokens (None: all real).
            masks: ``[B, T, 256, 256]`` 0/1 targets, or None.
            clips: the B clip ids, or None. The pixel-level module (and the visual tokens) then
                runs once per distinct clip, whose expressions share its outputs: the same
                result, at the cost of one clip. Expressions of one clip id must have the same
                frames (ValueError otherwise).
        """
        if isinstance(pixel_values, ClipBatch):
            batch = pixel_values
            pixel_values, audio, text, text_mask, masks, clips = (batch.pixel_values, batch.audio, batch.text,
                                                                  batch.text_mask, batch.masks, batch.clips)
        self._check_inputs(pixel_values, audio, text, text_mask, masks)
        b, t = pixel_values.shape[:2]
        first, frame_index = shared_clips(pixel_values, clips)
        frames = (pixel_values if first is None else pixel_values[first]).flatten(0, 1)

        visual_map = self._separate_visual_map(frames)  # None unless a reference-way switch is on
        pixel = self.pixel_level_module(frames)
        if visual_map is None:  # the backbone's last stage from the pass that feeds the pixel decoder
            visual_map = pixel.encoder_last_hidden_state
        multi_scale, mask_features = pixel.decoder_hidden_states, pixel.decoder_last_hidden_state
        if frame_index is not None:  # every expression's frames from its clip's single pass
            visual_map, mask_features = visual_map[frame_index], mask_features[frame_index]
            multi_scale = tuple(x[frame_index] for x in multi_scale)

        prompt, prompt_valid = self.fusion(visual_map, audio, text, text_mask)
        with self._prompting.active(prompt, prompt_valid):
            decoded = self.segmenter.model.transformer_module(
                multi_scale_features=multi_scale, mask_features=mask_features)
        class_logits = self.segmenter.class_predictor(decoded.intermediate_hidden_states[-1].transpose(0, 1))
        mask_logits, probs = read_out_masks(
            class_logits, decoded.masks_queries_logits[-1], object_class=self.config.segmenter.object_class,
            image_size=self.config.segmenter.image_size, mask_size=self.config.mask_size)

        mask_logits = mask_logits.reshape(b, t, *mask_logits.shape[-2:])
        loss = None if masks is None else mask_loss(mask_logits, masks, self.config.loss.bce_weight,
                                                    self.config.loss.dice_weight)
        return EEMCOutput(mask_logits=mask_logits, loss=loss, query_probabilities=probs.reshape(b, t, -1))

    def _separate_visual_map(self, frames: Tensor) -> Tensor | None:
        """The last-stage map from an extra pass, as the reference obtains it (for benchmarks)."""
        source = self.config.compat.visual_tokens_from
        if source == "separate_pass":  # the reference: a whole unprompted Mask2Former call, for one map
            return self.segmenter(pixel_values=frames).encoder_last_hidden_state
        if source == "separate_pixel_pass":
            return self.pixel_level_module(frames).encoder_last_hidden_state
        return None

    def _check_inputs(self, pixel_values, audio, text, text_mask, masks) -> None:
        c = self.config
        if audio is None or text is None:
            raise ValueError("EEMC needs pixel_values, audio and text")
        size, frames = c.segmenter.image_size, c.fusion.num_frames
        if pixel_values.dim() != 5 or pixel_values.shape[2] != 3 or tuple(pixel_values.shape[3:]) != (size, size):
            raise ValueError(f"pixel_values must be [B, T, 3, {size}, {size}] for config {c.name!r}, "
                             f"got {tuple(pixel_values.shape)}")
        b, t = pixel_values.shape[:2]
        if t != frames:
            raise ValueError(f"clips must have {frames} frames (fusion.num_frames), got {t}")
        if tuple(audio.shape) != (b, t, c.fusion.audio_dim):
            raise ValueError(f"audio must be [B={b}, T={t}, A={c.fusion.audio_dim}] (fusion.audio_dim), "
                             f"got {tuple(audio.shape)}; are the features of preset {c.feature_preset!r}?")
        if tuple(text.shape) != (b, c.fusion.text_tokens, c.fusion.text_dim):
            raise ValueError(f"text must be [B={b}, L={c.fusion.text_tokens}, Dt={c.fusion.text_dim}] "
                             f"(fusion.text_tokens, fusion.text_dim), got {tuple(text.shape)}; "
                             f"are the features of preset {c.feature_preset!r}?")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"text_mask must be [B, L] = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if masks is not None and tuple(masks.shape) != (b, t, c.mask_size, c.mask_size):
            raise ValueError(f"masks must be [B, T, {c.mask_size}, {c.mask_size}], got {tuple(masks.shape)}")
