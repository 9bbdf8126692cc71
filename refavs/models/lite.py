"""``lite``: the CPU model of the EEMC family that refers (settings: :class:`LiteConfig`).

Same inputs and outputs as :class:`~refavs.models.eemc.EEMC` (10 frames, per-second audio,
text tokens with their mask -> ``[B, T, 256, 256]`` mask logits), built to learn the task on
a CPU in minutes:

1. **Frozen eyes.** ImageNet EfficientNet-Lite0 (:mod:`refavs.features.backbones.efficientnet_lite`)
   gives each frame a stride-8 and a stride-16 map. Training reads them from the feature cache
   (``ClipBatch.visual``); on raw frames the model runs the backbone itself.
2. **Where things sound.** Each stride-16 position, with its (x, y) and EEMC's cached-memory cue,
   attends across the clip's frames (temporal). The audio of second t alone makes a kernel
   that, matched against frame t's map, gives the sounding-object map of frame t (trained
   against Synth's ``gt_sounding`` masks where they exist). The maps of all ten seconds,
   per position, join the pixel features: "keeps / stops / starts sounding" become readable.
3. **Dense fusion.** Every pixel of frame t attends to the context of frame t: the text tokens
   and the ten audio tokens, each carrying its second and its offset from t (LAVT's
   pixel-word attention, extended to sound), at stride 16 (and, with ``head.fuse_fine``, again
   at stride 8). At stride 16 the positions of a frame then attend to each other
   (``head.spatial_layers``), so a pixel that has read the sentence sees its surroundings
   ("left of the purple diamond").
4. **Kernel read-out.** A query made from the sentence attends to the same context and becomes
   the frame's kernel; the mask logit of a pixel is its embedding's dot product with the kernel
   (as CRIS). A presence score per frame, from the kernel and the best match, gates the mask,
   so a frame without the target, and a null expression, gets an empty mask. With
   ``head.spatial_prior`` the kernel state also sets a smooth bias over the frame (x, y, x^2,
   y^2, xy): "on the left" acts on the whole frame at once.
5. **Refinement** (``head.refine``): the stride-8 mask is refined at stride 4 with the frame
   itself as a guide (:mod:`refavs.models.refine`), so the edges of small objects fall in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refavs.data.batch import ClipBatch, clip_slots
from refavs.data.labels import TARGET_SECONDS
from refavs.features.backbones.efficientnet_lite import FEATURE_CHANNELS, fused_for_inference, load_efficientnet_lite0
from refavs.features.visual import GUIDE, guide_map
from refavs.models import checkpoint
from refavs.models.lite_config import LiteConfig
from refavs.models.lite_losses import lite_loss, null_expression_rows
from refavs.models.readout import probabilities
from refavs.models.refine import GuidedRefinement

GROUPS: tuple[str, ...] = ("backbone", "head")

COMPARE_FEATURES = 10
"""What ``head.sound_compare`` adds to each stride-16 position: whether it sounds at all in the clip,
its level, pitch and onset over the clip (3), and each of these minus the largest (3) and minus the
smallest (3) among the clip's sounding positions."""

COMPARE_MARGIN = 2.0
"""How far a position that never sounds is pushed out of the largest and smallest of
``head.sound_compare`` (the compared quantities lie in [0, 1])."""

COMPARE_EPS = 1e-3
"""Floor of a position's summed sounding probability when its level and pitch are averaged over it."""

HEARD_FEATURES = 2
"""What ``head.presence_hears`` adds to the presence score's input: the highest sounding-object
logit of the frame's second, and of the whole clip."""
"""Parameter groups of the lite model: the frozen backbone and everything that trains."""


