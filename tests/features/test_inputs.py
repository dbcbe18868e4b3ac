"""Inputs other than ImageSets (tensors, DataLoaders, iterables) and the module given back
as it was (device, memory format, training flags, hooks)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from rcvlab import DataError, RcvlabError, extract_features, layer_dims, load_model

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
LAYERS = ["conv1", "bn", "conv2", "fc"]


class Net(nn.Module):
    """conv -> BatchNorm -> ReLU -> strided conv -> GAP -> linear, seeded."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.fc = nn.Linear(6, 5)
        with torch.no_grad():  # running statistics that differ from a batch's own
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def imgs(rng):
    return rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)


def by_hand(imgs):
    """The preprocessed batch (ImageNet normalisation, 32 px: no resize) and the expected
    GAP features from a plain forward pass of an eval-mode copy of the net."""
    x = torch.from_numpy(((imgs / 255.0 - MEAN) / STD).astype(np.float32)).permute(0, 3, 1, 2)
    net = Net().eval()
    with torch.no_grad():
        c1 = net.conv1(x)
        b = net.bn(c1)
        c2 = net.conv2(torch.relu(b))
        fc = net.fc(c2.mean(dim=(2, 3)))
    want = {"conv1": c1.mean((2, 3)), "bn": b.mean((2, 3)), "conv2": c2.mean((2, 3)), "fc": fc}
    return x.contiguous(), {k: v.numpy() for k, v in want.items()}


def check(feats, want, atol=1e-6):
    assert list(feats) == LAYERS and feats.valid.all()
    for k in LAYERS:
        np.testing.assert_allclose(feats[k], want[k], rtol=0, atol=atol, err_msg=k)


def test_every_input_kind_gives_the_same_features(imgs):
    x, want = by_hand(imgs)
    y = torch.arange(len(imgs))
    m = load_model(Net(), input_size=32, layers=LAYERS)
    u8 = torch.from_numpy(imgs)
    inputs = {
        "uint8 array": imgs,
        "float tensor": x,
        "uint8 NCHW": u8.permute(0, 3, 1, 2),
        "uint8 NCHW contiguous": u8.permute(0, 3, 1, 2).contiguous(),
        "uint8 NHWC": u8,
        "DataLoader float": DataLoader(TensorDataset(x, y), batch_size=3),
        "DataLoader uint8": DataLoader(TensorDataset(u8.permute(0, 3, 1, 2), y), batch_size=4),
        "generator": (x[i : i + 2] for i in range(0, len(x), 2)),
        "list of pairs": [(x[:5], y[:5]), (x[5:], y[5:])],
        "list of arrays": [imgs[:3], imgs[3:]],
        "list of CHW tensors": list(x),
    }
    for name, data in inputs.items():
        f = extract_features(m, data, batch_size=2)
        assert f.n_computed == len(imgs), name
        check(f, want)


def test_float_tensor_needs_no_input_size_for_a_plain_module(imgs):
    x, want = by_hand(imgs)
    check(extract_features(Net(), x, layers=LAYERS), want)
    with pytest.raises(
        RcvlabError, match=r"input_size=64 does not apply to float tensors of 32x32"
    ):
        extract_features(Net(), x, layers=LAYERS, input_size=64)


def test_float_tensor_is_not_resized(imgs):
    """A Model at 224 px runs a 32 px float tensor at 32 px (a resize would change the map)."""
    x, want = by_hand(imgs)
    m = load_model(Net(), input_size=224, layers=LAYERS)
    check(extract_features(m, x), want)
    # uint8 pixels are resized to the model's 224 px: the features differ
    assert not np.allclose(extract_features(m, imgs)["conv2"], want["conv2"], atol=1e-3)


def test_large_stream_batches_are_split(imgs):
    x, want = by_hand(imgs)
    net = Net()
    sizes = []
    net.register_forward_pre_hook(lambda mod, a: sizes.append(a[0].shape[0]))
    check(extract_features(net, [x], layers=LAYERS, batch_size=3), want)
    assert sizes == [3, 3, 1]


