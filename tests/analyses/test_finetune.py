"""finetune: paper 004's training of a single-logit network, on a planted separable task."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from rcvlab import load_model
from rcvlab.analyses.finetune import FinetuneResult, finetune
from rcvlab.data.base import ArrayImageSet, TensorImageSet
from rcvlab.errors import DataError, RcvlabError
from rcvlab.models import binary_head, is_binary
from rcvlab.report.finetune import (
    FINETUNE_FILES,
    finetune_section,
    read_finetune_run,
    write_finetune_run,
)
from rcvlab.viz.finetune import plot_finetune


class TinyCNN(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.drop(self.pool(self.relu(self.bn(self.conv(x)))).flatten(1)))


class CountingSet(ArrayImageSet):
    """Counts image reads (to check that bad options fail before any work)."""

    loads = 0

    def _load(self, i):
        CountingSet.loads += 1
        return super()._load(i)


def blobs(n=60, size=40, seed=0, groups=True, classes=("tumour", "normal")):
    """Bright vs dark discs on a mid-grey noisy background: a separable task."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ims, cls, grp = [], [], []
    for i in range(n):
        bright = i % 2 == 0
        im = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
        cy, cx = rng.integers(10, size - 10, 2)
        r = rng.integers(5, 9)
        im[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 230 if bright else 25
        ims.append(im)
        cls.append(classes[0] if bright else classes[1])
        grp.append(f"region{i % 10}")
    return CountingSet(ims, classes=cls, groups=grp if groups else None, source="blobs")


def tiny_model(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return load_model(TinyCNN(dropout).eval(), input_size=32, layers=["conv", "pool"])


def tiny_binary(**kw):
    return binary_head(tiny_model(**kw), head="fc")


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def run(data):
    model = binary_head(tiny_model(), head="fc")
    return finetune(model, data, epochs=6, lr=0.05, batch_size=16, seed=0, device="cpu")


def _mann_whitney_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_planted_task_learned(run):
    assert run.val_auc > 0.95
    assert run.val_accuracy >= 0.9
    h = run.history
    assert h["train_loss"][-1] < 0.8 * h["train_loss"][0]
    assert run.best_epoch == int(np.argmax(h["val_auc"])) + 1
    assert run.positive == "tumour" and run.negative == "normal"


def test_metrics_recomputed_from_predictions(run):
    y, p = np.asarray(run.val_labels), np.asarray(run.val_probabilities)
    assert set(y) == {0, 1} and len(y) == run.n_val == len(run.val_ids)
    assert run.val_auc == pytest.approx(_mann_whitney_auc(y, p), abs=1e-12)
    assert run.val_auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert run.val_accuracy == pytest.approx(np.mean((p > 0.5) == (y == 1)))
    k = run.best_epoch - 1
    assert run.history["val_auc"][k] == run.val_auc
    assert run.history["val_accuracy"][k] == run.val_accuracy
    # validation loss of the kept epoch, by hand
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert run.history["val_loss"][k] == pytest.approx(bce, rel=1e-6)


def test_split_group_disjoint_and_stratified(run, data):
    group = dict(zip(data.ids, data.groups, strict=True))
    cls = dict(zip(data.ids, data.classes, strict=True))
    tg, vg = {group[i] for i in run.train_ids}, {group[i] for i in run.val_ids}
    assert not tg & vg
    assert {cls[i] for i in run.train_ids} == {cls[i] for i in run.val_ids} == {"tumour", "normal"}
    assert sorted(run.train_ids + run.val_ids) == sorted(data.ids)
    assert run.meta["split"] == "group"
    no_groups = blobs(n=40, groups=False)
    r = finetune(tiny_binary(), no_groups, epochs=1, val_fraction=0.25, device="cpu", augment=False)
    assert r.meta["split"] == "stratified" and r.n_val == 10
    assert sum(c == "tumour" for c in no_groups.classes[np.isin(no_groups.ids, r.val_ids)]) == 5


def test_lr_schedule_is_keras_decay_not_weight_decay(data):
    # 48 training images, batch 16: 3 updates per epoch; lr read from the optimizer
    lr, decay = 0.01, 0.5
    r = finetune(tiny_binary(), data, epochs=3, lr=lr, decay=decay, batch_size=16,
                 device="cpu", augment=False)  # fmt: skip
    assert r.n_train == 48
    steps = 3 * np.arange(1, 4)
    np.testing.assert_allclose(r.history["lr"], lr / (1 + decay * steps), rtol=1e-12)


def test_update_is_nesterov_sgd_without_weight_decay():
    # One update (all training images in one batch, no augmentation, no dropout): by hand,
    # SGD with Nesterov momentum m starts with buffer g, so p1 = p0 - lr * (g + m * g);
    # weight decay would add lr * wd * p0.
    data = blobs(n=20, size=32)
    m = binary_head(tiny_model(dropout=0.0), head="fc")
    lr, mom = 0.01, 0.9
    r = finetune(m, data, epochs=1, lr=lr, momentum=mom, batch_size=64, device="cpu",
                 augment=False, val_fraction=0.5)  # fmt: skip
    index = [data.ids.index(i) for i in r.train_ids]
    x = m.preprocessing([data.load(i) for i in index])
    y = torch.tensor([float(data.classes[i] == "tumour") for i in index])
    net = m.module
    net.train()
    loss = nn.functional.binary_cross_entropy_with_logits(net(x).reshape(-1), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    net.eval()
    named = dict(r.model.module.named_parameters())
    for (name, p0), g in zip(net.named_parameters(), grads, strict=True):
        want = p0.detach() - lr * (1 + mom) * g
        torch.testing.assert_close(named[name].detach(), want, rtol=1e-4, atol=1e-6)


def test_same_seed_same_run_other_seed_differs(run, data):
    model = binary_head(tiny_model(), head="fc")
    again = finetune(model, data, epochs=6, lr=0.05, batch_size=16, seed=0, device="cpu")
    for k in run.history:
        np.testing.assert_array_equal(run.history[k], again.history[k])
    a, b = run.model.module.state_dict(), again.model.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = finetune(model, data, epochs=6, lr=0.05, batch_size=16, seed=1, device="cpu")
    assert not np.array_equal(run.history["train_loss"], other.history["train_loss"])


def test_model_and_global_rng_untouched(data):
    m = binary_head(tiny_model(), head="fc")
    m.module.train()
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    rng = torch.get_rng_state()
    r = finetune(m, data, epochs=1, lr=0.05, device="cpu")
    assert m.module.training and all(mod.training for mod in m.module.modules())
    assert all(torch.equal(before[k], v) for k, v in m.module.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert not r.model.module.training and r.model.weights == "finetuned"
    assert r.model.weights_id.startswith("finetuned:")


def test_channels_last_same_training(data):
    opts = {"epochs": 1, "lr": 0.05, "batch_size": 16, "device": "cpu", "augment": False}
    a = finetune(tiny_binary(dropout=0.0), data, **opts)
    b = finetune(tiny_binary(dropout=0.0), data, channels_last=True, **opts)
    np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=1e-4)
    assert b.meta["options"]["channels_last"] is True
    w = b.model.module.conv.weight
    assert w.is_contiguous()
    torch.testing.assert_close(w, a.model.module.conv.weight, rtol=1e-4, atol=1e-5)


def test_head_added_when_not_binary(data):
    m = tiny_model()
    with pytest.raises(RcvlabError, match="head='fc'"):
        finetune(m, data, epochs=1, device="cpu")
    timm_like = load_model("timm:resnet18", "random", input_size=32)
    r = finetune(timm_like, blobs(n=20), epochs=1, batch_size=8, device="cpu", augment=False)
    assert is_binary(r.model) and r.model.categories == ("tumour",)
    assert r.model.module.fc.out_features == 1


def test_run_folder_and_reload(run, tmp_path):
    files = write_finetune_run(tmp_path, run)
    assert [p.name for p in files.values()] == list(FINETUNE_FILES)
    assert all(p.is_file() for p in files.values())
    summary = files["summary.md"].read_text()
    assert "0.87" in summary and "0.97" in summary and "paper" in summary
    assert f"{run.val_auc:.3f}" in summary
    history = np.genfromtxt(files["history.csv"], delimiter=",", names=True)
    np.testing.assert_allclose(history["val_auc"], run.history["val_auc"])
    # model.pt rebuilds the same network
    reloaded = load_model(TinyCNN(), files["model.pt"], input_size=32, layers=["conv", "pool"])
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(run.model.module(x), reloaded.module.eval()(x))
    assert reloaded.categories == ("tumour",) and is_binary(reloaded)
    back = FinetuneResult.from_json(files["finetune.json"])
    assert back.model is None and back.val_auc == run.val_auc
    assert read_finetune_run(tmp_path).model is None  # a custom module is not rebuilt by name
    with pytest.raises(RcvlabError, match="no model"):
        write_finetune_run(tmp_path, back)


@pytest.mark.slow
def test_registry_model_run_reloads_by_name(tmp_path):
    data = blobs(n=24, size=32)
    m = load_model("mobilenet_v2", "random", input_size=32)
    r = finetune(m, data, epochs=1, batch_size=8, device="cpu", augment=False)
    write_finetune_run(tmp_path, r)
    back = read_finetune_run(tmp_path)
    again = load_model("mobilenet_v2", tmp_path / "model.pt")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = r.model.module(x)
        assert torch.equal(want, again.module(x)) and torch.equal(want, back.model.module(x))
    assert again.input_size == 32 and again.layers[-2:] == ["logits", "sigmoid"]


def test_figure_and_section(run):
    fig = plot_finetune(run)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    html = finetune_section(run)
    assert "data:image/png;base64," in html and "0.97" in html and "<table" in html
    assert "tumour vs normal" in html


def test_section_escapes_names(data):
    evil = blobs(n=20, classes=("<b>t</b>", "n&m"))
    m = binary_head(tiny_model(), head="fc", positive="<b>t</b>")
    r = finetune(m, evil, positive="<b>t</b>", epochs=1, device="cpu", augment=False)
    html = finetune_section(r)
    assert "<b>t</b>" not in html and "&lt;b&gt;t&lt;/b&gt;" in html


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"decay": -1e-6}, "decay"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": 0}, "momentum"),
        ({"val_fraction": 0}, "val_fraction"),
        ({"val_fraction": 1}, "val_fraction"),
        ({"hue": 0.6}, "hue"),
        ({"brightness": -0.1}, "brightness"),
        ({"augment": "yes"}, "augment"),
        ({"seed": -1}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"positive": "cancer"}, "'cancer' is not in the data"),
        ({"progress": 3}, "progress"),
    ],
)
def test_bad_options_one_line_before_any_work(options, match):
    data = blobs(n=20)
    CountingSet.loads = 0
    model = binary_head(tiny_model(), head="fc", positive=options.get("positive", "tumour"))
    with pytest.raises(RcvlabError, match=match) as e:
        finetune(model, data, **options)
    _one_line(e)
    assert CountingSet.loads == 0


