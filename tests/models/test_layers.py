import pytest
import torchvision

from rcvlab import UnknownNameError, layer_dims, load_model

INCEPTION_DIMS = {
    "conv2d_3": 64,
    "conv2d_5": 192,
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
    assert m.resolve(["conv2d_3"])[0].module == "Conv2d_2b_3x3.conv"
    assert m.resolve(["conv2d_5"])[0].module == "Conv2d_4a_3x3.conv"


# keras.applications.inception_v3, the stem before mixed0: conv2d_bn(filters, rows, cols,
# strides, padding) in source order; Keras 2.2 names each Conv2D conv2d_1, conv2d_2, ...
KERAS_STEM = [
    (32, 3, 2, "valid"),
    (32, 3, 1, "valid"),
    (64, 3, 1, "same"),
    (80, 1, 1, "valid"),
    (192, 3, 1, "valid"),
]


@pytest.mark.slow
def test_keras_stem_numbering_matches_torchvision_convolutions():
    import torch.nn as nn

    from rcvlab.models.layers import KERAS_INCEPTION_STEM, PAPER004_LAYERS

    m = load_model("inception_v3", "random")
    assert list(KERAS_INCEPTION_STEM) == [f"conv2d_{k}" for k in range(1, 6)]
    for (filters, k, stride, pad), block in zip(
        KERAS_STEM, KERAS_INCEPTION_STEM.values(), strict=True
    ):
        conv = m.module.get_submodule(f"{block}.conv")
        assert isinstance(conv, nn.Conv2d) and conv.bias is None  # BN follows it
        assert conv.out_channels == filters and conv.kernel_size == (k, k)
        assert conv.stride == (stride, stride)
        assert conv.padding == ((k // 2, k // 2) if pad == "same" else (0, 0))
    assert set(PAPER004_LAYERS) <= set(m.layers)
    notes = {s.name: s.note for s in m.layer_specs}
    assert "Conv2d_2b_3x3.conv" in notes["conv2d_3"] and "before its BatchNorm" in notes["conv2d_3"]
    assert "mixed6e" in notes["mixed6"] and "mixed7a" in notes["mixed7"]


@pytest.mark.slow
def test_conv2d_3_is_the_convolution_before_batchnorm():
    import numpy as np
    import torch

    from rcvlab.features.extract import extract_features

    m = load_model("inception_v3", "random", input_size=75)
    x = torch.rand(2, 3, 75, 75)
    seen = {}
    block = m.module.Conv2d_2b_3x3
    hooks = [
        block.conv.register_forward_hook(lambda _m, _i, y: seen.setdefault("conv", y)),
        block.register_forward_hook(lambda _m, _i, y: seen.setdefault("block", y)),
    ]
    try:
        with torch.no_grad():
            m.module.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    got = extract_features(m, x, ["conv2d_3"])["conv2d_3"]
    np.testing.assert_allclose(got, seen["conv"].mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    # the block's output (after BN and ReLU) is something else
    assert not np.allclose(got, seen["block"].mean(dim=(2, 3)).numpy(), atol=1e-3)


def test_existing_inception_cache_keys_are_unchanged():
    m = load_model("inception_v3", "random")
    assert m.resolve(["mixed0"])[0].key() == ("mixed0", "Mixed_5b", "output")
    assert m.resolve(["softmax"])[0].key() == ("softmax", "fc", "softmax")


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


def test_paper004_figure1_names_resolve_to_the_named_layers():
    """Figure 1 of paper 004 says mixed5b, mixed5c, mixed6a, mixed7c (torchvision's module
    names without case and underscores): they are rcvlab's mixed0, mixed1, mixed3, mixed10."""
    from rcvlab.models.layers import inception_v3_layers, resolve_layers

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    got = resolve_layers(
        ["mixed5b", "mixed5c", "mixed6a", "mixed7c"], inception_v3_layers(), net, "inception_v3"
    )
    assert [s.name for s in got] == ["mixed0", "mixed1", "mixed3", "mixed10"]
    with pytest.raises(UnknownNameError, match="mixed6x"):
        resolve_layers(["mixed6x"], inception_v3_layers(), net, "inception_v3")