def test_cache_of_tensors_is_keyed_by_content(imgs, tmp_path):
    x, want = by_hand(imgs)
    m = load_model(Net(), input_size=32, layers=LAYERS)
    a = extract_features(m, x, cache_dir=tmp_path)
    b = extract_features(m, x.clone(), cache_dir=tmp_path)
    assert a.n_computed == 7 and b.n_computed == 0 and a.key == b.key
    check(b, want)
    x2 = x.clone()
    x2[3, 1, 5, 5] += 0.5
    c = extract_features(m, x2, cache_dir=tmp_path)
    assert c.key != a.key and c.n_computed == 7
    # a uint8 tensor is the same data as the array it holds: one cache entry
    d = extract_features(m, imgs, cache_dir=tmp_path)
    e = extract_features(m, torch.from_numpy(imgs).permute(0, 3, 1, 2), cache_dir=tmp_path)
    assert d.n_computed == 7 and e.n_computed == 0 and d.key == e.key
    # float and uint8 input of the same pictures do not share an entry
    assert d.key != a.key


def test_an_iterable_is_read_once_and_not_cached(imgs, tmp_path):
    x, want = by_hand(imgs)
    given = []

    def batches():
        for i in range(0, len(x), 3):
            given.append(i)
            yield x[i : i + 3]

    check(extract_features(Net(), batches(), layers=LAYERS), want)
    assert given == [0, 3, 6]  # every batch read once, none twice by the prefetch
    gen = batches()
    with pytest.raises(RcvlabError, match="read once and not cached"):
        extract_features(Net(), gen, layers=LAYERS, cache_dir=tmp_path)
    with pytest.raises(RcvlabError, match="read once and not cached"):
        extract_features(Net(), gen, layers=LAYERS, shard=(0, 3))
    assert given == [0, 3, 6]  # refused before reading anything
    assert not any(tmp_path.iterdir())


def test_dataloader_with_workers(imgs):
    x, want = by_hand(imgs)
    loader = DataLoader(TensorDataset(x, torch.zeros(7)), batch_size=2, num_workers=1)
    check(extract_features(Net(), loader, layers=LAYERS), want)


BAD = {
    "one image": (torch.zeros(3, 32, 32), "unsqueeze"),
    "grey float": (torch.zeros(2, 1, 32, 32), "3 channels"),
    "RGBA float": (torch.zeros(2, 4, 32, 32), "x\\[:, :3\\]"),
    "NHWC float": (torch.zeros(2, 32, 32, 3), "permute"),
    "float64": (torch.zeros(2, 3, 32, 32, dtype=torch.float64), "must be float32.*x.float"),
    "float16": (torch.zeros(2, 3, 32, 32, dtype=torch.float16), "must be float32"),
    "int64": (torch.zeros(2, 3, 32, 32, dtype=torch.int64), "uint8 .* or float32"),
    "grey uint8": (torch.zeros(2, 32, 32, 1, dtype=torch.uint8), "3 colour channels"),
    "RGBA uint8": (torch.zeros(2, 4, 32, 32, dtype=torch.uint8), "3 colour channels"),
    "uint8 one image": (torch.zeros(32, 32, 3, dtype=torch.uint8), "unsqueeze"),
    "empty float": (torch.zeros(0, 3, 32, 32), "No images"),
    "NaN": (torch.full((2, 3, 32, 32), float("nan")), "NaN or infinite"),
    "empty generator": ((b for b in []), "gave no images"),
    "dict batches": (iter([{"pixel_values": torch.zeros(2, 3, 32, 32)}]), "got a dict"),
    "mixed batches": (
        [torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32, dtype=torch.uint8)],
        "Batch 1 .* uint8 and the first one float",
    ),
    "bad batch": ([torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)], "Batch 1 of"),
    "Dataset": (TensorDataset(torch.zeros(2, 3, 32, 32)), "DataLoader"),
    "one-image batches": ((torch.zeros(3, 32, 32) for _ in range(2)), "not a Dataset"),
    "3-D array": (np.zeros((32, 32, 3), np.uint8), "x\\[None\\]"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_are_one_line_errors(name):
    data, match = BAD[name]
    with pytest.raises(RcvlabError, match=match) as e:
        extract_features(Net(), data, layers=LAYERS, input_size=32)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, DataError) or name == "Dataset"


# -- the module comes back as it was given ----------------------------------------------------


