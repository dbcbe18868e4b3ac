"""Directional derivatives of a logit along a GAP-space direction (probe.sensitivity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import DataError, RcvlabError, UnknownNameError, load_model
from rcvlab.data.base import ArrayImageSet
from rcvlab.features.hooks import LayoutError
from rcvlab.models.layers import LayerSpec
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.sensitivity import (
    blank_pass,
    directional_derivative,
    gap_gradient,
    gradient_pass,
    raw_direction,
    resolve_target_class,
)


class LinearAfter(nn.Module):
    """conv -> [layer "conv"] -> (optional 1x1 conv) -> GAP -> linear: linear after the layer."""

    def __init__(self, extra_conv: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 6, 1) if extra_conv else nn.Identity()
        self.fc = nn.Linear(6 if extra_conv else 4, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.mid(self.conv(x)).mean(dim=(2, 3)))


class Smooth(nn.Module):
    """A nonlinear net (tanh, softplus, BatchNorm in eval mode) after the layer ``block``."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.stem = nn.Conv2d(3, 5, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(5, 6, 3, padding=1), nn.Tanh())
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Conv2d(6, 7, 3, stride=2, padding=1)
        self.fc = nn.Linear(7, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            self.bn.running_mean.copy_(torch.randn(6, generator=g))
            self.bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)

    def forward(self, x):
        h = self.bn(self.block(torch.tanh(self.stem(x))))
        h = nn.functional.softplus(self.head(h))
        return torch.tanh(self.fc(h.mean(dim=(2, 3))))


class Tokens(nn.Module):
    """(n, L, C) tokens at layer ``embed``; mean over tokens -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        tok = self.embed(x.flatten(2).transpose(1, 2))  # (n, H*W, 4)
        return self.fc(torch.tanh(tok).mean(dim=1))


def no_hooks(net: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def x64(n=3, size=8, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("extra_conv", [False, True])
def test_linear_downstream_equals_analytic_dot_product(extra_conv):
    net = LinearAfter(extra_conv).double().eval()
    v = np.random.default_rng(0).normal(size=4)
    v /= np.linalg.norm(v)
    W = net.fc.weight.detach().numpy()
    if extra_conv:  # logit = W (C GAP(A) + c) + b
        W = W @ net.mid.weight.detach().numpy()[:, :, 0, 0]
    for k in range(5):
        s = directional_derivative(net, x64(), "conv", v, k)
        assert s.shape == (3,)
        np.testing.assert_allclose(s, W[k] @ v, rtol=1e-10, atol=1e-12)
    # several directions at once: (n, m)
    V = np.random.default_rng(1).normal(size=(3, 4))
    S = directional_derivative(net, x64(), "conv", V, 2)
    np.testing.assert_allclose(S, np.tile(W[2] @ V.T, (3, 1)), rtol=1e-10, atol=1e-12)
    assert no_hooks(net)


def test_token_layer_is_shifted_along_channels():
    net = Tokens().double().eval()
    v = np.array([0.5, -0.5, 0.5, 0.5])
    x = x64(2, 4)
    s = directional_derivative(net, x, "embed", v, 1, layout="NLC")
    # by hand: logit = fc(mean tanh(tok + t v)) -> d/dt = W[1] @ (mean(1 - tanh²(tok)) * v)
    with torch.no_grad():
        tok = net.embed(x.flatten(2).transpose(1, 2))
        dt = (1 - torch.tanh(tok) ** 2).mean(dim=1).numpy()
    expect = (dt * v) @ net.fc.weight.detach().numpy()[1]
    np.testing.assert_allclose(s, expect, rtol=1e-10)
    # the same layout declared on the loaded model
    model = load_model(net, input_size=4, layers=["embed"], layout="NLC")
    np.testing.assert_allclose(directional_derivative(model, x, "embed", v, 1), expect, rtol=1e-10)
    # a plain module's layers are read as NCHW maps: tokens are an error naming layout=,
    # never a shift along the wrong axis
    with pytest.raises(LayoutError, match=r"read as NCHW but outputs shape \(2, 16, 4\).*layout="):
        directional_derivative(net, x, "embed", v, 1)
    assert no_hooks(net)


class ClassToken(nn.Module):
    """Tokens (n, 1 + L, C) at layer ``tok`` (a class token first); the logits read the
    class token and the mean of the patch tokens."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.embed = nn.Linear(3, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, 4, generator=g))
        self.tok = nn.Identity()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        patches = self.embed(x.flatten(2).transpose(1, 2))
        t = self.tok(torch.cat([self.cls.expand(x.shape[0], -1, -1), patches], dim=1))
        return self.fc(torch.tanh(t[:, 0]) + torch.tanh(t[:, 1:]).mean(dim=1))


