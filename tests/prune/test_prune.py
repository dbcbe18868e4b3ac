import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from rcvlab import RcvlabError, UnknownNameError, extract_features, load_model
from rcvlab.prune import PrunedModel, PruneError, check_prune_layer, prune, prune_summary

# Small inputs keep the forward passes cheap; parameter counts do not depend on them.
SIZES = {"inception_v3": 75, "resnet50": 64, "efficientnet_lite0": 64, "mobilenet_v2": 64}
HEADS = {
    "inception_v3": ("fc", "AuxLogits"),
    "resnet50": ("fc",),
    "efficientnet_lite0": ("classifier",),
    "mobilenet_v2": ("classifier",),
}
CASES = [
    ("inception_v3", "mixed8"),
    ("inception_v3", "mixed2"),
    ("resnet50", "add15"),
    ("resnet50", "add1"),
    ("resnet50", "layer3.2"),
    ("efficientnet_lite0", "block6b"),
    ("efficientnet_lite0", "stem"),
    ("mobilenet_v2", "features.8"),
    ("mobilenet_v2", "features.0.1"),
]
_MODELS: dict[str, object] = {}


def model(name):
    """One random-weights model per architecture for the whole module (InceptionV3 takes ~5 s)."""
    if name not in _MODELS:
        _MODELS[name] = load_model(name, "random", seed=0, input_size=SIZES[name])
    return _MODELS[name]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 80, 80, 3), dtype=np.uint8)


def preprocess(m, images):
    return m.preprocessing([Image.fromarray(a) for a in images])


def assert_same(y, ref):
    ref = torch.as_tensor(ref)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def backbone_modules(m):
    """Every module of the network except the classifier heads (counted independently)."""
    heads = [getattr(m.module, h, None) for h in HEADS[m.name]]
    heads = [h for h in heads if isinstance(h, nn.Module)]
    in_heads = {id(x) for h in heads for x in h.modules()}
    return [x for x in m.module.modules() if id(x) not in in_heads]


@pytest.mark.parametrize(("name", "at"), CASES)
def test_output_is_the_layers_gap_features(name, at, images):
    m = model(name)
    pm = prune(m, at, verify=False)  # this test is the check
    with torch.inference_mode():
        y = pm(preprocess(m, images))
    ref = extract_features(m, images, layers=[at], channels_last=False, device="cpu")[at]
    assert y.shape == (3, pm.out_dim) == ref.shape
    assert_same(y, ref)


@pytest.mark.parametrize(("name", "at"), CASES)
def test_only_kept_modules_are_counted_reachable_and_run(name, at, images):
    m = model(name)
    pm = prune(m, at, copy=False, verify=False)
    net = m.module
    kept = {id(p) for path in pm.kept_modules for p in net.get_submodule(path).parameters()}
    by_kept = sum(p.numel() for p in net.parameters() if id(p) in kept)
    assert pm.n_params == by_kept == sum(p.numel() for p in pm.parameters())
    backbone = {id(p): p.numel() for x in backbone_modules(m) for p in x.parameters(False)}
    assert pm.full_n_params == sum(backbone.values())
    assert 0 < pm.n_params < pm.full_n_params
    assert pm.reduction == pytest.approx(1 - pm.n_params / pm.full_n_params)

    # Everything not inside a kept path comes after the layer (or is a head): it is neither
    # a submodule of the pruned network nor ever executed by it.
    inside_kept = {id(x) for path in pm.kept_modules for x in net.get_submodule(path).modules()}
    later = [x for x in net.modules() if id(x) not in inside_kept and x is not net]
    later = [x for x in later if not any(True for _ in x.children())]  # leaves
    assert later
    reachable = {id(x) for x in pm.modules()}
    assert not any(id(x) in reachable for x in later)
    fired = []
    handles = [x.register_forward_hook(lambda *a: fired.append(1)) for x in later]
    try:
        with torch.inference_mode():
            pm(preprocess(m, images[:1]))
        assert not fired
        with torch.inference_mode():
            net(preprocess(m, images[:1]))
        assert fired  # the hooks do fire in the full network
    finally:
        for h in handles:
            h.remove()


