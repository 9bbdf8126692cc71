"""The EEMC model on tiny random configs (nothing downloads): shapes, loss, trainable groups,
one pixel-level pass, prompting, reference switches, input checks, pretrained loading."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from refavs.data.batch import ClipBatch
from refavs.models.eemc import EEMC, UNUSED_PARAMETERS
from refavs.models.eemc_config import GROUPS, PAPER_CHECKPOINT
from refavs.models.registry import get_model_config

FAST = ["fusion.num_frames=2"]
"""Two frames per clip keep the behaviour tests quick; the shape test uses the real 10."""


def make_batch(config, clips: int = 2, seed: int = 0, with_masks: bool = True) -> ClipBatch:
    g = torch.Generator().manual_seed(seed)
    f, s = config.fusion, config.segmenter
    text_mask = torch.ones(clips, f.text_tokens, dtype=torch.bool)
    text_mask[:, 9:] = False
    masks = (torch.rand(clips, f.num_frames, config.mask_size, config.mask_size, generator=g) > 0.5).float()
    return ClipBatch(
        pixel_values=torch.randn(clips, f.num_frames, 3, s.image_size, s.image_size, generator=g),
        audio=torch.randn(clips, f.num_frames, f.audio_dim, generator=g),
        text=torch.randn(clips, f.text_tokens, f.text_dim, generator=g),
        text_mask=text_mask, masks=masks if with_masks else None, uids=[f"c{i}" for i in range(clips)])


def build(name: str = "tiny", overrides=(), seed: int = 0) -> EEMC:
    torch.manual_seed(seed)
    return EEMC(get_model_config(name, [*FAST, *overrides]))


def logits(model: EEMC, batch: ClipBatch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(batch).mask_logits


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Clearly different: a random-init model turns most changes into small logit shifts, but
    far above the ~1e-7 of float reordering (unchanged paths below compare equal to 1e-6)."""
    return (a - b).abs().max().item() > 1e-5


def test_tiny_forward_backward_on_ten_frame_clips():
    model = build(overrides=["fusion.num_frames=10"]).train()
    batch = make_batch(model.config)
    out = model(batch)
    assert out.mask_logits.shape == (2, 10, 256, 256)
    assert out.query_probabilities.shape == (2, 10, model.config.segmenter.num_queries)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        no_targets = model(dataclasses.replace(batch, masks=None))
        assert no_targets.loss is None
        same = model(batch.pixel_values, batch.audio, batch.text, batch.text_mask)  # tensors instead of a batch
    assert torch.equal(same.mask_logits, no_targets.mask_logits)
    assert torch.allclose(no_targets.mask_logits, out.mask_logits, atol=1e-6)


def _grads_by_group(model: EEMC) -> dict[str, dict[str, torch.Tensor | None]]:
    model.train()
    model(make_batch(model.config)).loss.backward()
    return {g: {n: p.grad for n, p in ps.items()} for g, ps in model.parameter_groups().items()}


@pytest.mark.parametrize("overrides, trained", [
    ([], GROUPS),
    (["trainable.train_segmenter=false"], ("projections", "fusion", "adapters", "query_attention")),
    (["trainable.train_segmenter=false", "trainable.reference_freeze=true"],
     ("projections", "adapters", "query_attention")),
])
def test_gradients_reach_exactly_the_trainable_groups(overrides, trained):
    model = build(overrides=overrides)
    assert model.config.trainable.resolved() == trained
    grads = _grads_by_group(model)
    for group, params in grads.items():
        for name, grad in params.items():
            if group in trained and not name.startswith(UNUSED_PARAMETERS):
                assert grad is not None, f"{name} ({group}) is trainable but got no gradient"
            else:
                assert grad is None, f"{name} ({group}) is frozen but got a gradient"
        if group in trained:
            assert any(g is not None and g.abs().sum() > 0 for g in params.values()), f"{group}: all-zero gradients"


def test_every_parameter_is_in_exactly_one_group():
    model = build()
    groups = model.parameter_groups()
    names = [n for ps in groups.values() for n in ps]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert set(groups["adapters"]) == {f"adapters.{i}.{part}.{k}" for i in range(2) for part in ("down", "up")
                                       for k in ("weight", "bias")}
    counts = model.parameter_counts()
    assert counts["total"] == sum(counts[g] for g in GROUPS)
    assert counts["adapters"] == 2 * (32 * 8 + 8 + 8 * 32 + 32)  # 2 layers, 32 -> 8 -> 32


@pytest.mark.parametrize("source, calls", [("shared_pass", 1), ("separate_pass", 2), ("separate_pixel_pass", 2)])
def test_pixel_level_module_runs_once_per_forward(source, calls):
    model = build(overrides=[f"compat.visual_tokens_from={source}"])
    seen = []
    handle = model.pixel_level_module.register_forward_hook(lambda *args: seen.append(1))
    out = logits(model, make_batch(model.config))
    handle.remove()
    assert len(seen) == calls
    assert torch.allclose(out, logits(build(), make_batch(model.config)), atol=1e-6)  # same result, more work


