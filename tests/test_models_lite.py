"""The ``lite`` model: shapes, the presence gate, cached maps against raw frames, losses, saving."""

from __future__ import annotations

import math

import pytest
import torch

from refavs.data.labels import SOUND_LEVELS, SOUND_RANKS, SOUNDING, TARGET_SECONDS
from refavs.models.build import build_model, load_pretrained
from refavs.models.checkpoint import CheckpointError
from refavs.models.lite import LiteEEMC, cached_memory, gated_product_logits, sample_training_frames
from refavs.models.lite_losses import rank_loss
from refavs.models.registry import get_model_config, model_config_from_dict

B, T = 2, 10


def small_config(*overrides: str):
    return get_model_config("lite", ["head.dim=32", "head.fine_dim=16", "backbone.image_size=64", *overrides])


def inputs(config, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    text_mask = torch.ones(B, config.text_tokens, dtype=torch.bool)
    text_mask[:, 7:] = False
    return dict(
        visual={name: torch.randn(B, T, *shape, generator=g) for name, shape in config.visual_maps.items()},
        audio=torch.randn(B, T, config.audio_dim, generator=g),
        text=torch.randn(B, config.text_tokens, config.text_dim, generator=g),
        text_mask=text_mask)


@pytest.fixture(scope="module")
def model() -> LiteEEMC:
    torch.manual_seed(0)
    return build_model(small_config(), load_pretrained=False).eval()


def test_output_shapes_and_trainable_parameters(model):
    out = model(**inputs(model.config))
    assert out.mask_logits.shape == (B, T, 256, 256)
    assert out.presence_logits.shape == (B, T)
    assert out.sounding_logits.shape == (B, T, 4, 4)
    assert out.loss is None
    groups = model.parameter_groups()
    assert not any(p.requires_grad for p in groups["backbone"].values())
    assert all(p.requires_grad for p in groups["head"].values())
    assert model.parameter_counts()["trainable"] == sum(p.numel() for p in groups["head"].values())


def test_gated_product_is_the_product_of_probabilities():
    m = torch.tensor([-30.0, -2.0, 0.0, 3.0, 40.0]).view(1, 1, 1, 5)
    p = torch.tensor([[1.5]])
    got = gated_product_logits(m, p).sigmoid()
    assert torch.allclose(got, m.sigmoid() * p.sigmoid(), atol=1e-6)
    assert torch.isfinite(gated_product_logits(m, torch.tensor([[60.0]]))).all()


def test_cached_memory_matches_its_definition():
    x = torch.randn(2, 5, 3)
    want = torch.stack([2 * x[:, t] - x[:, : t + 1].mean(1) for t in range(5)], 1)
    assert torch.allclose(cached_memory(x, 1.0), want, atol=1e-6)


def test_expression_and_audio_change_the_masks(model):
    base = inputs(model.config)
    out = model(**base).mask_logits
    other_text = model(**{**base, "text": torch.randn_like(base["text"])}).mask_logits
    other_audio = model(**{**base, "audio": torch.randn_like(base["audio"])}).mask_logits
    assert (out - other_text).abs().mean() > 1e-3
    assert (out - other_audio).abs().mean() > 1e-3
    # padding tokens are ignored: changing them changes nothing
    padded = base["text"].clone()
    padded[:, 7:] = 5.0
    assert torch.allclose(model(**{**base, "text": padded}).mask_logits, out, atol=1e-5)


def test_frames_give_the_cached_maps_result(model):
    size = model.config.backbone.image_size
    pixels = torch.randn(B, T, 3, size, size)
    maps = model.backbone_maps(pixels.flatten(0, 1))
    visual = {k: v.reshape(B, T, *v.shape[1:]) for k, v in maps.items()}
    rest = {k: v for k, v in inputs(model.config).items() if k != "visual"}
    a = model(pixels, **rest).mask_logits
    b = model(None, visual=visual, **rest).mask_logits
    assert torch.allclose(a, b, atol=1e-5)


def test_training_losses_use_a_subset_of_frames_and_train_the_head():
    torch.manual_seed(0)
    model = build_model(small_config("loss.frames_per_clip=3", "head.rank_maps=true"), load_pretrained=False).train()
    x = inputs(model.config)
    masks = torch.zeros(B, T, 256, 256)
    masks[:, :, 40:120, 30:90] = 1
    masks[1, 4:] = 0  # the target leaves: presence must learn 0 there
    sounding = torch.zeros(B, T, 48, 48)
    sounding[:, :5, 10:20, 10:20] = 1
    seconds = torch.zeros(B, T)
    seconds[:, :5] = 1
    ranks = torch.full((B, T, 2, 48, 48), -1.0)
    ranks[:, :5, :, 10:20, 10:20] = 1.0
    out = model(masks=masks, targets={SOUNDING: sounding, TARGET_SECONDS: seconds, SOUND_RANKS: ranks}, **x)
    assert out.mask_logits.shape == (B, 3, 256, 256)
    assert out.rank_logits.shape == (B, T, 2, 4, 4)
    assert set(out.losses) == {"mask", "presence", "sounding", "ranks", "target_seconds"}
    assert math.isclose(float(out.loss.detach()), sum(out.losses.values()), rel_tol=1e-5)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("backbone."))
    # without Synth labels the auxiliary terms are simply absent
    out = model(masks=masks, **x)
    assert set(out.losses) == {"mask", "presence"}


