"""Multimodal fusion of EEMC (section 4, steps 1 to 6): from features to one prompt per frame.

Shapes: B clips, T frames, P visual positions per frame, L text tokens, d the fusion width,
C the prompt width, S = T + 1 + P + 1 + L prompt tokens per frame.

    audio [B, T, A] --audio_proj--> [B, T, d] -+-> audio_text  (self-attention over [audio ; text])
    text  [B, L, Dt] --text_proj--> [B, L, d] -+-> visual_text (self-attention over [visual ; text])
    visual map [B*T, d, h, w] -> visual tokens [B, T*P, d] --^
    audio part, visual part -> cached memory -> audio cues [B, T, d], visual cues [B, T, P, d]
    text cue = mean(projected text, text part of audio_text, text part of visual_text)
    per frame t: [audio cues ; tag ; visual cues of t ; tag ; text cue] -> integration -> prompt_proj
    -> prompt [B*T, S, C]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from refavs.models.eemc_config import EEMCConfig


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear (the reference's projections; parameters ``0.*`` and ``2.*``)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def cached_memory(x: Tensor, beta: float, dim: int) -> Tensor:
    """The cue ``(1 + beta) * x_t - mean(x_1..x_t)`` at every step t along ``dim``."""
    steps = torch.arange(1, x.shape[dim] + 1, device=x.device, dtype=x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    running_mean = x.cumsum(dim) / steps.view(shape)
    return (1 + beta) * x - running_mean


def visual_tokens(feature_map: Tensor, clips: int, layout: str) -> Tensor:
    """``[B*T, d, h, w]`` last-stage maps -> ``[B, T*P, d]`` tokens.

    ``frames``: token ``t*P + p`` is position p (row-major) of frame t, all d channels.
    ``reference_view``: the reference's ``view(B, d, P, T).view(B, -1, d)`` of the contiguous
    ``[B*T, d, h, w]`` memory, which ignores the layout and mixes channels, positions and frames.
    """
    bt, d, h, w = feature_map.shape
    frames, positions = bt // clips, h * w
    if layout == "frames":
        return feature_map.reshape(clips, frames, d, positions).transpose(2, 3).reshape(clips, frames * positions, d)
    if layout == "reference_view":
        return feature_map.reshape(clips, d, positions, frames).reshape(clips, frames * positions, d)
    raise ValueError(f"unknown visual token layout {layout!r}")


class BimodalAttention(nn.Module):
    """Self-attention over ``[x ; text]``; returns the x part and the text part.

    Args:
        dim: token width.
        num_heads: attention heads.
        dropout: attention dropout.
        residual: return ``LayerNorm(tokens + attention)`` instead of the bare attention.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, residual: bool = False):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim) if residual else None

    def forward(self, x: Tensor, text: Tensor, text_padding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``[B, N, d]``, text ``[B, L, d]``, text_padding ``[B, L]`` (True = padding) or None."""
        tokens = torch.cat([x, text], dim=1)
        key_padding = None
        if text_padding is not None:
            key_padding = torch.cat([text_padding.new_zeros(x.shape[:2]), text_padding], dim=1)
        out, _ = self.attn(tokens, tokens, tokens, key_padding_mask=key_padding, need_weights=False)
        out = residual_norm(self.norm, tokens, out)
        return out[:, : x.shape[1]], out[:, x.shape[1]:]


def residual_norm(norm: nn.LayerNorm | None, x: Tensor, attended: Tensor) -> Tensor:
    """``norm(x + attended)``, or ``attended`` alone without a norm (the bare attention)."""
    return attended if norm is None else norm(x + attended)


class FrameIntegration(nn.Module):
    """Self-attention over the tokens of each frame's multimodal sequence.

    Args:
        dim: token width.
        num_heads: attention heads.
        dropout: attention dropout.
        across_clips: reproduce the reference, which gave ``[B, S, d]`` tensors to an attention
            without ``batch_first``: for each token slot and frame, it attends over the B clips.
            The padding mask does not apply then (the sequence axis is the clips).
        residual: return ``LayerNorm(tokens + attention)`` instead of the bare attention.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, across_clips: bool = False,
                 residual: bool = False):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim) if residual else None
        self.across_clips = across_clips

    def forward(self, tokens: Tensor, padding: Tensor | None = None) -> Tensor:
        """tokens ``[B, T, S, d]``, padding ``[B, S]`` (True = padding) or None -> ``[B, T, S, d]``."""
        b, t, s, d = tokens.shape
        if self.across_clips:
            # The clip axis is the sequence; every (frame, slot) pair is one "batch" element.
            seq = tokens.reshape(b, t * s, d).transpose(0, 1)
            out, _ = self.attn(seq, seq, seq, need_weights=False)
            return residual_norm(self.norm, tokens, out.transpose(0, 1).reshape(b, t, s, d))
        flat = tokens.reshape(b * t, s, d)
        key_padding = None if padding is None else padding.repeat_interleave(t, dim=0)
        out, _ = self.attn(flat, flat, flat, key_padding_mask=key_padding, need_weights=False)
        return residual_norm(self.norm, tokens, out.reshape(b, t, s, d))