def test_class_token_is_not_shifted():
    net = ClassToken().double().eval()
    v = np.array([0.5, -0.5, 0.5, 0.5])
    x = x64(2, 4, seed=5)
    s = directional_derivative(net, x, "tok", v, 2, layout="NLC+1")
    # by hand: only the patch tokens (the ones GAP averages) move, the class token does not
    with torch.no_grad():
        patches = net.embed(x.flatten(2).transpose(1, 2))
        dt = (1 - torch.tanh(patches) ** 2).mean(dim=1).numpy()
    W = net.fc.weight.detach().numpy()
    np.testing.assert_allclose(s, (dt * v) @ W[2], rtol=1e-10)
    # shifting every token would add the class token's term, which is not 0 here
    cls_term = (1 - np.tanh(net.cls.detach().numpy()[0, 0]) ** 2) * v @ W[2]
    assert abs(cls_term) > 1e-3
    # the features (pooled in float32 as extract_features does) are the patch tokens' mean
    p = gradient_pass(net, x, "tok", 2, layout="NLC+1")
    np.testing.assert_allclose(p.features, patches.mean(dim=1).numpy(), rtol=1e-6)  # float32


class ChannelsLast(nn.Module):
    """An (n, H, W, C) map at layer ``perm``; tanh, mean over positions, linear."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(6)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.perm = Permute()
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(torch.tanh(self.perm(self.conv(x))).mean(dim=(1, 2)))


class Permute(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


def test_channels_last_layer_is_shifted_along_its_last_axis():
    net = ChannelsLast().double().eval()
    v = np.array([0.2, -0.4, 0.1, 0.8, -0.4])
    x = x64(3, 6, seed=7)
    s = directional_derivative(net, x, "perm", v, 0, layout="NHWC")
    with torch.no_grad():
        a = net.conv(x).permute(0, 2, 3, 1)  # (n, H, W, C)
        dt = (1 - torch.tanh(a) ** 2).mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(s, (dt * v) @ net.fc.weight.detach().numpy()[0], rtol=1e-10)


def logit_with_shift(net, x, module, v, t, k):
    """Independent forward: the map of ``module`` shifted by t v at every position."""
    vt = torch.as_tensor(v, dtype=x.dtype).view(1, -1, 1, 1)
    h = module.register_forward_hook(lambda _m, _i, out: out + t * vt)
    try:
        with torch.no_grad():
            return net(x)[:, k].numpy()
    finally:
        h.remove()


def test_nonlinear_net_matches_central_finite_difference():
    net = Smooth().double().eval()
    x = x64(4, 9, seed=3)
    v = np.random.default_rng(2).normal(size=6)
    v /= np.linalg.norm(v)
    for k in (0, 3):
        s = directional_derivative(net, x, "block", v, k, batch_size=3)
        h = 1e-5
        fd = (
            logit_with_shift(net, x, net.block, v, h, k)
            - logit_with_shift(net, x, net.block, v, -h, k)
        ) / (2 * h)
        np.testing.assert_allclose(s, fd, rtol=1e-7, atol=1e-10)
        assert np.ptp(s) > 0  # a real nonlinear case: sensitivities differ per image
    # batching does not mix images (BatchNorm in eval mode)
    one = np.concatenate(
        [directional_derivative(net, x[i : i + 1], "block", v, 0) for i in range(4)]
    )
    np.testing.assert_allclose(directional_derivative(net, x, "block", v, 0), one, rtol=1e-12)


def test_residual_sum_is_shifted_before_the_relu():
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=6).double().eval()
    spec = LayerSpec("add1", "layer1.0", "residual_sum")
    x = x64(2, 32, seed=4)
    v = np.random.default_rng(3).normal(size=64)
    v /= np.linalg.norm(v)
    s = directional_derivative(net, x, spec, v, 4)
    # independent: S = sum_p <dlogit/d(block output) * 1[sum > 0], v>, sum = bn2 + identity
    block = net.layer1[0]
    store = {}

    def keep_output(_m, _i, y):
        y.retain_grad()
        store["y"] = y

    hs = [
        block.register_forward_pre_hook(lambda _m, a: store.__setitem__("id", a[0].clone())),
        block.bn2.register_forward_hook(lambda _m, _i, y: store.__setitem__("bn", y.clone())),
        block.register_forward_hook(keep_output),
    ]
    try:
        net(x)[:, 4].sum().backward()
    finally:
        for h in hs:
            h.remove()
    pre = store["bn"] + store["id"]
    g = (store["y"].grad * (pre > 0)).sum(dim=(2, 3)).detach().numpy()
    np.testing.assert_allclose(s, g @ v, rtol=1e-9)
    assert all(p.requires_grad for p in net.parameters())  # restored
    assert no_hooks(net)


def test_hooks_and_state_restored_after_errors():
    net = LinearAfter(False).double().train()
    flags = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RcvlabError, match="out of range"):
        directional_derivative(net, x64(), "conv", np.ones(4), 9)  # 5 outputs
    assert no_hooks(net)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    with pytest.raises(RcvlabError, match="vector"):
        directional_derivative(net, x64(), "fc", np.ones(5), 0)  # the logits
    assert no_hooks(net)
    with pytest.raises(DataError, match="components"):
        directional_derivative(net, x64(), "conv", np.ones(3), 0)
    assert no_hooks(net)


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        self.conv(x)
        raise RuntimeError("boom")


def test_hook_removed_when_forward_raises():
    net = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        gap_gradient(net, torch.zeros(1, 3, 4, 4), "conv", 0)
    assert no_hooks(net)


def test_input_errors():
    net = LinearAfter(False).double().eval()
    with pytest.raises(UnknownNameError, match=r"Unknown layer 'conf'.*'conv'"):
        directional_derivative(net, x64(), "conf", np.ones(4), 0)
    with pytest.raises(RcvlabError, match="out of range"):
        directional_derivative(net, x64(), "conv", np.ones(4), -1)
    with pytest.raises(RcvlabError, match="preprocessed"):
        directional_derivative(net, [np.zeros((8, 8, 3), np.uint8)], "conv", np.ones(4), 0)
    with pytest.raises(DataError, match="finite"):
        directional_derivative(net, x64(), "conv", np.array([1.0, np.nan, 0, 0]), 0)
    m = load_model(LinearAfter(False).eval(), input_size=8, layers=["conv", "fc"])
    with pytest.raises(RcvlabError, match="softmax"):
        gap_gradient(m, x64().float(), LayerSpec("softmax", "fc", "softmax"), 0)
    with pytest.raises(UnknownNameError, match="no class names"):
        resolve_target_class(m, "tabby")


def test_images_are_preprocessed_like_extract_features():
    net = LinearAfter(False).eval()
    m = load_model(net, input_size=8, layers=["conv"])
    rng = np.random.default_rng(0)
    imgs = ArrayImageSet([rng.integers(0, 255, (12, 10, 3), dtype=np.uint8) for _ in range(3)])
    g, valid = gap_gradient(m, imgs, "conv", 1)
    assert valid.all() and g.shape == (3, 4)
    x = m.preprocessing([imgs.load(i) for i in range(3)], mode="resize")
    g2, _ = gap_gradient(m, x, "conv", 1)
    np.testing.assert_allclose(g, g2, rtol=1e-6)


def test_raw_direction_is_the_gradient_of_the_prediction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)) * [1, 10, 0.1, 3, 1]
    X[:, 4] = 2.0  # constant column: dropped, 0 in the direction
    y = X[:, 0] - 0.2 * X[:, 1] + rng.normal(scale=0.1, size=40)
    rcv = fit_rcv(X, y, "ridge", 1.0)
    v = raw_direction(rcv)
    grad = np.array(
        [rcv.predict(X[:1] + np.eye(5)[j])[0] - rcv.predict(X[:1])[0] for j in range(5)]
    )
    np.testing.assert_allclose(v, grad / np.linalg.norm(grad), atol=1e-12)
    assert np.linalg.norm(v) == pytest.approx(1.0) and v[4] == 0


def test_one_pass_features_equal_extract_features():
    from rcvlab.features.extract import extract_features
    from rcvlab.probe.sensitivity import gradient_pass

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    m = load_model("resnet50", "random", input_size=64)
    for layer in ("add1", "layer1.1"):  # the pre-ReLU residual sum and a block output
        p = gradient_pass(m, imgs, layer, 3, batch_size=2)
        want = extract_features(m, imgs, [layer], channels_last=False)[layer]
        np.testing.assert_allclose(p.features, want, rtol=1e-4, atol=1e-5)
        assert p.valid.all() and p.gradients.shape == want.shape


def test_blank_pass_gives_the_map_shape_and_the_logits_before_any_image():
    m = load_model(LinearAfter(True).eval(), input_size=8, layers=["conv", "mid", "fc"])
    assert blank_pass(m, "conv") == ((1, 4, 8, 8), 5)
    assert blank_pass(m, "mid") == ((1, 6, 8, 8), 5)
    with pytest.raises(RcvlabError, match="vector"):
        blank_pass(m, "fc")  # the logits
    assert not m.module.training and no_hooks(m.module)
    with pytest.raises(RcvlabError, match="batch_size must be an integer >= 1"):
        gap_gradient(m, x64().float(), "conv", 0, batch_size=0)
    with pytest.raises(RcvlabError, match="batch_size must be an integer >= 1"):
        gap_gradient(m, x64().float(), "conv", 0, batch_size=2.5)