def test_bad_data_one_line():
    m = binary_head(tiny_model(), head="fc")
    one = blobs(n=10, classes=("tumour", "tumour"))
    with pytest.raises(DataError, match="'tumour'") as e:
        finetune(m, one, device="cpu")
    assert "exactly 2 classes" in _one_line(e)
    three = ArrayImageSet(blobs(n=9).images, classes=["a", "b", "tumour"] * 3)
    with pytest.raises(DataError, match="'a', 'b', 'tumour'") as e:
        finetune(m, three, device="cpu")
    _one_line(e)
    none = ArrayImageSet(blobs(n=4).images)
    with pytest.raises(DataError, match="class per image") as e:
        finetune(m, none, device="cpu")
    _one_line(e)
    lonely = blobs(n=20)
    lonely.groups = np.where(lonely.classes == "tumour", "slideA", lonely.groups)
    with pytest.raises(DataError, match="only 1 group") as e:
        finetune(m, lonely, device="cpu")
    _one_line(e)
    tensor = TensorImageSet(torch.zeros(4, 3, 8, 8), classes=["tumour", "n"] * 2)
    with pytest.raises(DataError, match="uint8") as e:
        finetune(m, tensor, device="cpu")
    _one_line(e)
    with pytest.raises(RcvlabError, match="single logit is for 'tumour'") as e:
        finetune(m, blobs(n=10, classes=("x", "y")), positive="x", device="cpu")
    _one_line(e)


def test_divergence_is_one_line(data):
    m = binary_head(tiny_model(), head="fc")
    with pytest.raises(RcvlabError, match="diverged") as e:
        finetune(m, data, epochs=3, lr=1e30, device="cpu", augment=False)
    _one_line(e)


@pytest.mark.gpu
def test_finetune_on_cuda(data):
    model = binary_head(tiny_model(), head="fc")
    r = finetune(model, data, epochs=6, lr=0.05, batch_size=16, device="cuda", channels_last=True)
    assert r.meta["device"].startswith("cuda") and r.val_auc > 0.95
    p = next(r.model.module.parameters())
    assert p.device.type == "cpu" and p.is_contiguous()
    assert next(model.module.parameters()).device.type == "cpu"