def test_a_training_step_draws_only_its_frames_from_the_global_rng():
    """The frames of a step come from one ``torch.rand(B, T)`` of the global RNG (dropout off), so a
    seeded run draws the same frames; evaluation and calls without masks draw nothing."""
    model = build_model(small_config("loss.frames_per_clip=4", "head.dropout=0"), load_pretrained=False).train()
    x = inputs(model.config)
    masks = torch.zeros(B, T, 256, 256)
    masks[:, :, 40:120, 30:90] = 1
    torch.manual_seed(3)
    untouched = torch.rand(8)
    torch.manual_seed(3)
    frames = sample_training_frames(B, T, 4, "cpu")
    after_sampling = torch.rand(8)
    assert frames.shape == (B, 4) and bool((frames.diff(dim=1) > 0).all()) and int(frames.max()) < T
    torch.manual_seed(3)
    seconds = (torch.arange(T) % 2).float().expand(B, T)
    out = model(masks=masks, targets={TARGET_SECONDS: seconds}, **x)
    assert torch.equal(torch.rand(8), after_sampling)
    assert out.mask_logits.shape == (B, 4, 256, 256) and "target_seconds" in out.losses
    torch.manual_seed(3)
    assert model(**x).loss is None  # no masks: no loss, every frame
    assert model.eval()(masks=masks, **x).mask_logits.shape == (B, T, 256, 256)
    assert torch.equal(torch.rand(8), untouched)


def test_a_batch_passes_its_targets():
    from refavs.data.batch import ClipBatch

    torch.manual_seed(0)
    model = build_model(small_config("loss.frames_per_clip=0", "head.dropout=0"), load_pretrained=False).train()
    x = inputs(model.config)
    masks = torch.zeros(B, T, 256, 256)
    masks[:, :, 40:120, 30:90] = 1
    targets = {SOUNDING: torch.ones(B, T, 48, 48), TARGET_SECONDS: torch.ones(B, T)}
    batch = ClipBatch(pixel_values=None, audio=x["audio"], text=x["text"], text_mask=x["text_mask"], masks=masks,
                      uids=["a", "b"], visual=x["visual"], targets=targets)
    from_batch, from_arguments = model(batch), model(masks=masks, targets=targets, **x)
    assert from_batch.losses == from_arguments.losses
    assert set(from_batch.losses) == {"mask", "presence", "sounding", "target_seconds"}


def test_loss_falls_when_fitting_one_batch():
    torch.manual_seed(0)
    model = build_model(small_config("loss.frames_per_clip=0", "head.dropout=0"), load_pretrained=False).train()
    x = inputs(model.config)
    masks = torch.zeros(B, T, 256, 256)
    masks[0, :, 0:128, 0:128] = 1
    masks[1, :, 128:, 128:] = 1
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(masks=masks, **x).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.6 * first


