"""Prompting Mask2Former's queries with the multimodal prompt (section 4, step 7).

Before the transformer decoder runs, its learned query features ``q`` become
``q + sigmoid(g1) * CrossAttention(q, prompt) + sigmoid(g2) * mean(prompt)``; the decoder
then runs unchanged. :class:`DecoderPrompting` does the "before": a forward pre-hook on
transformers' ``Mask2FormerMaskedAttentionDecoder`` that replaces its ``inputs_embeds`` (the
query features) while a prompt is set, so no transformers code is copied.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn


class QueryPrompt(nn.Module):
    """Gated cross-attention from the decoder queries to the prompt tokens.

    Args:
        dim: query and prompt width (the decoder's hidden size).
        num_heads: attention heads.
        gate_init: initial value of both gates (before their sigmoid).
    """

    def __init__(self, dim: int, num_heads: int, gate_init: float = 1.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.attn_gate = nn.Parameter(torch.full((1,), float(gate_init)))
        self.pool_gate = nn.Parameter(torch.full((1,), float(gate_init)))

    def forward(self, queries: Tensor, prompt: Tensor, prompt_valid: Tensor | None = None) -> Tensor:
        """queries ``[Q, N, C]`` (the decoder's sequence-first layout), prompt ``[N, S, C]``,
        prompt_valid ``[N, S]`` bool (True = a real token) or None -> ``[Q, N, C]``.

        With ``prompt_valid`` the padding tokens are masked out of the attention and of the mean.
        """
        q = queries.transpose(0, 1)
        key_padding = None if prompt_valid is None else ~prompt_valid
        attended, _ = self.attn(q, prompt, prompt, key_padding_mask=key_padding, need_weights=False)
        if prompt_valid is None:
            pooled = prompt.mean(dim=1, keepdim=True)
        else:
            weights = prompt_valid.to(prompt.dtype).unsqueeze(-1)
            pooled = (prompt * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1)
        out = q + torch.sigmoid(self.attn_gate) * attended + torch.sigmoid(self.pool_gate) * pooled
        return out.transpose(0, 1)


class DecoderPrompting:
    """Routes a prompt into a Mask2Former transformer decoder's query features.

    ``attach(decoder)`` registers a forward pre-hook; inside ``with prompting.active(prompt,
    valid):`` every decoder call gets ``inputs_embeds = query_prompt(inputs_embeds, prompt,
    valid)``. Outside the block the decoder runs untouched.
    """

    def __init__(self, query_prompt: QueryPrompt):
        self.query_prompt = query_prompt
        self._prompt: tuple[Tensor, Tensor | None] | None = None

    def attach(self, decoder: nn.Module):
        return decoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    @contextmanager
    def active(self, prompt: Tensor, prompt_valid: Tensor | None) -> Iterator[None]:
        self._prompt = (prompt, prompt_valid)
        try:
            yield
        finally:
            self._prompt = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict):
        if self._prompt is None:
            return None
        if "inputs_embeds" not in kwargs:
            raise RuntimeError("the Mask2Former decoder was called without inputs_embeds as a keyword; "
                               "this transformers version is not supported by the query prompting hook")
        prompt, valid = self._prompt
        kwargs = dict(kwargs, inputs_embeds=self.query_prompt(kwargs["inputs_embeds"], prompt, valid))
        return args, kwargs