def test_expressions_of_one_clip_share_one_pixel_level_pass():
    model = build().train()
    batch = make_batch(model.config, clips=3)
    batch.pixel_values[1] = batch.pixel_values[0]  # expressions 0 and 1 are of one clip
    shared = dataclasses.replace(batch, clips=["a", "a", "b"])
    frames_seen = []
    handle = model.pixel_level_module.register_forward_hook(lambda mod, args, out: frames_seen.append(len(args[0])))
    results = []
    for b in (batch, shared):
        model.zero_grad(set_to_none=True)
        out = model(b)
        out.loss.backward()
        results.append((out.mask_logits.detach(), out.loss.detach(),
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    handle.remove()
    t = model.config.fusion.num_frames
    assert frames_seen == [3 * t, 2 * t]  # one pass over 3 clips' frames, then over 2
    (l1, loss1, g1), (l2, loss2, g2) = results
    assert torch.allclose(l1, l2, atol=1e-5) and torch.allclose(loss1, loss2, atol=1e-6)
    assert g1.keys() == g2.keys()
    assert all(torch.allclose(g1[n], g2[n], rtol=1e-3, atol=1e-6) for n in g1)
    with pytest.raises(ValueError, match="clip id 'a' but different frames"):
        model(dataclasses.replace(batch, clips=["a", "b", "a"]))
    with pytest.raises(ValueError, match="clips has 2 ids for a batch of 3"):
        model(dataclasses.replace(batch, clips=["a", "b"]))


def test_prompt_inputs_change_the_output():
    model = build()
    batch = make_batch(model.config)
    base = logits(model, batch)
    assert differs(base, logits(model, dataclasses.replace(batch, audio=batch.audio + 1)))
    assert differs(base, logits(model, dataclasses.replace(batch, text=batch.text.flip(1))))
    with torch.no_grad():  # the query prompt is what carries them: gates at -inf leave the bare decoder
        model.query_prompt.attn_gate.fill_(-1e4)
        model.query_prompt.pool_gate.fill_(-1e4)
    gated = logits(model, batch)
    assert torch.allclose(gated, logits(model, dataclasses.replace(batch, audio=batch.audio + 1)), atol=1e-6)


def _pad_changed(batch: ClipBatch) -> ClipBatch:
    text = batch.text.clone()
    text[~batch.text_mask] += 5.0
    return dataclasses.replace(batch, text=text)


def test_text_padding_is_masked_unless_the_reference_switch():
    model = build()
    batch = make_batch(model.config)
    assert torch.allclose(logits(model, batch), logits(model, _pad_changed(batch)), atol=1e-6)
    reference = build(overrides=["compat.text_padding_mask=false"])
    assert differs(logits(reference, batch), logits(reference, _pad_changed(batch)))


def test_clips_are_independent_unless_integration_attends_across_clips():
    batch = make_batch(get_model_config("tiny", FAST))
    audio = batch.audio.clone()
    audio[1] += 10.0  # change clip 1 only
    other = dataclasses.replace(batch, audio=audio)
    model = build()
    assert torch.equal(logits(model, batch)[0], logits(model, other)[0])
    assert differs(logits(model, batch)[1], logits(model, other)[1])
    across = build(overrides=["compat.integration_across_clips=true"])
    assert differs(logits(across, batch)[0], logits(across, other)[0])


@pytest.mark.parametrize("switch", ["compat.visual_layout=reference_view", "compat.visual_cached_memory=tokens",
                                    "compat.integration_across_clips=true", "compat.text_padding_mask=false",
                                    "fusion.cached_memory=false", "fusion.modality_tags=false"])
def test_each_switch_changes_the_output_with_the_same_weights(switch):
    model = build()
    switched = build(overrides=[switch])
    switched.load_state_dict(model.state_dict())
    batch = make_batch(model.config)
    assert differs(logits(model, batch), logits(switched, batch))


def test_residual_zero_init_adapters_leave_the_pixel_decoder_untouched():
    from transformers import Mask2FormerForUniversalSegmentation

    model = build().eval()
    plain = Mask2FormerForUniversalSegmentation(model.segmenter.config).eval()
    plain.load_state_dict(model.segmenter.state_dict())
    frames = make_batch(model.config).pixel_values.flatten(0, 1)
    with torch.no_grad():
        ours = model.pixel_level_module(frames).decoder_last_hidden_state
        assert torch.allclose(ours, plain.model.pixel_level_module(frames).decoder_last_hidden_state, atol=1e-5)
        replace = build(overrides=["adapter.mode=replace", "adapter.zero_init=false"]).eval()
        replace.segmenter.load_state_dict(model.segmenter.state_dict())
        replaced = replace.pixel_level_module(frames).decoder_last_hidden_state
        assert not torch.allclose(ours, replaced, atol=1e-3)


@pytest.mark.parametrize("change, message", [
    (lambda b: dataclasses.replace(b, pixel_values=b.pixel_values[:, :1]), "clips must have 2 frames"),
    (lambda b: dataclasses.replace(b, text=b.text[..., :100]), "fusion.text_dim"),
    (lambda b: dataclasses.replace(b, audio=b.audio[..., :64]), "fusion.audio_dim"),
    (lambda b: dataclasses.replace(b, pixel_values=b.pixel_values[..., :64, :64]), "[B, T, 3, 128, 128]"),
    (lambda b: dataclasses.replace(b, masks=b.masks[..., :128, :128]), "masks must be [B, T, 256, 256]"),
])
def test_wrong_inputs_are_refused_clearly(change, message):
    model = build()
    with pytest.raises(ValueError) as err:
        model(change(make_batch(model.config)))
    assert message in str(err.value)


def test_segmenter_checkpoint_is_loaded_by_name(monkeypatch, tmp_path):
    from transformers import Mask2FormerForUniversalSegmentation

    called = []

    def fake_from_pretrained(name, *args, **kwargs):
        called.append(name)
        raise LookupError("no network in tests")

    monkeypatch.setattr(Mask2FormerForUniversalSegmentation, "from_pretrained", fake_from_pretrained)
    with pytest.raises(LookupError):
        EEMC(get_model_config("paper"))
    assert called == [PAPER_CHECKPOINT]


def test_segmenter_checkpoint_from_a_local_copy_is_used_and_checked(tmp_path):
    source = build()
    source.segmenter.save_pretrained(tmp_path / "m2f")
    model = build(overrides=[f"segmenter.checkpoint={tmp_path / 'm2f'}"], seed=1)
    key = "model.transformer_module.queries_features.weight"
    assert torch.equal(model.segmenter.state_dict()[key], source.segmenter.state_dict()[key])
    with pytest.raises(ValueError, match="segmenter.num_queries: checkpoint has 8, config has 4"):
        build(overrides=[f"segmenter.checkpoint={tmp_path / 'm2f'}", "segmenter.num_queries=4"])


def test_a_segmenter_checkpoint_that_cannot_be_loaded_says_what_to_do(tmp_path, monkeypatch):
    from transformers import Mask2FormerForUniversalSegmentation

    from refavs.models.segmenter import SegmenterLoadError

    with pytest.raises(SegmenterLoadError, match="no such folder .*segmenter.checkpoint=none"):
        build(overrides=[f"segmenter.checkpoint={tmp_path / 'absent'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegmenterLoadError, match=r"a local checkpoint must be a folder a Mask2Former was saved to"):
        build(overrides=[f"segmenter.checkpoint={tmp_path / 'empty'}"])

    def offline(name, *args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore lines")

    monkeypatch.setattr(Mask2FormerForUniversalSegmentation, "from_pretrained", offline)
    with pytest.raises(SegmenterLoadError) as err:
        EEMC(get_model_config("paper"))
    message = str(err.value)
    assert f"`hf download {PAPER_CHECKPOINT}`" in message and "couldn't connect" in message
    assert "more lines" not in message and "segmenter.checkpoint=none" in message


def test_loss_follows_the_loss_config():
    from refavs.models.readout import dice_loss

    plain, with_dice = build(overrides=["loss.dice_weight=0"]), build(overrides=["loss.dice_weight=1.0"])
    batch = make_batch(plain.config)
    with torch.no_grad():
        a, b = plain.eval()(batch), with_dice.eval()(batch)
    assert torch.equal(a.mask_logits, b.mask_logits)  # the loss does not change what the model computes
    assert torch.allclose(b.loss, a.loss + dice_loss(a.mask_logits, batch.masks))
    assert with_dice.config.loss.dice_weight == 1.0 and plain.config.loss.dice_weight == 0.0


def test_train_step_benchmark_reports_both_ways_and_their_phases(capsys):
    """benchmarks/train_step.py on 2-frame clips: one JSON line whose figures agree with each other."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--seconds", "0", "--warmup", "1", "fusion.num_frames=2"]) == 0  # --threads would stay set
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 2 and result["steps"] >= 3 and result["overrides"] == ["fusion.num_frames=2"]
    assert result["speedup"] == pytest.approx(result["reference_step_s"] / result["step_s"], abs=2e-3)
    for way in ("ours", "reference"):
        phases = [result[f"{way}_{phase}_s"] for phase in ("forward", "backward", "optimizer")]
        assert all(p > 0 for p in phases)
        assert sum(phases) == pytest.approx(result["step_s" if way == "ours" else "reference_step_s"], rel=0.5)