def test_save_and_load_roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, LiteEEMC)
    x = inputs(model.config)
    assert torch.equal(loaded.eval()(**x).mask_logits, model(**x).mask_logits)
    # a config saved to JSON and read back is the same config
    assert model_config_from_dict(model.config.to_dict()) == model.config
    # a checkpoint of another architecture is refused, naming it
    with pytest.raises(CheckpointError, match="architecture"):
        load_pretrained(tmp_path / "ckpt", config=get_model_config("tiny"))
    with pytest.raises(CheckpointError, match="head.dim"):
        load_pretrained(tmp_path / "ckpt", config=small_config("head.dim=64"))


def test_bad_inputs_are_named(model):
    x = inputs(model.config)
    with pytest.raises(ValueError, match="map s8 must be"):
        model(**{**x, "visual": {"s16": x["visual"]["s16"]}})
    with pytest.raises(ValueError, match="audio must be"):
        model(**{**x, "audio": x["audio"][:, :, :5]})
    with pytest.raises(ValueError, match="pixel_values or cached backbone maps"):
        model(**{k: v for k, v in x.items() if k != "visual"})
    with pytest.raises(ValueError, match="frames_per_clip"):
        small_config("loss.frames_per_clip=11")


def test_expressions_of_one_clip_share_its_pass(model):
    """Given clip ids, the clip-only part runs once per clip: the same masks and losses."""
    x = inputs(model.config)
    same_clip = {**x, "visual": {k: v[:1].expand_as(v).clone() for k, v in x["visual"].items()},
                 "audio": x["audio"][:1].expand_as(x["audio"]).clone()}
    alone = model(**same_clip).mask_logits
    shared = model(**same_clip, clips=["a", "a"]).mask_logits
    assert torch.allclose(alone, shared, atol=1e-5)
    with pytest.raises(ValueError, match="clips has 1 ids"):
        model(**same_clip, clips=["a"])


def test_rank_loss_counts_only_labelled_cells():
    logits = torch.zeros(1, 1, 2, 2, 2)
    ranks = torch.full((1, 1, 2, 4, 4), -1.0)
    assert float(rank_loss(logits, ranks)) == 0.0          # nothing sounds: no term
    ranks[..., :2, :2] = 1.0                                 # one labelled cell per channel, rank 1
    logits[..., 1, 1] = -50.0                                # unlabelled cells may say anything
    assert math.isclose(float(rank_loss(logits, ranks)), math.log(2), rel_tol=1e-5)
    logits[..., 0, 0] = 20.0
    assert float(rank_loss(logits, ranks)) < 1e-6


def test_rank_maps_off_keeps_the_sounding_feed_of_one_map():
    # off by default, so checkpoints saved before the option existed still load
    model = build_model(small_config(), load_pretrained=False).eval()
    assert model.rank_kernel is None and model.sound_feed.in_channels == T + 1
    out = model(**inputs(model.config))
    assert out.rank_logits is None and out.sounding_logits is not None


def test_null_rows_can_teach_only_the_presence_gate():
    from refavs.models.readout import mask_loss

    torch.manual_seed(0)
    x = inputs(small_config())
    masks = torch.zeros(B, T, 256, 256)
    masks[0, :, 40:120, 30:90] = 1          # row 1 is a null expression: empty in every frame
    both = build_model(small_config("loss.frames_per_clip=0", "head.dropout=0"), load_pretrained=False).train()
    gate_only = build_model(small_config("loss.frames_per_clip=0", "head.dropout=0", "loss.null_mask_loss=false"),
                            load_pretrained=False).train()
    gate_only.load_state_dict(both.state_dict())
    out_both, out_gate = both(masks=masks, **x), gate_only(masks=masks, **x)
    w = both.config.loss
    assert torch.allclose(out_both.mask_logits, out_gate.mask_logits)
    want = float(mask_loss(out_gate.mask_logits[:1], masks[:1], w.bce_weight, w.dice_weight).detach())
    assert math.isclose(out_gate.losses["mask"], want, rel_tol=1e-5)
    assert not math.isclose(out_both.losses["mask"], want, rel_tol=1e-3)
    assert math.isclose(out_both.losses["presence"], out_gate.losses["presence"], rel_tol=1e-6)