def test_paper_parameter_counts():
    iv3 = prune(model("inception_v3"), "mixed8", verify=False)
    assert (iv3.n_params, iv3.full_n_params, iv3.out_dim) == (10_664_160, 21_785_568, 1280)
    assert f"{iv3.reduction:.1%}" == "51.0%"
    assert iv3.layer_module == "Mixed_7a"
    assert prune_summary(iv3) == (
        "inception_v3 pruned at mixed8: 10,664,160 of 21,785,568 backbone parameters "
        "(51.0 % fewer); output dim 1280"
    )
    r50 = prune(model("resnet50"), "add15", verify=False)
    assert (r50.n_params, r50.full_n_params, r50.out_dim) == (19_045_440, 23_508_032, 2048)
    assert f"{r50.reduction:.1%}" == "19.0%"
    assert r50.kept_modules[-2:] == ["layer4.0", "layer4.1"]


def test_last_layer_keeps_the_whole_backbone():
    pm = prune(model("inception_v3"), "mixed10", verify=False)
    assert pm.n_params == pm.full_n_params and pm.reduction == 0.0 and pm.out_dim == 2048


def test_inception_keeps_transform_input_and_maxpools():
    pm = prune(model("inception_v3"), "mixed0", copy=False, verify=False)
    names = [n for n, _ in pm.backbone.named_children()]
    assert names[0] == "transform_input"
    assert names[1:] == [
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
    ]
    assert pm.kept_modules == names[1:]


def test_add_k_ends_before_the_relu_and_layer_path_after_it(images):
    m = model("resnet50")
    x = preprocess(m, images)
    with torch.inference_mode():
        pre = prune(m, "add10", verify=False).backbone(x)
        post = prune(m, "layer3.2", verify=False).backbone(x)
    assert pre.min() < 0 and post.min() >= 0
    torch.testing.assert_close(torch.relu(pre), post)


def test_copy_is_independent_and_keeps_the_source_state_dict_keys(images):
    m = model("mobilenet_v2")
    pm = prune(m, "features.8")
    src = m.module.state_dict()
    ours = pm.backbone.state_dict()
    assert ours and set(ours) <= set(src)
    for k, v in ours.items():
        torch.testing.assert_close(v, src[k])
    src_ptrs = {p.data_ptr() for p in m.module.parameters()}
    assert not any(p.data_ptr() in src_ptrs for p in pm.parameters())

    # Transfer set-up: a dense head on the pruned features, one training step.
    before = {k: v.clone() for k, v in src.items()}
    net = nn.Sequential(pm, nn.Linear(pm.out_dim, 1)).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = net(preprocess(m, images)).square().mean()
    loss.backward()
    opt.step()
    assert not torch.equal(
        pm.backbone.state_dict()["features.0.0.weight"], before["features.0.0.weight"]
    )
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("name", "at", "match"),
    [
        ("inception_v3", "Mixed_6b.branch7x7_1", r"inside a branch of Mixed_6b.*'mixed4'"),
        ("inception_v3", "Mixed_6b.branch7x7_1.conv", r"inside a branch of Mixed_6b"),
        ("inception_v3", "pre-softmax", r"classifier's output \('fc'\), after the global av"),
        ("inception_v3", "softmax", r"after the global average pooling.*'mixed10'"),
        ("inception_v3", "avgpool", r"'avgpool', part of the pooling and classifier head"),
        (
            "resnet50",
            "layer3.2.conv1",
            r"inside layer3.2 \(Bottleneck\), a block that is kept or cut whole.*'add10' or",
        ),
        ("resnet50", "pre-softmax", r"after the global average pooling.*'add16'"),
        ("efficientnet_lite0", "blocks.5.1.conv_pw", r"inside blocks.5.1 .*'block6b'"),
        ("mobilenet_v2", "features.3.conv", r"inside features.3 \(InvertedResidual\)"),
        ("mobilenet_v2", "softmax", r"classifier's softmax"),
    ],
)
def test_layers_off_the_main_path_are_refused_with_the_reason(name, at, match):
    with pytest.raises(PruneError, match=match) as e:
        prune(model(name), at)
    assert isinstance(e.value, RcvlabError)
    assert f"Cannot prune {name} at '{at}'" in str(e.value)
    assert "\n" not in str(e.value)
    # the one check transfer runs on its pruned:LAYER variants refuses with the same line
    with pytest.raises(PruneError) as checked:
        check_prune_layer(model(name), at)
    assert str(checked.value) == str(e.value)


def test_check_prune_layer_reads_the_module_tree_only():
    m = model("resnet50")

    def no_forward(*args):
        raise AssertionError("check_prune_layer ran the network")

    handle = m.module.register_forward_pre_hook(no_forward)
    try:
        spec = check_prune_layer(m, "layer3.2")
        assert (spec.name, spec.module) == ("layer3.2", "layer3.2")
        assert check_prune_layer(m, "add15").kind == "residual_sum"
        with pytest.raises(UnknownNameError, match="Did you mean 'add15'"):
            check_prune_layer(m, "add155")
        with pytest.raises(RcvlabError, match="not int"):
            check_prune_layer(m, 3)
    finally:
        handle.remove()