@dataclass
class LiteOutput:
    """What :meth:`LiteEEMC.forward` returns (the fields EEMC's output has, and the auxiliary maps).

    Attributes:
        mask_logits: ``[B, T, S, S]`` final mask logits (the presence gate included).
        loss: the training loss when targets were given, else None.
        presence_logits: ``[B, T]`` "the target is in frame t" logits (None without presence).
        sounding_logits: ``[B, T, g, g]`` sounding-object maps at stride 16 (None when off).
        rank_logits: ``[B, T, 2, g, g]`` level and pitch rank maps at stride 16 (None when off).
        level_logits: ``[B, T, 2, g, g]`` level and pitch maps of ``head.sound_compare`` (None when off).
        losses: the loss terms by name (floats), when a loss was computed.
    """

    mask_logits: Tensor
    loss: Tensor | None = None
    presence_logits: Tensor | None = None
    sounding_logits: Tensor | None = None
    rank_logits: Tensor | None = None
    level_logits: Tensor | None = None
    losses: dict[str, float] | None = None

    def probabilities(self) -> Tensor:
        return probabilities(self.mask_logits)


def coordinate_channels(n: int, h: int, w: int, device, dtype) -> Tensor:
    """``[n, 2, h, w]``: each position's x and y in [-1, 1]."""
    ys = torch.linspace(-1, 1, h, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, w, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))
    return grid.unsqueeze(0).expand(n, -1, -1, -1)


def spatial_basis(h: int, w: int, device, dtype) -> Tensor:
    """``[5, h, w]``: x, y, x^2 - 1/3, y^2 - 1/3 and xy of each position (x, y in [-1, 1]), the
    terms of the sentence's spatial prior (left / right, top / bottom, the middle or the sides)."""
    x, y = coordinate_channels(1, h, w, device, dtype)[0]
    return torch.stack([x, y, x * x - 1 / 3, y * y - 1 / 3, x * y])


def cached_memory(x: Tensor, beta: float) -> Tensor:
    """EEMC's cue ``(1 + beta) x_t - mean(x_1..x_t)`` along dim 1 (the frames)."""
    steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
    running = x.cumsum(1) / steps.view(1, -1, *([1] * (x.dim() - 2)))
    return (1 + beta) * x - running


def sample_training_frames(batch: int, frames: int, keep: int, device) -> Tensor:
    """``[batch, keep]``: for each row, ``keep`` of its ``frames`` frames drawn at random without
    replacement, in increasing order. Draws once from the global torch RNG (``torch.rand(batch,
    frames)``), so a seeded run draws the same frames."""
    return torch.rand(batch, frames, device=device).argsort(1)[:, :keep].sort(1).values


def gated_product_logits(mask_logits: Tensor, presence_logits: Tensor) -> Tensor:
    """Logits of ``sigmoid(mask) * sigmoid(presence)`` (presence ``[B, T]`` broadcast over pixels),
    computed in log space so that neither factor saturates to an infinite logit."""
    log_p = F.logsigmoid(mask_logits) + F.logsigmoid(presence_logits)[..., None, None]
    log_p = log_p.clamp(max=-1e-6)
    return log_p - torch.log(-torch.expm1(log_p))


class ContextAttention(nn.Module):
    """Pixels attend to context tokens (pre-norm, gated residual), then a feed-forward block.

    ``x [N, P, D]`` attends to ``context [N, C, Dc]`` with ``pad [N, C]`` True at ignored tokens;
    without a context, to itself (the normalised ``x``; ``context_dim`` must then be ``dim``).
    """

    def __init__(self, dim: int, context_dim: int, heads: int, dropout: float, ffn: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.gate = nn.Parameter(torch.ones(dim))
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim)) if ffn else None

    def forward(self, x: Tensor, context: Tensor | None = None, pad: Tensor | None = None) -> Tensor:
        normed = self.norm(x)
        context = normed if context is None else context
        attended, _ = self.attn(normed, context, context, key_padding_mask=pad, need_weights=False)
        x = x + self.gate * attended
        return x if self.ffn is None else x + self.ffn(x)


