"""weights="random-xavier": the paper's random network (Keras glorot_uniform, zero biases)."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from rcvlab import WeightsError, load_model


def _fans(w: torch.Tensor) -> tuple[int, int]:
    # by hand: (out, in/groups, *kernel) -> fan_in = in/groups * area, fan_out = out * area
    area = math.prod(w.shape[2:]) if w.ndim > 2 else 1
    return w.shape[1] * area, w.shape[0] * area


def _layers(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@pytest.fixture(scope="module")
def mobilenet():
    return load_model("mobilenet_v2", "random-xavier", seed=3, input_size=64)


def test_weights_are_xavier_uniform_biases_zero(mobilenet):
    layers = _layers(mobilenet.module)
    assert len(layers) > 50
    big = 0
    for m in layers:
        w = m.weight.detach().double()
        fan_in, fan_out = _fans(w)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert w.abs().max() <= bound + 1e-7
        if w.numel() >= 20_000:
            big += 1
            # U(-a, a) has variance a^2 / 3 = 2 / (fan_in + fan_out)
            assert float(w.var()) == pytest.approx(2.0 / (fan_in + fan_out), rel=0.05)
            ks = stats.kstest(w.numpy().ravel()[:20_000], stats.uniform(-bound, 2 * bound).cdf)
            assert ks.pvalue > 1e-4
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    assert big >= 10


def test_batchnorm_at_defaults(mobilenet):
    bns = [m for m in mobilenet.module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def test_seeded_and_distinct_from_random(mobilenet):
    same = load_model("mobilenet_v2", "random-xavier", seed=3, input_size=64)
    other = load_model("mobilenet_v2", "random-xavier", seed=4, input_size=64)
    plain = load_model("mobilenet_v2", "random", seed=3, input_size=64)
    a, b = mobilenet.module.state_dict(), same.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    w = "features.5.conv.1.0.weight"
    assert not torch.equal(a[w], other.module.state_dict()[w])
    assert not torch.equal(a[w], plain.module.state_dict()[w])
    ids = {mobilenet.weights_id, other.weights_id, plain.weights_id}
    assert len(ids) == 3 and mobilenet.weights_id.startswith("random-xavier")
    assert mobilenet.weights == "random-xavier"


def test_global_rng_untouched():
    before = torch.get_rng_state()
    load_model("timm:resnet18", "random-xavier", seed=0, input_size=32)
    assert torch.equal(before, torch.get_rng_state())


def test_twin_random_xavier_registry_and_custom(mobilenet):
    t = load_model("mobilenet_v2", "imagenet", input_size=64).twin("random-xavier", seed=3)
    a, b = mobilenet.module.state_dict(), t.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert t.weights_id == mobilenet.weights_id

    net = nn.Sequential(nn.Conv2d(3, 64, 5), nn.BatchNorm2d(64), nn.Conv2d(64, 32, 3))
    custom = load_model(net, input_size=16, layers=["0", "2"])
    twin = custom.twin("random-xavier", seed=1)
    w = twin.module[0].weight.detach().double()
    bound = math.sqrt(6.0 / (3 * 25 + 64 * 25))
    assert w.abs().max() <= bound and float(w.var()) == pytest.approx(bound**2 / 3, rel=0.1)
    assert torch.count_nonzero(twin.module[0].bias) == 0
    assert twin.weights == "random-xavier" and twin.weights_id != custom.twin("random").weights_id
    assert torch.equal(custom.module[0].weight, net[0].weight)  # the given module untouched


@pytest.mark.slow
def test_inception_v3_random_xavier():
    m = load_model("inception_v3", "random-xavier", seed=0)
    w = m.module.Conv2d_4a_3x3.conv.weight.double()
    fan_in, fan_out = _fans(w)
    assert float(w.var()) == pytest.approx(2.0 / (fan_in + fan_out), rel=0.05)
    assert np.isclose(float(m.module.fc.weight.double().var()), 2.0 / (2048 + 1000), rtol=0.05)


def test_unknown_weights_lists_random_xavier():
    with pytest.raises(WeightsError) as e:
        load_model("mobilenet_v2", "xavier")
    msg = str(e.value)
    assert "random-xavier" in msg and "\n" not in msg
