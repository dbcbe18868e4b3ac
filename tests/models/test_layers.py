import pytest

from rcvlab import UnknownNameError, layer_dims, load_model

INCEPTION_DIMS = {
    "mixed0": 256,
    "mixed1": 288,
    "mixed2": 288,
    **{f"mixed{i}": 768 for i in range(3, 8)},
    "mixed8": 1280,
    "mixed9": 2048,
    "mixed10": 2048,
    "pre-softmax": 1000,
    "softmax": 1000,
}
RESNET_DIMS = {
    **{f"add{k}": 256 for k in (1, 2, 3)},
    **{f"add{k}": 512 for k in range(4, 8)},
    **{f"add{k}": 1024 for k in range(8, 14)},
    **{f"add{k}": 2048 for k in (14, 15, 16)},
    "pre-softmax": 1000,
    "softmax": 1000,
}


def test_inception_v3_layer_names_and_dims_match_method():
    m = load_model("inception_v3", "random")
    assert m.layers == list(INCEPTION_DIMS)
    assert m.input_size == 299
    assert layer_dims(m, input_size=75) == INCEPTION_DIMS
    assert m.resolve(["mixed8"])[0].module == "Mixed_7a"
    assert m.resolve(["mixed0"])[0].module == "Mixed_5b"


def test_resnet50_layer_names_and_dims_match_method():
    m = load_model("resnet50", "random")
    assert m.layers == list(RESNET_DIMS)
    assert m.input_size == 224
    assert layer_dims(m, input_size=64) == RESNET_DIMS
    spec = m.resolve(["add15"])[0]
    assert (spec.module, spec.kind) == ("layer4.1", "residual_sum")


def test_efficientnet_and_mobilenet_layer_names():
    e = load_model("efficientnet_lite0", "random")
    assert e.layers[0] == "stem" and e.layers[-3:] == ["head", "pre-softmax", "softmax"]
    assert len(e.layers) == 20 and "block6d" in e.layers
    mb = load_model("mobilenet_v2", "random")
    assert mb.layers[:2] == ["features.0", "features.1"] and len(mb.layers) == 21


def test_unknown_layer_suggests_and_points_to_cli():
    m = load_model("inception_v3", "random")
    with pytest.raises(UnknownNameError) as e:
        m.resolve(["mixd8"])
    msg = str(e.value)
    assert "Unknown layer 'mixd8' for inception_v3" in msg
    assert "Did you mean 'mixed8'?" in msg and "rcvlab layers inception_v3" in msg


def test_dotted_module_path_is_a_layer():
    m = load_model("resnet50", "random")
    (spec,) = m.resolve("layer4.1")
    assert spec.kind == "output" and spec.module == "layer4.1"
    assert layer_dims(m, ["layer4.1", "add1"], input_size=64) == {"layer4.1": 2048, "add1": 256}


def test_unknown_model():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        load_model("resnet5O", "random")


def test_random_weights_are_seeded():
    a = load_model("mobilenet_v2", "random", seed=1).module.state_dict()
    b = load_model("mobilenet_v2", "random", seed=1).module.state_dict()
    c = load_model("mobilenet_v2", "random", seed=2).module.state_dict()
    k = "features.0.0.weight"
    assert (a[k] == b[k]).all() and not (a[k] == c[k]).all()


def test_timm_by_name_discovers_blocks():
    m = load_model("timm:resnet18", "random")
    assert m.layers[:2] == ["layer1.0", "layer1.1"] and m.layers[-1] == "softmax"
    with pytest.raises(UnknownNameError, match="timm"):
        load_model("timm:resnet18x", "random")