class TemporalAttention(nn.Module):
    """Each position attends across the T frames of its clip (``x [B, T, P, D]``)."""

    def __init__(self, dim: int, heads: int, frames: int):
        super().__init__()
        self.time = nn.Parameter(torch.zeros(frames, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        b, t, p, d = x.shape
        seq = (x + self.time[None, :, None]).permute(0, 2, 1, 3).reshape(b * p, t, d)
        normed = self.norm(seq)
        out, _ = self.attn(normed, normed, normed, need_weights=False)
        return x + out.reshape(b, p, t, d).permute(0, 2, 1, 3)


def sound_comparisons(sounding_logits: Tensor, level_logits: Tensor) -> Tensor:
    """``[C, P, COMPARE_FEATURES]``: what each position's object is, among the clip's sounding ones.

    From ``sounding_logits [C, T, P]`` (does the position sound in second t) and ``level_logits
    [C, T, P, 2]`` (how loud and how high it sounds then): whether it ever sounds (the largest
    sounding probability), its level and pitch averaged over the seconds it sounds, its onset
    (the mean over t of the probability that it has sounded by t: 1 when it sounds from the first
    second, 0 when never), and each of these three minus the largest, and minus the smallest,
    over the positions that sound (a position that never sounds is pushed :data:`COMPARE_MARGIN`
    away from both, in the comparisons as in what it is compared with). The loudest, highest or first sounding position gets 0 in the
    matching "minus the largest" feature, the others less.
    """
    sounding = torch.sigmoid(sounding_logits.float())  # [C, T, P]
    levels = torch.sigmoid(level_logits.float())  # [C, T, P, 2]
    ever = sounding.amax(1)  # [C, P]
    heard = (sounding[..., None] * levels).sum(1) / (sounding.sum(1)[..., None] + COMPARE_EPS)  # [C, P, 2]
    onset = (1 - torch.cumprod(1 - sounding, 1)).mean(1)  # [C, P]
    quantities = torch.cat([heard, onset[..., None]], -1)  # [C, P, 3]
    outside = (COMPARE_MARGIN * (1 - ever))[..., None]
    below_largest = quantities - outside - (quantities - outside).amax(1, keepdim=True)
    above_smallest = quantities + outside - (quantities + outside).amin(1, keepdim=True)
    return torch.cat([ever[..., None], quantities, below_largest, above_smallest], -1)


def _mlp(i: int, hidden: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, hidden), nn.GELU(), nn.Linear(hidden, o))


def _conv_norm(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 1), nn.GroupNorm(8, o), nn.GELU())


