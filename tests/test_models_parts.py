"""EEMC's parts alone, on hand-made inputs: cached memory, visual tokens, attention blocks and
their reference switches, the query prompt, adapters, the mask read-out and the loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from refavs.models.adapters import Adapter
from refavs.models.fusion import BimodalAttention, FrameIntegration, MultimodalFusion, cached_memory, visual_tokens
from refavs.models.prompt import QueryPrompt
from refavs.models.readout import (binary_masks, dice_loss, mask_loss, object_probabilities, probabilities,
                                   read_out_masks)


def test_cached_memory_hand_example():
    x = torch.tensor([1.0, 3.0, 5.0])
    # t=1: 2*1 - 1 = 1; t=2: 2*3 - (1+3)/2 = 4; t=3: 2*5 - (1+3+5)/3 = 7
    assert torch.equal(cached_memory(x, beta=1.0, dim=0), torch.tensor([1.0, 4.0, 7.0]))
    assert torch.allclose(cached_memory(x, beta=0.5, dim=0), torch.tensor([0.5, 2.5, 4.5]))
    # along frames of a [B, T, P, d] tensor: each position has its own running mean
    v = torch.tensor([[1.0, 10.0], [3.0, 30.0]]).reshape(1, 2, 2, 1)  # T=2 frames, P=2 positions
    assert cached_memory(v, 1.0, dim=1).flatten().tolist() == [1.0, 10.0, 4.0, 40.0]


def _numbered_map(clips: int, frames: int, d: int, side: int) -> torch.Tensor:
    """value = 1000 * frame index (clip-major) + 100 * channel + position."""
    bt = torch.arange(clips * frames).view(-1, 1, 1) * 1000
    c = torch.arange(d).view(1, -1, 1) * 100
    p = torch.arange(side * side).view(1, 1, -1)
    return (bt + c + p).float().reshape(clips * frames, d, side, side)


def test_visual_tokens_follow_frames_then_positions():
    fmap = _numbered_map(clips=2, frames=3, d=4, side=2)
    tokens = visual_tokens(fmap, clips=2, layout="frames")
    assert tokens.shape == (2, 3 * 4, 4)
    # clip 1, frame 2, position 3 -> map index 1*3+2 = 5, every channel
    assert tokens[1, 2 * 4 + 3].tolist() == [5003.0, 5103.0, 5203.0, 5303.0]


def test_reference_view_mixes_channels_positions_and_frames():
    fmap = _numbered_map(clips=2, frames=3, d=4, side=2)
    ref = visual_tokens(fmap, clips=2, layout="reference_view")
    assert torch.equal(ref, fmap.view(2, 4, 4, 3).view(2, -1, 4))  # the reference's two views
    assert not torch.equal(ref, visual_tokens(fmap, clips=2, layout="frames"))
    assert ref[0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]  # one "token" = 4 positions of channel 0, frame 0


def test_text_padding_mask_hides_padding_tokens_and_its_switch_restores_them():
    torch.manual_seed(0)
    block = BimodalAttention(dim=8, num_heads=2).eval()
    x, text = torch.randn(1, 5, 8), torch.randn(1, 4, 8)
    padding = torch.tensor([[False, False, True, True]])
    changed = text.clone()
    changed[0, 2:] += 3.0
    with torch.no_grad():
        assert torch.allclose(block(x, text, padding)[0], block(x, changed, padding)[0], atol=1e-6)
        assert not torch.allclose(block(x, text)[0], block(x, changed)[0], atol=1e-3)


def test_integration_attends_within_a_clip_unless_the_reference_switch():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3, 5, 8)  # B=2 clips, T=3 frames, S=5 tokens
    other = tokens.clone()
    other[1] += 1.0  # change clip 1 only
    within = FrameIntegration(8, 2).eval()
    across = FrameIntegration(8, 2, across_clips=True).eval()
    across.load_state_dict(within.state_dict())
    with torch.no_grad():
        assert torch.allclose(within(tokens)[0], within(other)[0], atol=1e-6)
        assert not torch.allclose(across(tokens)[0], across(other)[0], atol=1e-3)
        # across clips, each (frame, slot) attends over the clips: the reference's unbatched call
        flat, _ = across.attn(tokens[:, 0].transpose(0, 1), tokens[:, 0].transpose(0, 1),
                              tokens[:, 0].transpose(0, 1), need_weights=False)
        assert torch.allclose(across(tokens)[:, 0], flat.transpose(0, 1), atol=1e-6)


def test_residual_blocks_add_the_input_and_normalise():
    torch.manual_seed(0)
    bare, residual = BimodalAttention(dim=8, num_heads=2).eval(), BimodalAttention(dim=8, num_heads=2, residual=True)
    residual.load_state_dict(bare.state_dict(), strict=False)  # same attention; the norm is extra
    assert bare.norm is None and isinstance(residual.norm, torch.nn.LayerNorm)
    x, text = torch.randn(1, 5, 8), torch.randn(1, 4, 8)
    with torch.no_grad():
        attended = torch.cat(bare(x, text), dim=1)
        expected = F.layer_norm(torch.cat([x, text], dim=1) + attended, (8,))  # the norm starts as identity
        assert torch.allclose(torch.cat(residual.eval()(x, text), dim=1), expected, atol=1e-6)
    tokens = torch.randn(2, 3, 5, 8)
    within_bare, within = FrameIntegration(8, 2).eval(), FrameIntegration(8, 2, residual=True).eval()
    within.load_state_dict(within_bare.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.allclose(within(tokens), F.layer_norm(tokens + within_bare(tokens), (8,)), atol=1e-6)


def _fusion(**switches) -> MultimodalFusion:
    torch.manual_seed(0)
    return MultimodalFusion(audio_dim=6, text_dim=5, dim=8, prompt_dim=4, mlp_hidden=12, num_heads=2,
                            **switches).eval()


def test_fusion_builds_one_prompt_per_frame():
    b, t, side, length = 2, 3, 2, 4
    fusion = _fusion()
    visual, audio, text = torch.randn(b * t, 8, side, side), torch.randn(b, t, 6), torch.randn(b, length, 5)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    prompt, valid = fusion(visual, audio, text, mask)
    tokens = t + 1 + side * side + 1 + length
    assert prompt.shape == (b * t, tokens, 4) and valid.shape == (b * t, tokens)
    assert valid[0].tolist() == [True] * (tokens - 1) + [False]  # clip 0, frame 0: last text token padded
    assert valid[t].tolist() == [True] * (tokens - 2) + [False, False]  # clip 1, frame 0
    assert fusion(visual, audio, text, None)[1] is None


def test_fusion_visual_cached_memory_axis_switch():
    b, t, side = 1, 3, 2
    visual, audio, text = torch.randn(b * t, 8, side, side), torch.randn(b, t, 6), torch.randn(b, 4, 5)
    frames = _fusion()(visual, audio, text)[0]
    tokens = _fusion(visual_cached_memory="tokens")(visual, audio, text)[0]
    without = _fusion(cached_memory=False)(visual, audio, text)[0]
    assert not torch.allclose(frames, tokens, atol=1e-4)
    assert not torch.allclose(frames, without, atol=1e-4)


def test_query_prompt_formula_and_masked_mean():
    torch.manual_seed(0)
    qp = QueryPrompt(dim=4, num_heads=2, gate_init=1.0).eval()
    queries, prompt = torch.randn(3, 2, 4), torch.randn(2, 5, 4)  # Q=3, N=2, S=5
    with torch.no_grad():
        out = qp(queries, prompt)
        attended, _ = qp.attn(queries.transpose(0, 1), prompt, prompt, need_weights=False)
        gate = 1 / (1 + math.exp(-1.0))
        expected = queries.transpose(0, 1) + gate * attended + gate * prompt.mean(1, keepdim=True)
        assert torch.allclose(out, expected.transpose(0, 1), atol=1e-6)
        valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
        changed = prompt.clone()
        changed[1, 2:] = 100.0
        assert torch.allclose(qp(queries, prompt, valid), qp(queries, changed, valid), atol=1e-5)
    assert qp.attn_gate.item() == 1.0 and qp.pool_gate.item() == 1.0


def test_adapters_residual_zero_init_is_identity_replace_is_not():
    x = torch.randn(2, 7, 16)
    residual = Adapter(16, 4)
    assert torch.equal(residual(x), x)
    torch.manual_seed(0)
    replace = Adapter(16, 4, mode="replace", zero_init=False)
    assert torch.allclose(replace(x), replace.up(torch.relu(replace.down(x))))
    with pytest.raises(ValueError, match="adapter mode"):
        Adapter(16, 4, mode="sum")


def test_object_probability_is_a_two_way_softmax_with_no_object():
    # K = 2 labels + no object; class 1 must not matter for object_class 0
    logits = torch.tensor([[[math.log(3.0), 50.0, 0.0], [0.0, -7.0, 0.0]]])
    assert torch.allclose(object_probabilities(logits, 0), torch.tensor([[0.75, 0.5]]))
    assert torch.allclose(object_probabilities(logits, 1), torch.sigmoid(torch.tensor([[50.0, -7.0]])))


def test_read_out_weights_query_logits_by_probability():
    class_logits = torch.tensor([[[math.log(3.0), 9.0, 0.0], [0.0, 9.0, 0.0]]])  # probs 0.75, 0.5
    query_masks = torch.stack([torch.full((4, 4), 2.0), torch.full((4, 4), -4.0)]).unsqueeze(0)
    logits, probs = read_out_masks(class_logits, query_masks, object_class=0, image_size=16, mask_size=8)
    assert logits.shape == (1, 8, 8) and torch.allclose(probs, torch.tensor([[0.75, 0.5]]))
    assert torch.allclose(logits, torch.full((1, 8, 8), 0.75 * 2.0 + 0.5 * -4.0))  # logits, not sigmoids


@pytest.mark.parametrize("side", [(6, 6), (6, 4)])
def test_read_out_equals_upsampling_every_query_first(side):
    torch.manual_seed(0)
    class_logits, query_masks = torch.randn(3, 5, 4), torch.randn(3, 5, *side)
    logits, probs = read_out_masks(class_logits, query_masks, object_class=0, image_size=24, mask_size=16)
    up = F.interpolate(query_masks, size=(24, 24), mode="bilinear", align_corners=False)
    seg = torch.einsum("nq,nqhw->nhw", probs, up).unsqueeze(1)
    expected = F.interpolate(seg, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(logits, expected, atol=1e-5)


def test_dice_term_on_hand_example():
    # one frame: p = sigmoid(0) = 0.5 everywhere on 2 pixels, target [1, 0]
    logits, targets = torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]])
    dice = (2 * 0.5 + 1) / (1.0 + 1.0 + 1)  # (2 sum(pg) + 1) / (sum p + sum g + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(1 - dice)
    bce = math.log(2)
    assert mask_loss(logits, targets, dice_weight=0.5).item() == pytest.approx(bce + 0.5 * (1 - dice))
    assert mask_loss(logits, targets, bce_weight=0.0, dice_weight=1.0).item() == pytest.approx(1 - dice)
    # an empty target: the loss falls as the predicted foreground shrinks
    empty = torch.zeros(1, 1, 4)
    assert dice_loss(torch.full((1, 1, 4), -5.0), empty) < dice_loss(torch.full((1, 1, 4), 5.0), empty)


def test_loss_and_post_processing():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1)))
                 + math.log(1 / (1 + math.exp(-3)))) / 4
    assert mask_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        mask_loss(logits, targets[:1])
    assert torch.allclose(probabilities(logits), torch.sigmoid(logits))
    assert binary_masks(logits, 0.4).tolist() == [[True, True], [False, True]]


def test_read_out_made_first_under_inference_mode_still_trains():
    """The resize matrices are cached: the first call may come from inference (``refavs predict``,
    the app), and a later training step in the same process must still backpropagate through them."""
    from refavs.models.readout import resize_matrix

    resize_matrix.cache_clear()
    class_logits, query_logits = torch.randn(1, 3, 2), torch.randn(1, 3, 6, 6)
    with torch.inference_mode():
        read_out_masks(class_logits, query_logits, object_class=0, image_size=24, mask_size=16)
    query_logits.requires_grad_(True)
    masks, _ = read_out_masks(class_logits, query_logits, object_class=0, image_size=24, mask_size=16)
    masks.sum().backward()
    assert query_logits.grad is not None and query_logits.grad.abs().sum() > 0
