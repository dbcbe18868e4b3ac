"""Single-logit heads (binary_head), and weights files that rebuild them (save_weights)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcvlab import WeightsError, extract_features, load_model
from rcvlab.errors import RcvlabError, UnknownNameError
from rcvlab.models import binary_head, is_binary, save_weights


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


def _x(size: int, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


def _logits(model, x):
    with torch.no_grad():
        return model.module.eval()(x)


@pytest.fixture(scope="module")
def mobilenet():
    return load_model("mobilenet_v2", "random", seed=0, input_size=64)


def test_mobilenet_head_keeps_dropout_and_leaves_original(mobilenet):
    b = binary_head(mobilenet, positive="tumour", seed=1)
    clf = b.module.classifier
    assert isinstance(clf[0], nn.Dropout) and isinstance(clf[1], nn.Linear)
    assert (clf[1].in_features, clf[1].out_features) == (1280, 1)
    assert torch.count_nonzero(clf[1].bias) == 0
    assert b.categories == ("tumour",) and is_binary(b) and not is_binary(mobilenet)
    assert b.layers[-2:] == ["logits", "sigmoid"] and "softmax" not in b.layers
    assert "pre-softmax" not in b.layers and b.layers[:-2] == mobilenet.layers[:-2]
    assert mobilenet.module.classifier[1].out_features == 1000  # original untouched
    assert b.weights_id != mobilenet.weights_id
    assert _logits(b, _x(64)).shape == (3, 1)
    # the body is the original's: the logit is the new layer applied to the GAP features
    with torch.no_grad():
        f = mobilenet.module.eval().features(_x(64)).mean(dim=(2, 3))
        want = f @ clf[1].weight.T + clf[1].bias
    torch.testing.assert_close(_logits(b, _x(64)), want, rtol=1e-5, atol=1e-5)


def test_head_seeded(mobilenet):
    a = binary_head(mobilenet, seed=1).module.classifier[1].weight
    b = binary_head(mobilenet, seed=1).module.classifier[1].weight
    c = binary_head(mobilenet, seed=2).module.classifier[1].weight
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "name, path", [("efficientnet_lite0", "classifier"), ("timm:resnet18", "fc")]
)
def test_timm_heads(name, path):
    m = load_model(name, "random", input_size=64)
    b = binary_head(m, positive="tumour")
    assert b.module.get_submodule(path).out_features == 1
    assert b.module.get_classifier() is b.module.get_submodule(path)
    assert [s.module for s in b.layer_specs[-2:]] == [path, path]
    assert _logits(b, _x(64)).shape == (3, 1)


def test_sigmoid_and_logits_layers_extract():
    torch.manual_seed(0)
    m = load_model(Small().eval(), input_size=16, layers=["conv", "fc"])
    b = binary_head(m, positive="tumour", head="fc")
    assert b.layers == ["conv", "fc", "logits", "sigmoid"]
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    feats = extract_features(b, images, ["logits", "sigmoid"], device="cpu")
    x = b.preprocessing.normalise(torch.from_numpy(images).permute(0, 3, 1, 2))
    z = _logits(b, x).numpy()
    np.testing.assert_allclose(feats["logits"], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["sigmoid"], 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)


def test_custom_module_needs_head():
    m = load_model(Small(), input_size=16)
    with pytest.raises(RcvlabError, match="head='fc'") as e:
        binary_head(m)
    assert "\n" not in str(e.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'fc'"):
        binary_head(m, head="fcc")
    with pytest.raises(RcvlabError, match=r"not an nn\.Linear"):
        binary_head(m, head="conv")
    with pytest.raises(RcvlabError, match="Model"):
        binary_head(Small())


# -- save_weights / load_model(name, path) -------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "timm:resnet18"])
def test_binary_save_load_same_logits(name, tmp_path):
    m = binary_head(load_model(name, "random", seed=2, input_size=48), positive="tumour")
    path = tmp_path / "model.pt"
    save_weights(m, path)
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == "rcvlab-weights" and obj["architecture"] == name
    assert obj["head"]["outputs"] == 1 and obj["head"]["positive"] == "tumour"
    assert obj["input_size"] == 48
    r = load_model(name, path)  # input size from the file
    assert r.input_size == 48 and r.categories == ("tumour",) and is_binary(r)
    assert r.layers == m.layers
    assert torch.equal(_logits(m, _x(48)), _logits(r, _x(48)))
    assert r.weights_id.startswith("file:") and r.weights == str(path)
    # the twin of a finetuned network keeps its single-logit head
    t = r.twin("random-xavier", seed=0)
    assert is_binary(t) and _logits(t, _x(48)).shape == (3, 1)


@pytest.mark.slow
def test_binary_save_load_inception_v3(tmp_path):
    # resnet50 has the same head (fc); InceptionV3 is the paper's network
    m = binary_head(load_model("inception_v3", "random", seed=2, input_size=80), positive="t")
    assert m.module.fc.out_features == 1 and m.module.AuxLogits is None
    save_weights(m, tmp_path / "model.pt")
    r = load_model("inception_v3", tmp_path / "model.pt")
    assert torch.equal(_logits(m, _x(80, n=2)), _logits(r, _x(80, n=2)))


def test_plain_1000_class_save_load(mobilenet, tmp_path):
    save_weights(mobilenet, tmp_path / "m.pt")
    r = load_model("mobilenet_v2", tmp_path / "m.pt")
    assert len(r.categories) == 1000 and r.layers == mobilenet.layers
    assert torch.equal(_logits(mobilenet, _x(64)), _logits(r, _x(64)))
    # a plain state-dict file keeps working
    torch.save(mobilenet.module.state_dict(), tmp_path / "plain.pt")
    p = load_model("mobilenet_v2", tmp_path / "plain.pt", input_size=64)
    assert torch.equal(_logits(mobilenet, _x(64)), _logits(p, _x(64)))


def test_file_for_another_architecture(mobilenet, tmp_path):
    path = tmp_path / "model.pt"
    save_weights(binary_head(mobilenet), path)
    with pytest.raises(WeightsError) as e:
        load_model("efficientnet_lite0", path)
    msg = str(e.value)
    want = f"{path} holds weights for mobilenet_v2, not efficientnet_lite0; pass --model "
    assert msg == want + "mobilenet_v2."


def test_custom_module_save_load(tmp_path):
    torch.manual_seed(0)
    m = binary_head(load_model(Small(), input_size=16, layers=["conv"]), head="fc", positive="t")
    save_weights(m, tmp_path / "m.pt")
    fresh = Small()
    r = load_model(fresh, tmp_path / "m.pt", input_size=16, layers=["conv"])
    assert r.categories == ("t",) and r.layers == ["conv", "logits", "sigmoid"]
    assert torch.equal(_logits(m, _x(16)), _logits(r, _x(16)))
    assert fresh.fc.out_features == 3  # the given module is not changed
    with pytest.raises(WeightsError, match="custom module"):
        load_model("mobilenet_v2", tmp_path / "m.pt")