def test_unknown_layer_is_the_models_unknown_name_error():
    with pytest.raises(UnknownNameError, match="Did you mean 'mixed8'"):
        prune(model("inception_v3"), "mixed88")


@pytest.mark.parametrize(("name", "at"), [("resnet50", "add15"), ("efficientnet_lite0", "block4a")])
def test_save_load_round_trip(name, at, images, tmp_path):
    m = model(name)
    pm = prune(m, at)
    path = tmp_path / "pruned.pt"
    pm.save(path)
    torch.load(path, weights_only=True)  # plain tensors and values only
    back = PrunedModel.load(path)
    assert isinstance(back, PrunedModel) and not back.training
    assert back.describe() == pm.describe()
    assert back.preprocessing == pm.preprocessing
    x = preprocess(m, images)
    with torch.inference_mode():
        assert torch.equal(back(x), pm(x))
    assert prune_summary(back) == prune_summary(pm)


def test_whole_module_pickle_round_trip(images, tmp_path):
    m = model("mobilenet_v2")
    pm = prune(m, "features.5")
    torch.save(pm, tmp_path / "pm.pt")
    back = torch.load(tmp_path / "pm.pt", weights_only=False)
    x = preprocess(m, images)
    with torch.inference_mode():
        assert torch.equal(back(x), pm(x))
    assert back.describe() == pm.describe()


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(RcvlabError, match="No pruned network"):
        PrunedModel.load(tmp_path / "missing.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(RcvlabError, match="not a pruned network"):
        PrunedModel.load(tmp_path / "other.pt")


class Skip(nn.Module):
    """Children registered in chain order, but the forward adds a skip connection."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv1(x)
        h = self.conv2(h) + h
        return self.fc(self.conv3(h).mean(dim=(2, 3)))


def test_plain_sequential_is_its_own_chain(images):
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU()),
        nn.Conv2d(6, 8, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    m = load_model(seq, input_size=32, layers=["1.1", "2"])
    pm = prune(m, "1.1")
    assert pm.kept_modules == ["0", "1.0", "1.1"] and pm.out_dim == 6
    assert pm.n_params == 3 * 4 * 9 + 4 + 4 * 6 * 9 + 6
    ref = extract_features(m, images, layers=["1.1"], channels_last=False, device="cpu")
    with torch.inference_mode():
        assert_same(pm(preprocess(m, images)), ref["1.1"])
    with pytest.raises(RcvlabError, match=r"torch\.save"):
        pm.save("unused.pt")


def test_a_guessed_chain_is_checked_against_the_forward():
    torch.manual_seed(0)
    m = load_model(Skip(), input_size=16, layers=["conv1", "conv2", "conv3"])
    assert prune(m, "conv1").n_params == 3 * 4 * 9 + 4
    assert prune(m, "conv1").full_n_params == 3 * 4 * 9 + 4 + 2 * (4 * 4 * 9 + 4)
    # conv2's own output is still a chain's; conv3's input is conv2(h) + h, not conv2(h).
    assert prune(m, "conv2").out_dim == 4
    with pytest.raises(PruneError, match="not the chain of modules rcvlab assumed"):
        prune(m, "conv3")
    with pytest.raises(PruneError, match="not the chain of modules rcvlab assumed"):
        prune(m, "conv3", verify=False)  # a guessed chain is always checked
    with pytest.raises(PruneError, match="not the chain of modules rcvlab assumed"):
        check_prune_layer(m, "conv3")
    assert check_prune_layer(m, "conv2").name == "conv2"
    with pytest.raises(PruneError, match="after the global average pooling"):
        prune(m, "fc")


def test_timm_network_by_guessed_chain(images):
    m = load_model("timm:resnet18", "random", input_size=64)
    pm = prune(m, "layer3.1")
    assert pm.kept_modules[:4] == ["conv1", "bn1", "act1", "maxpool"]
    assert pm.full_n_params == sum(p.numel() for p in m.module.parameters()) - 512 * 1000 - 1000
    ref = extract_features(m, images, layers=["layer3.1"], channels_last=False, device="cpu")
    with torch.inference_mode():
        assert_same(pm(preprocess(m, images)), ref["layer3.1"])