class MultimodalFusion(nn.Module):
    """Steps 1 to 6 of EEMC: projections, bi-modal blocks, cached memory, text cue, integration,
    prompt projection.

    Args:
        audio_dim, text_dim: widths of the cached features.
        dim: fusion width ``d``.
        prompt_dim: output width ``C``.
        mlp_hidden: hidden width of the three MLPs.
        num_heads, dropout: of the three attentions.
        cache_beta: beta of the cached memory; ``cached_memory`` False skips it.
        modality_tags: insert the tag tokens, filled with ``tag_values``.
        visual_layout, visual_cached_memory, integration_across_clips, text_padding_mask:
            see :class:`refavs.models.eemc_config.CompatConfig`.
        residual: ``LayerNorm(x + attention(x))`` around the three attentions (see
            :class:`refavs.models.eemc_config.FusionConfig`).
    """

    def __init__(self, *, audio_dim: int, text_dim: int, dim: int, prompt_dim: int, mlp_hidden: int,
                 num_heads: int, dropout: float = 0.0, cache_beta: float = 1.0, cached_memory: bool = True,
                 modality_tags: bool = True, tag_values: tuple[float, float] = (0.0, 1.0),
                 visual_layout: str = "frames", visual_cached_memory: str = "frames",
                 integration_across_clips: bool = False, text_padding_mask: bool = True, residual: bool = False):
        super().__init__()
        self.audio_proj = mlp(audio_dim, mlp_hidden, dim)
        self.text_proj = mlp(text_dim, mlp_hidden, dim)
        self.audio_text = BimodalAttention(dim, num_heads, dropout, residual)
        self.visual_text = BimodalAttention(dim, num_heads, dropout, residual)
        self.integration = FrameIntegration(dim, num_heads, dropout, across_clips=integration_across_clips,
                                            residual=residual)
        self.prompt_proj = mlp(dim, mlp_hidden, prompt_dim)
        self.cache_beta = cache_beta
        self.use_cached_memory = cached_memory
        self.modality_tags = modality_tags
        self.tag_values = tuple(tag_values)
        self.visual_layout = visual_layout
        self.visual_cached_memory = visual_cached_memory
        self.text_padding_mask = text_padding_mask

    @classmethod
    def from_config(cls, config: EEMCConfig) -> "MultimodalFusion":
        f, c = config.fusion, config.compat
        return cls(audio_dim=f.audio_dim, text_dim=f.text_dim, dim=config.visual_dim, prompt_dim=config.prompt_dim,
                   mlp_hidden=f.mlp_hidden, num_heads=f.num_heads, dropout=f.dropout, cache_beta=f.cache_beta,
                   cached_memory=f.cached_memory, modality_tags=f.modality_tags, tag_values=f.tag_values,
                   visual_layout=c.visual_layout, visual_cached_memory=c.visual_cached_memory,
                   integration_across_clips=c.integration_across_clips, text_padding_mask=c.text_padding_mask,
                   residual=f.residual)

    def _cues(self, x: Tensor, dim: int) -> Tensor:
        return cached_memory(x, self.cache_beta, dim) if self.use_cached_memory else x

    def forward(self, visual_map: Tensor, audio: Tensor, text: Tensor,
                text_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Prompts for every frame.

        Args:
            visual_map: ``[B*T, d, h, w]`` last-stage backbone maps, clip-major.
            audio: ``[B, T, A]``; text: ``[B, L, Dt]``; text_mask: ``[B, L]`` bool (True = real).

        Returns:
            ``prompt [B*T, S, C]`` and ``prompt_valid [B*T, S]`` (True = a real token; None when
            the text mask is not used).
        """
        b, t = audio.shape[:2]
        padding = None
        if self.text_padding_mask and text_mask is not None:
            padding = ~text_mask.bool()
        audio_tokens = self.audio_proj(audio)
        text_tokens = self.text_proj(text)
        vis = visual_tokens(visual_map, b, self.visual_layout)

        audio_part, text_from_audio = self.audio_text(audio_tokens, text_tokens, padding)
        visual_part, text_from_visual = self.visual_text(vis, text_tokens, padding)

        audio_cues = self._cues(audio_part, dim=1)
        if self.visual_cached_memory == "frames":
            visual_cues = self._cues(visual_part.reshape(b, t, -1, vis.shape[-1]), dim=1)
        else:  # the reference: a running mean along the whole T*P token sequence
            visual_cues = self._cues(visual_part, dim=1).reshape(b, t, -1, vis.shape[-1])
        text_cue = torch.stack([text_tokens, text_from_audio, text_from_visual]).mean(dim=0)

        tokens, valid = self._frame_sequences(audio_cues, visual_cues, text_cue, padding)
        fused = self.integration(tokens, None if valid is None else ~valid)
        prompt = self.prompt_proj(fused).flatten(0, 1)
        return prompt, None if valid is None else valid.repeat_interleave(t, dim=0)

    def _frame_sequences(self, audio_cues: Tensor, visual_cues: Tensor, text_cue: Tensor,
                         padding: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``[B, T, S, d]``: for each frame, [audio cues ; tag ; visual cues ; tag ; text cue]."""
        b, t, _, d = visual_cues.shape
        parts = [audio_cues.unsqueeze(1).expand(b, t, -1, d)]
        if self.modality_tags:
            parts.append(visual_cues.new_full((b, t, 1, d), self.tag_values[0]))
        parts.append(visual_cues)
        if self.modality_tags:
            parts.append(visual_cues.new_full((b, t, 1, d), self.tag_values[1]))
        parts.append(text_cue.unsqueeze(1).expand(b, t, -1, d))
        tokens = torch.cat(parts, dim=2)
        if padding is None:
            return tokens, None
        non_text = tokens.shape[2] - padding.shape[1]
        valid = torch.cat([padding.new_ones((b, non_text)), ~padding], dim=1)
        return tokens, valid