def test_refinement_starts_as_bilinear_upsampling():
    from refavs.models.refine import GuidedRefinement

    torch.manual_seed(0)
    refine = GuidedRefinement(embed_dim=16)
    logits = torch.randn(3, 8, 8)
    got = refine(logits, torch.randn(3, 16, 8, 8), torch.randn(3, 3, 16, 16))
    want = torch.nn.functional.interpolate(logits[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(got, want)


def test_refinement_learns_edges_from_the_guide():
    # squares whose edges fall inside stride-8 cells: upsampled coarse logits blur them, the frame
    # (the guide) shows them; the refinement must learn to use it
    from refavs.models.refine import GuidedRefinement

    g = torch.Generator().manual_seed(0)
    n, size = 32, 16
    masks = torch.zeros(n, size, size)
    for i in range(n):
        y, x = torch.randint(1, 8, (2,), generator=g).tolist()
        h, w = torch.randint(4, 8, (2,), generator=g).tolist()
        masks[i, y:y + h, x:x + w] = 1
    guide = (masks[:, None] * torch.tensor([1.0, -1.0, 0.5])[:, None, None]).expand(n, 3, size, size).clone()
    coarse = torch.logit(torch.nn.functional.avg_pool2d(masks[:, None], 2)[:, 0].clamp(0.05, 0.95))
    emb = torch.zeros(n, 16, size // 2, size // 2)

    def iou(logits):
        pred = logits > 0
        return float(((pred & (masks > 0)).sum((1, 2)) / (pred | (masks > 0)).sum((1, 2))).mean())

    torch.manual_seed(0)
    refine = GuidedRefinement(embed_dim=16)
    before = iou(refine(coarse, emb, guide).detach())
    opt = torch.optim.Adam(refine.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(refine(coarse, emb, guide), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = iou(refine(coarse, emb, guide).detach())
    assert after > before + 0.1 and after > 0.9, (before, after)


def test_refinement_needs_its_guide_map(model):
    refined = build_model(small_config(), load_pretrained=False).eval()
    assert refined.config.head.refine and not build_model(small_config("head.refine=false"),
                                                            load_pretrained=False).config.head.refine
    x = inputs(refined.config)
    del x["visual"]["rgb4"]
    with pytest.raises(ValueError, match="rgb4"):
        refined(**x)



def test_the_kernel_reads_the_frame_only_when_asked():
    """``head.kernel_reads_frame``: the kernel (and so the presence score) depends on the frame's
    fused positions; without it the kernel is a function of the sentence and the audio alone."""
    x = inputs(small_config())
    other = {**x, "visual": {k: (v + torch.randn_like(v) if k == "s16" else v) for k, v in x["visual"].items()}}
    for reads, changes in ((False, False), (True, True)):
        torch.manual_seed(0)
        model = build_model(small_config(f"head.kernel_reads_frame={str(reads).lower()}"), load_pretrained=False).eval()
        assert (model.kernel_frame is not None) == reads
        states = []
        hook = model.kernel_out.register_forward_hook(lambda mod, args, out: states.append(args[0]))
        model(**x), model(**other)
        hook.remove()
        assert (states[0] - states[1]).abs().max() > 1e-4 if changes else torch.equal(states[0], states[1])


def test_the_presence_hears_only_when_asked():
    """``head.presence_hears``: the presence score also reads the highest sounding-object logit of
    the frame's second and of the clip (checked against the model's own sounding maps); without
    it, its input is the kernel state and the two mask-logit summaries only."""
    config = small_config()
    x = inputs(config)
    for hears in (False, True):
        torch.manual_seed(0)
        model = build_model(small_config(f"head.presence_hears={str(hears).lower()}"), load_pretrained=False).eval()
        seen = []
        hook = model.presence.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
        with torch.no_grad():
            out = model(**x)
        hook.remove()
        assert seen[0].shape[1] == config.head.dim + 2 + (2 if hears else 0)
        if hears:
            loudest = out.sounding_logits.flatten(2).amax(2)                  # [B, T]
            heard = seen[0][:, -2:].reshape(B, T, 2)
            assert torch.allclose(heard[..., 0], loudest, atol=1e-5)
            assert torch.allclose(heard[..., 1], loudest.amax(1, keepdim=True).expand(B, T), atol=1e-5)
    with pytest.raises(ValueError, match="presence_hears needs"):
        small_config("head.presence_hears=true", "head.sounding_map=false")


def test_sound_comparisons_single_out_the_loudest_highest_and_first():
    from refavs.models.lite import COMPARE_FEATURES, sound_comparisons

    big = 20.0
    # three positions: 0 sounds loud and low from second 0; 1 soft and high from second 4; 2 never
    sounding = torch.full((1, T, 3), -big)
    sounding[0, :, 0] = big
    sounding[0, 4:, 1] = big
    levels = torch.zeros(1, T, 3, 2)
    levels[0, :, 0] = torch.tensor([2.0, -2.0])
    levels[0, :, 1] = torch.tensor([-2.0, 2.0])
    levels[0, :, 2] = torch.tensor([5.0, 5.0])  # louder and higher, but it never sounds
    f = sound_comparisons(sounding, levels)[0]
    assert f.shape == (3, COMPARE_FEATURES)
    ever, quantities, below_largest, above_smallest = f[:, 0], f[:, 1:4], f[:, 4:7], f[:, 7:10]
    assert torch.allclose(ever, torch.tensor([1.0, 1.0, 0.0]), atol=1e-6)
    assert quantities[0, 2] > quantities[1, 2]                        # position 0 sounds first
    # each quantity's largest and smallest among the sounding positions get exactly 0
    assert torch.allclose(below_largest[0], torch.tensor([0.0, below_largest[0, 1], 0.0])) and below_largest[0, 1] < 0
    assert torch.allclose(below_largest[1, 1], torch.tensor(0.0)) and below_largest[1, 0] < 0
    assert torch.allclose(above_smallest[1, 0], torch.tensor(0.0)) and above_smallest[0, 1] == 0
    assert (below_largest[2] < -1).all() and (above_smallest[2] > 1).all()   # the silent position is out


def test_sound_compare_trains_its_level_maps_and_is_off_by_default(model):
    assert model.level_kernel is None and model.compare_feed is None
    torch.manual_seed(0)
    m = build_model(small_config("head.sound_compare=true", "loss.frames_per_clip=0"), load_pretrained=False).train()
    x = inputs(m.config)
    masks = torch.zeros(B, T, 256, 256)
    masks[:, :, 40:120, 30:90] = 1
    levels = torch.full((B, T, 2, 48, 48), -1.0)
    levels[:, :, :, :24, :24] = 0.8
    out = m(masks=masks, targets={SOUNDING: torch.ones(B, T, 48, 48), SOUND_LEVELS: levels}, **x)
    assert out.level_logits.shape == (B, T, 2, m.config.backbone.grids["s16"], m.config.backbone.grids["s16"])
    assert "levels" in out.losses and out.losses["levels"] > 0
    out.loss.backward()
    assert m.level_kernel[0].weight.grad.abs().sum() > 0 and m.compare_feed.weight.grad.abs().sum() > 0
    # the comparisons reach the masks: other level-kernel weights, other masks
    m.eval()
    with torch.no_grad():
        before = m(**x).mask_logits
        m.compare_feed.weight.add_(1.0)
        assert not torch.allclose(before, m(**x).mask_logits)
    with pytest.raises(ValueError, match="sound_compare needs head.sounding_map"):
        small_config("head.sound_compare=true", "head.sounding_map=false")