class LiteEEMC(nn.Module):
    """The ``lite`` model (see the module docstring). Build with ``LiteEEMC(config)``; load a saved
    one with :meth:`from_pretrained` or :func:`refavs.models.build.load_pretrained`.

    Args:
        config: a :class:`LiteConfig` (``get_model_config("lite")``).
        load_pretrained: load the backbone's ImageNet weights (when ``config.backbone.pretrained``).
    """

    def __init__(self, config: LiteConfig, load_pretrained: bool = True):
        super().__init__()

        self.config = config
        h, inp = config.head, config.inputs
        d, fd, t = h.dim, h.fine_dim, inp.num_frames
        self.backbone = load_efficientnet_lite0(pretrained=load_pretrained and config.backbone.pretrained)
        self.backbone.truncate("s16")
        self.backbone.requires_grad_(False)
        extra = 2 if h.coords else 0
        self.proj16 = _conv_norm(FEATURE_CHANNELS["s16"] + extra, d)
        self.proj8 = _conv_norm(FEATURE_CHANNELS["s8"] + extra, fd)
        self.memory = nn.Linear(d, d) if h.cached_memory else None
        self.temporal = TemporalAttention(d, h.num_heads, t) if h.temporal else None
        self.text_proj = nn.Sequential(nn.Linear(inp.text_dim, d), nn.LayerNorm(d))
        self.audio_proj = nn.Sequential(_mlp(inp.audio_dim, 2 * d, d), nn.LayerNorm(d))
        self.second = nn.Embedding(t, d) if h.audio_offsets else None
        self.offset = nn.Embedding(2 * t - 1, d) if h.audio_offsets else None
        self.type_embedding = nn.Parameter(torch.zeros(2, d))  # 0: text token, 1: audio token
        if h.sounding_map:
            self.sound_kernel = _mlp(d, 2 * d, d + 1)
            self.rank_kernel = _mlp(2 * d, 2 * d, 2 * (d + 1)) if h.rank_maps else None
            self.sound_feed = nn.Conv2d(self._sound_channels * (t + 1), d, 1)
            self.level_kernel = _mlp(2 * d, 2 * d, 2 * (d + 1)) if h.sound_compare else None
            self.compare_feed = nn.Linear(COMPARE_FEATURES, d) if h.sound_compare else None
            self.sound_side = nn.Linear(d, 2) if h.sound_side else None
            if self.sound_side is not None:  # starts as no bias at all
                nn.init.zeros_(self.sound_side.weight)
                nn.init.zeros_(self.sound_side.bias)
        self.fuse16 = ContextAttention(d, d, h.num_heads, h.dropout)
        # the positions of a frame attend to each other once the sentence has reached them
        self.spatial = nn.ModuleList(ContextAttention(d, d, h.num_heads, h.dropout) for _ in range(h.spatial_layers))
        self.up16 = nn.Conv2d(d, fd, 1)
        self.fuse8 = ContextAttention(fd, d, h.num_heads, h.dropout, ffn=False) if h.fuse_fine else None
        self.embed8 = nn.Sequential(nn.GroupNorm(8, fd), nn.Conv2d(fd, fd, 3, padding=1, groups=fd), nn.GELU(),
                                    nn.Conv2d(fd, fd, 1))
        self.query = nn.Parameter(torch.zeros(d))
        self.kernel_attn = ContextAttention(d, d, h.num_heads, h.dropout)
        self.kernel_frame = ContextAttention(d, d, h.num_heads, h.dropout) if h.kernel_reads_frame else None
        self.kernel_out = nn.Linear(d, fd + 1)
        self.presence = _mlp(d + 2 + (HEARD_FEATURES if h.presence_hears else 0), d, 1) if h.presence else None
        self.refine = GuidedRefinement(fd, h.refine_width) if h.refine else None
        self.spatial_prior = nn.Linear(d, 5) if h.spatial_prior else None
        if self.spatial_prior is not None:
            nn.init.zeros_(self.spatial_prior.weight)
            nn.init.zeros_(self.spatial_prior.bias)
        self.target_seconds = nn.Linear(d, 1)

    @property
    def _sound_channels(self) -> int:
        """Maps per frame and position fed into the fusion: sounding, then level and pitch ranks."""
        h = self.config.head
        return (1 + 2 * h.rank_maps) if h.sounding_map else 0

    # ------------------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, config: LiteConfig, load_pretrained: bool = True) -> "LiteEEMC":
        return cls(config, load_pretrained=load_pretrained)

    @classmethod
    def from_pretrained(cls, directory, config: LiteConfig | None = None, device="cpu") -> "LiteEEMC":
        """A model saved by :meth:`save_pretrained` (see :func:`refavs.models.checkpoint.load_into`)."""
        return checkpoint.load_into(cls, directory, config=config, device=device)

    def save_pretrained(self, directory):
        """Write ``config.json`` and ``model.safetensors`` (the backbone's weights included) atomically."""
        return checkpoint.save_pretrained(self, directory)

    def parameter_groups(self) -> dict[str, dict[str, nn.Parameter]]:
        """``{"backbone": ..., "head": ...}``: every parameter in exactly one group."""
        out: dict[str, dict[str, nn.Parameter]] = {g: {} for g in GROUPS}
        for name, p in self.named_parameters():
            out["backbone" if name.startswith("backbone.") else "head"][name] = p
        return out

    def parameter_counts(self) -> dict[str, int]:
        counts = {g: sum(p.numel() for p in ps.values()) for g, ps in self.parameter_groups().items()}
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def train(self, mode: bool = True) -> "LiteEEMC":
        super().train(mode)
        self.backbone.eval()  # frozen: its batch norms keep their ImageNet statistics
        return self

    # ------------------------------------------------------------------------- forward

    @torch.no_grad()
    def backbone_maps(self, pixel_values: Tensor) -> dict[str, Tensor]:
        """``{"s8": [N, 40, g8, g8], "s16": [N, 112, g16, g16], "rgb4": [N, 3, g4, g4]}`` of ``[N, 3, S, S]``
        normalised frames (what the feature cache stores, see :mod:`refavs.features.visual`; ``rgb4``
        is the refinement's guide, :func:`refavs.models.refine.guide_map`), computed by an
        inference copy of the frozen backbone with its batch norms folded in (about 3x faster on
        a CPU; made once, on first use, on the frames' device)."""
        fused = self.__dict__.get("_fused_backbone")  # not a submodule: not saved, not trained
        if fused is None or next(fused.parameters()).device != pixel_values.device:
            fused = self.__dict__["_fused_backbone"] = fused_for_inference(self.backbone.to(pixel_values.device))
        maps = fused.forward_features(pixel_values.contiguous(memory_format=torch.channels_last), up_to="s16")
        maps[GUIDE] = guide_map(pixel_values)
        return {name: m.contiguous() for name, m in maps.items()}

    def forward(self, pixel_values: Tensor | ClipBatch | None = None, audio: Tensor | None = None,
                text: Tensor | None = None, text_mask: Tensor | None = None, masks: Tensor | None = None,
                clips: list[str] | None = None, visual: dict[str, Tensor] | None = None,
                targets: Mapping[str, Tensor] | None = None) -> LiteOutput:
        """Mask logits for every frame, and the loss (:mod:`refavs.models.lite_losses`) when ``masks``
        are given.

        In training mode with ``masks``, the stride-8 path and the mask losses see only
        ``loss.frames_per_clip`` frames of each clip (:func:`sample_training_frames`); the mask
        logits are then ``[B, k, S, S]`` for those frames.

        Args:
            pixel_values: ``[B, T, 3, S, S]`` frames normalised for the backbone, or a whole
                :class:`ClipBatch` (its ``visual`` and ``targets`` are used).
            audio: ``[B, T, A]``; text: ``[B, L, Dt]``; text_mask: ``[B, L]`` (True: real token).
            masks: ``[B, T, 256, 256]`` targets, or None.
            clips: the B clip ids, or None. Expressions of one clip share its frames and audio,
                so what does not depend on the expression (the stride-16 path up to the fusion,
                the sounding maps, the stride-8 projection) runs once per clip: the same result.
            visual: cached backbone maps ``{"s8": [B, T, 40, g8, g8], "s16": [B, T, 112, g16, g16]}``,
                and ``"rgb4": [B, T, 3, g4, g4]`` with ``head.refine``; when given, ``pixel_values``
                may be None.
            targets: extra training targets by name (:mod:`refavs.data.labels`: ``SOUNDING [B, T, s, s]``,
                ``TARGET_SECONDS [B, T]``, ``SOUND_RANKS [B, T, 2, s, s]``), each used when present.
        """
        if isinstance(pixel_values, ClipBatch):
            batch = pixel_values
            pixel_values, audio, text, text_mask, masks, clips = (batch.pixel_values, batch.audio, batch.text,
                                                                  batch.text_mask, batch.masks, batch.clips)
            visual, targets = batch.visual, batch.targets
        targets = dict(targets or {})
        maps = self._maps(pixel_values, visual)
        self._check_inputs(maps, audio, text, text_mask, masks)
        b, t = audio.shape[:2]
        cfg, h = self.config, self.config.head
        d = h.dim
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        # context of frame t: text tokens, and the ten audio tokens (second, offset from t)
        words = self.text_proj(text) + self.type_embedding[0]  # [B, L, D]
        sounds = self.audio_proj(audio) + self.type_embedding[1]  # [B, T, D]
        if self.second is not None:
            sounds = sounds + self.second.weight[:t]
        frame_sounds = sounds[:, None].expand(b, t, t, d)  # [B, t (frame), t' (second), D]
        if self.offset is not None:
            offsets = torch.arange(t, device=audio.device)
            frame_sounds = frame_sounds + self.offset(offsets[None, :] - offsets[:, None] + t - 1)
        context = torch.cat([words[:, None].expand(b, t, -1, d), frame_sounds], 2).flatten(0, 1)  # [N, L + T, D]
        pad = torch.cat([~text_mask, torch.zeros(b, t, dtype=torch.bool, device=text.device)], 1)
        pad = pad[:, None].expand(b, t, -1).flatten(0, 1)

        # what does not depend on the expression runs once per clip of the batch
        first, owner = clip_slots(clips, b, audio.device)
        v16, p8, clip_maps = self._clip_features({k: v[first] for k, v in maps.items()}, sounds[first])
        v16 = v16[owner]  # [B, T, P, D]
        sounding_logits, rank_logits, level_logits = (None if m is None else m[owner] for m in clip_maps)
        g8 = p8.shape[-1]
        # null expressions (no target in any frame), found only when they are to skip the mask loss
        null_rows = None if masks is None else null_expression_rows(masks, cfg.loss)
        frames, keep = None, cfg.loss.frames_per_clip
        if self.training and masks is not None and 0 < keep < t:
            frames = sample_training_frames(b, t, keep, audio.device)  # [B, k] frames the fine path sees
        subset = frames is not None
        if not subset:
            frames = torch.arange(t, device=audio.device).expand(b, t)
        batch_index = torch.arange(b, device=frames.device)[:, None]
        rows = (frames + batch_index * t).flatten()  # the (expression, frame) rows the fine path sees
        if subset:
            v16 = v16[batch_index, frames]
            context, pad = context[rows], pad[rows]
            masks = masks[batch_index, frames]
            if TARGET_SECONDS in targets:  # per kept frame; the sounding and rank targets cover every frame
                targets[TARGET_SECONDS] = targets[TARGET_SECONDS].gather(1, frames)
        x8 = p8[(owner[:, None] * t + frames).flatten()]  # [n, Df, g8, g8]
        guide = None if self.refine is None else maps[GUIDE].flatten(0, 1)[rows]  # [n, 3, g4, g4]
        k = v16.shape[1]
        n = b * k

        x16 = self.fuse16(v16.flatten(0, 1), context, pad)  # [n, P, D]
        for layer in self.spatial:
            x16 = layer(x16)
        g16 = math.isqrt(x16.shape[1])
        up = F.interpolate(self.up16(x16.transpose(1, 2).reshape(n, d, g16, g16)), size=(g8, g8), mode="bilinear",
                           align_corners=False)
        x8 = x8 + up  # [n, Df, g8, g8]
        if self.fuse8 is not None:
            x8 = self.fuse8(x8.flatten(2).transpose(1, 2), context, pad).transpose(1, 2).reshape(n, -1, g8, g8)
        emb = x8 + self.embed8(x8)

        sentence = (words * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True).clamp(min=1)  # [B, D]
        query = (self.query + sentence)[:, None].expand(b, k, d).reshape(n, 1, d)  # one per frame
        kernel_state = self.kernel_attn(query, context, pad)  # [n, 1, D]
        if self.kernel_frame is not None:  # then looks at the frame's candidates
            kernel_state = self.kernel_frame(kernel_state, x16)
        kernel_state = kernel_state[:, 0]  # [n, D]
        kernel = self.kernel_out(kernel_state)  # [n, Df + 1]
        fd = emb.shape[1]
        logits = torch.einsum("nchw,nc->nhw", emb, kernel[:, :fd]) / math.sqrt(fd) + kernel[:, fd:, None]
        if self.spatial_prior is not None:  # where the sentence says, as a smooth bias over the frame
            basis = spatial_basis(g8, g8, logits.device, logits.dtype)
            logits = logits + torch.einsum("nk,khw->nhw", self.spatial_prior(kernel_state), basis)
        presence = None
        if self.presence is not None:
            flat = logits.flatten(1)
            summary = torch.stack([flat.amax(1), torch.logsumexp(flat, 1) - math.log(flat.shape[1])], 1)
            parts = [kernel_state, summary]
            if h.presence_hears:  # does anything visible sound, now or at all?
                loudest = sounding_logits.flatten(2).amax(2).to(kernel_state.dtype)  # [B, T]
                parts.append(torch.stack([loudest.gather(1, frames), loudest.amax(1, keepdim=True).expand(b, k)],
                                         -1).flatten(0, 1))
            presence = self.presence(torch.cat(parts, 1)).reshape(b, k)
        if self.refine is not None:  # stride 4, guided by the frame
            logits = self.refine(logits, emb, guide)
        coarse = logits.reshape(b, k, *logits.shape[-2:])
        final = coarse if presence is None else gated_product_logits(coarse, presence)
        mask_logits = F.interpolate(final, size=(cfg.mask_size, cfg.mask_size), mode="bilinear", align_corners=False)
        out = LiteOutput(mask_logits=mask_logits, presence_logits=presence, sounding_logits=sounding_logits,
                         rank_logits=rank_logits, level_logits=level_logits)
        if masks is not None:
            seconds_logits = self.target_seconds(kernel_state).reshape(b, k)
            out.loss, out.losses = lite_loss(cfg.loss, masks, targets, mask_logits, presence_logits=presence,
                                             sounding_logits=sounding_logits, rank_logits=rank_logits,
                                             level_logits=level_logits, seconds_logits=seconds_logits, null_rows=null_rows)
        return out

    def _clip_features(self, maps: dict[str, Tensor], sounds: Tensor
                       ) -> tuple[Tensor, Tensor, tuple[Tensor | None, Tensor | None, Tensor | None]]:
        """What depends on the clip alone: ``v16 [C, T, P, D]`` (positions, cached memory, temporal
        attention, the sounding maps and comparisons fed in), the projected stride-8 map
        ``[C * T, Df, g8, g8]``, and the sounding logits ``[C, T, g16, g16]``, the rank logits and the
        level logits ``[C, T, 2, g16, g16]`` (each None when off), from ``sounds [C, T, D]``."""
        h, d = self.config.head, self.config.head.dim
        c, t = sounds.shape[:2]
        dtype = self.proj16[0].weight.dtype
        s16 = maps["s16"].flatten(0, 1).to(dtype)
        s8 = maps["s8"].flatten(0, 1).to(dtype)
        n, _, g16, _ = s16.shape
        g8 = s8.shape[-1]
        if h.coords:
            s16 = torch.cat([s16, coordinate_channels(n, g16, g16, s16.device, s16.dtype)], 1)
            s8 = torch.cat([s8, coordinate_channels(n, g8, g8, s8.device, s8.dtype)], 1)
        v16 = self.proj16(s16).flatten(2).transpose(1, 2).reshape(c, t, g16 * g16, d)
        if self.memory is not None:
            v16 = v16 + self.memory(cached_memory(v16, h.memory_beta))
        if self.temporal is not None:
            v16 = self.temporal(v16)
        sounding_logits = rank_logits = level_logits = None
        if h.sounding_map:  # from the audio of second t alone, matched against frame t
            k = self.sound_kernel(sounds)  # [C, T, D + 1]
            sounding_logits = torch.einsum("ctpd,ctd->ctp", v16, k[..., :d]) / math.sqrt(d) + k[..., d:]
            if self.sound_side is not None:  # where the sound comes from, as a bias over the columns
                x = coordinate_channels(1, g16, g16, v16.device, v16.dtype)[0, 0].flatten()  # [P]
                columns = torch.stack([x, x * x - 1 / 3])  # [2, P]
                sounding_logits = sounding_logits + torch.einsum("ctk,kp->ctp", self.sound_side(sounds), columns)
            channels = sounding_logits[..., None]  # [C, T, P, M]
            # second t's audio beside the clip's mean: what the rank and level kernels read
            beside_mean = (torch.cat([sounds, sounds.mean(1, keepdim=True).expand_as(sounds)], -1)
                           if self.rank_kernel is not None or self.level_kernel is not None else None)
            if self.rank_kernel is not None:  # how loud, how high, ranked
                kr = self.rank_kernel(beside_mean).reshape(c, t, 2, d + 1)
                rank_logits = torch.einsum("ctpd,ctkd->ctpk", v16, kr[..., :d]) / math.sqrt(d) + kr[..., d][:, :, None]
                channels = torch.cat([channels, rank_logits], -1)
            m = channels.shape[-1]
            per_position = channels.permute(0, 2, 1, 3).reshape(c, 1, -1, t * m).expand(c, t, -1, t * m)
            feed = torch.cat([channels, per_position], -1)  # [C, T, P, M (T + 1)]: this second's, every second's
            fed = self.sound_feed(feed.flatten(0, 1).transpose(1, 2)[..., None]).squeeze(-1).transpose(1, 2)
            v16 = v16 + fed.reshape(c, t, -1, d)
            if self.level_kernel is not None:  # how loud, how high, how early, against the others
                kl = self.level_kernel(beside_mean).reshape(c, t, 2, d + 1)
                level_logits = torch.einsum("ctpd,ctkd->ctpk", v16, kl[..., :d]) / math.sqrt(d) + kl[..., d][:, :, None]
                compared = sound_comparisons(sounding_logits, level_logits)  # [C, P, F]
                v16 = v16 + self.compare_feed(compared.to(v16.dtype))[:, None]
                level_logits = level_logits.permute(0, 1, 3, 2).reshape(c, t, 2, g16, g16)
            sounding_logits = sounding_logits.reshape(c, t, g16, g16)
            if rank_logits is not None:
                rank_logits = rank_logits.permute(0, 1, 3, 2).reshape(c, t, 2, g16, g16)
        return v16, self.proj8(s8), (sounding_logits, rank_logits, level_logits)

    def _maps(self, pixel_values: Tensor | None, visual: dict[str, Tensor] | None) -> dict[str, Tensor]:
        if visual is not None:
            return visual
        if pixel_values is None:
            raise ValueError("the lite model needs pixel_values or cached backbone maps (visual)")
        size = self.config.backbone.image_size
        if pixel_values.dim() != 5 or pixel_values.shape[2] != 3 or tuple(pixel_values.shape[3:]) != (size, size):
            raise ValueError(f"pixel_values must be [B, T, 3, {size}, {size}] for config {self.config.name!r}, "
                             f"got {tuple(pixel_values.shape)}")
        b, t = pixel_values.shape[:2]
        maps = self.backbone_maps(pixel_values.flatten(0, 1))
        return {k: v.reshape(b, t, *v.shape[1:]) for k, v in maps.items()}

    def _check_inputs(self, maps, audio, text, text_mask, masks) -> None:
        c = self.config
        if audio is None or text is None:
            raise ValueError("the lite model needs audio and text features")
        b, t = audio.shape[:2]
        if tuple(audio.shape) != (b, c.num_frames, c.audio_dim):
            raise ValueError(f"audio must be [B, T={c.num_frames}, A={c.audio_dim}] (inputs.audio_dim), got "
                             f"{tuple(audio.shape)}; are the features of preset {c.feature_preset!r}?")
        if tuple(text.shape) != (b, c.text_tokens, c.text_dim):
            raise ValueError(f"text must be [B={b}, L={c.text_tokens}, Dt={c.text_dim}] (inputs.text_tokens, "
                             f"inputs.text_dim), got {tuple(text.shape)}; are the features of preset "
                             f"{c.feature_preset!r}?")
        for name, shape in c.visual_maps.items():
            want = (b, t, *shape)
            if name not in maps or tuple(maps[name].shape) != want:
                got = tuple(maps[name].shape) if name in maps else "missing"
                why = (" (the guide of head.refine; a feature cache made before it?)" if name == GUIDE else
                       f" for backbone.image_size={c.backbone.image_size}")
                raise ValueError(f"map {name} must be {list(want)}{why}, got {got}")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"text_mask must be [B, L] = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if masks is not None and tuple(masks.shape) != (b, t, c.mask_size, c.mask_size):
            raise ValueError(f"masks must be [B, T, {c.mask_size}, {c.mask_size}], got {tuple(masks.shape)}")