def state(net):
    return {
        "modes": {n: m.training for n, m in net.named_modules()},
        "tensors": {
            n: (
                t.device,
                t.stride(),
                t.is_contiguous(),
                id(t) if isinstance(t, nn.Parameter) else 0,
            )
            for n, t in list(net.named_parameters()) + list(net.named_buffers())
        },
        "values": {k: v.clone() for k, v in net.state_dict().items()},
        "hooks": [
            (n, list(m._forward_hooks), list(m._forward_pre_hooks)) for n, m in net.named_modules()
        ],
    }


def assert_same_state(net, before):
    after = state(net)
    assert after["modes"] == before["modes"]
    assert after["tensors"] == before["tensors"]
    assert after["hooks"] == before["hooks"]
    for k, v in before["values"].items():  # eval mode: BatchNorm statistics not updated
        assert torch.equal(after["values"][k], v), k


def gradient(net, x):
    from rcvlab.probe.sensitivity import gradient_pass

    return gradient_pass(net, x, "conv1", 2, device="cpu")


CALLS = {
    "extract (channels-last)": lambda net, x: extract_features(net, x, layers=LAYERS),
    "extract (uint8, corrected GAP)": lambda net, x: extract_features(
        net,
        torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        layers=LAYERS,
        input_size=32,
        pooling="corrected-gap",
    ),
    "extract (DataLoader)": lambda net, x: extract_features(
        net, DataLoader(TensorDataset(x), batch_size=3), layers=LAYERS
    ),
    "layer_dims": lambda net, x: layer_dims(load_model(net, input_size=32, layers=LAYERS)),
    "gradient_pass": gradient,
}


@pytest.mark.parametrize("call", list(CALLS))
def test_module_in_train_mode_comes_back_as_it_was(call, imgs):
    x, want = by_hand(imgs)
    net = Net().train()
    net.conv2.eval()  # a submodule frozen in eval mode stays so
    user_hook = net.fc.register_forward_hook(lambda *a: None)
    assert all(p.is_contiguous() for p in net.parameters())
    before = state(net)
    out = CALLS[call](net, x)
    assert_same_state(net, before)
    assert net.training and not net.conv2.training and net.bn.training
    assert list(net.fc._forward_hooks) == [user_hook.id]
    if call.startswith("extract (channels"):
        check(out, want)  # computed in eval mode (running statistics), not train mode


def test_channels_last_module_stays_channels_last(imgs):
    x, want = by_hand(imgs)
    net = Net().to(memory_format=torch.channels_last)
    before = state(net)
    check(extract_features(net, x, layers=LAYERS, channels_last=False), want)
    assert_same_state(net, before)
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_module_is_restored_after_an_interruption(imgs):
    x, _ = by_hand(imgs)
    net = Net().train()
    before = state(net)

    def batches():
        yield x[:2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(net, batches(), layers=LAYERS)
    assert_same_state(net, before)


def test_gradients_of_a_train_mode_module_are_computed_in_eval_mode(imgs):
    """The gradient pass of a module left in train mode equals that of its eval copy."""
    x, _ = by_hand(imgs)
    net = Net().train()
    g = gradient(net, x)
    ref = Net().eval()
    u = torch.zeros(len(x), 4, requires_grad=True)
    h = ref.conv1(x) + u[:, :, None, None]
    logits = ref.fc(ref.conv2(torch.relu(ref.bn(h))).mean(dim=(2, 3)))
    (want,) = torch.autograd.grad(logits[:, 2].sum(), u)
    np.testing.assert_allclose(g.gradients, want.double().numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
def test_module_goes_back_to_cpu_after_a_cuda_run(imgs):
    x, want = by_hand(imgs)
    net = Net().train()
    before = state(net)
    f = extract_features(net, x.cuda(), layers=LAYERS, device="cuda")
    check(f, want, atol=1e-4)
    g = gradient_pass_cuda(net, x)
    assert np.isfinite(g.gradients).all()
    assert_same_state(net, before)
    assert all(p.device.type == "cpu" for p in net.parameters())


def gradient_pass_cuda(net, x):
    from rcvlab.probe.sensitivity import gradient_pass

    return gradient_pass(net, x, "conv1", 2, device="cuda")
