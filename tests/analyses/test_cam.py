"""grad-CAM / grad-CAM++ (rcvlab.analyses.cam), its nuclei mass, paired test, figure and run.

Oracles: captum's LayerGradCam, the maps recomputed by hand from activations and gradients
(torch autograd, the formulas of Selvaraju et al. and Chattopadhyay et al.), pytorch-grad-cam
called directly, scipy's Wilcoxon test, and planted images whose answer is known by hand.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats

from rcvlab.analyses.cam import (
    CamComparison,
    CamResult,
    cam,
    compare_cams,
    fallback_target,
    last_conv_layer,
)
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.models.registry import load_model


def _example_module():
    path = Path(__file__).parents[1] / "examples" / "ex_cam.py"
    spec = importlib.util.spec_from_file_location("rcvlab_test_ex_cam", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EX = _example_module()
# the module, not the function of the same name that rcvlab.analyses exports
cam_mod = importlib.import_module("rcvlab.analyses.cam")
UNIT = {"mean": (0, 0, 0), "std": (1, 1, 1)}


def planted_model(kernel: int = 1, bias: float = -0.3):
    return load_model(EX.planted(kernel, bias).eval(), input_size=32, **UNIT)


class RandomNet(nn.Module):
    """Two random 3x3 convolutions (the second at half resolution), GAP, three classes."""

    def __init__(self, n_out: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, n_out)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        h = self.act(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def random_images(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _inputs(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _minmax(a: torch.Tensor) -> torch.Tensor:
    lo = a.amin(dim=(-2, -1), keepdim=True)
    hi = a.amax(dim=(-2, -1), keepdim=True)
    return (a - lo) / (1e-7 + hi - lo)


# -- planted detector ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_maps_peak_inside_the_red_blob(method):
    images, masks = EX.blob_images(n=6, seed=3)
    r = cam(planted_model(), images, layer="2", method=method, target=1, device="cpu")
    assert r.maps.shape == (6, 32, 32) and r.normalised.shape == (6, 32, 32)
    for i in range(1, 6):
        y, x = np.unravel_index(np.argmax(r.maps[i]), (32, 32))
        assert masks[i, y, x], f"image {i}: peak at {(y, x)} outside the blob"
        assert r.normalised[i].max() == pytest.approx(1.0, abs=1e-3)
    assert not r.maps[0].any()  # no red: nothing to explain


# -- independent oracles ---------------------------------------------------------------------


def test_gradcam_equals_captum_layer_gradcam():
    from captum.attr import LayerGradCam

    net = RandomNet().eval()
    model = load_model(net, input_size=32, **UNIT)
    images = random_images(4)
    r = cam(model, images, layer="act", method="gradcam", target=2, device="cpu")
    x = _inputs(images)
    attr = LayerGradCam(net, net.act).attribute(x, target=2, relu_attributions=True).detach()
    assert attr.shape == (4, 1, 16, 16)
    np.testing.assert_allclose(r.low[:, 0], attr[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    # grad-cam's normalisation: min-max, bilinear x2 (half-pixel centres), min-max again
    up = F.interpolate(_minmax(attr), size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(r.normalised, _minmax(up)[:, 0].numpy(), atol=1e-4)
    raw_up = F.interpolate(attr, size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(r.maps, raw_up[:, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_raw_maps_by_hand_from_activations_and_gradients():
    net = RandomNet(seed=1).eval()
    model = load_model(net, input_size=32, **UNIT)
    images = random_images(3, seed=1)
    r = cam(model, images, layer="conv2", method="gradcam,gradcam++", target=0, device="cpu")
    x = _inputs(images[1:2])
    store = {}
    h = net.conv2.register_forward_hook(lambda m, i, o: store.update(a=o))
    logits = net(x)
    h.remove()
    (g,) = torch.autograd.grad(logits[0, 0], store["a"])
    a, g = store["a"].detach()[0].double(), g[0].double()
    grad_cam = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0))
    # Chattopadhyay et al., eq. 19 with exp(S) = the linear score: alpha from g^2, g^3
    g2, g3 = g**2, g**3
    alpha = g2 / (2 * g2 + a.sum(dim=(1, 2))[:, None, None] * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    w_pp = (torch.relu(g) * alpha).sum(dim=(1, 2))
    grad_cam_pp = torch.relu((w_pp[:, None, None] * a).sum(0))
    np.testing.assert_allclose(r.low[1, 0], grad_cam.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.low[1, 1], grad_cam_pp.numpy(), rtol=1e-4, atol=1e-6)
    up = F.interpolate(grad_cam[None, None], size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(r.maps_for("gradcam")[1], up[0, 0].numpy(), rtol=1e-4, atol=1e-6)
    assert r.target_classes.tolist() == [0, 0, 0]
    p = torch.softmax(logits.detach(), 1)[0, 0].item()
    assert r.probs[1] == pytest.approx(p, rel=1e-6)


def test_normalised_maps_equal_the_library_called_directly():
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = RandomNet(seed=2).eval()
    model = load_model(net, input_size=32, **UNIT)
    images = random_images(5, seed=2)
    r = cam(model, images, layer="act", method=["gradcam++", "gradcam"], batch_size=2, device="cpu")
    assert r.methods == ("gradcam", "gradcam++")  # stored in METHODS order
    x = _inputs(images)
    targets = [ClassifierOutputTarget(int(k)) for k in r.target_classes]
    for name, cls in (("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)):
        with cls(model=net, target_layers=[net.act]) as lib:
            expected = lib(input_tensor=x, targets=targets)
        np.testing.assert_allclose(r.normalised_for(name), expected, atol=1e-5)


# -- the model comes back as it was --------------------------------------------------------------


def _hooks(module: nn.Module) -> int:
    names = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
    )
    return sum(len(getattr(m, n, {})) for m in module.modules() for n in names)


def test_no_hook_left_and_model_state_restored():
    net = RandomNet(seed=3)
    net.train()
    net.conv1.eval()  # a mixed mode must survive
    net.conv2.weight.requires_grad_(False)
    net.fc.weight.grad = torch.full_like(net.fc.weight, 7.0)
    model = load_model(net, input_size=32, **UNIT)
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cam(model, random_images(3), layer="act", method="gradcam,gradcam++", device="cpu")
    assert _hooks(net) == 0
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert torch.equal(net.fc.weight.grad, torch.full_like(net.fc.weight, 7.0))
    assert net.conv1.weight.grad is None
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    # also after an error in the middle of the pass
    with pytest.raises(RcvlabError):
        cam(model, random_images(2), layer="fc", device="cpu")
    assert _hooks(net) == 0
    assert [m.training for m in net.modules()] == modes


# -- bad input: one line each, before any image is read -----------------------------------------


@pytest.fixture
def no_images(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("images were read before the options were checked")

    monkeypatch.setattr(cam_mod, "load_batch", fail)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_input_is_one_line_before_any_work(no_images):
    images = random_images(2)
    model = replace(load_model(RandomNet(), input_size=32, **UNIT), categories=("a", "b", "c"))
    with pytest.raises(RcvlabError, match="Target class 3 is out of range") as e:
        cam(model, images, target=3, device="cpu")
    _one_line(e)
    with pytest.raises(UnknownNameError, match="Unknown target class 'tumour'") as e:
        cam(model, images, target="tumour", device="cpu")
    _one_line(e)
    with pytest.raises(UnknownNameError, match="Unknown layer 'mixed99'") as e:
        cam(model, images, layer="mixed99", device="cpu")
    _one_line(e)
    with pytest.raises(UnknownNameError, match="Unknown CAM method 'scorecam'") as e:
        cam(model, images, method="gradcam,scorecam", device="cpu")
    _one_line(e)
    with pytest.raises(RcvlabError, match="top must be an integer >= 1") as e:
        cam(model, images, top=0, device="cpu")
    with pytest.raises(RcvlabError, match="min_prob must be in"):
        cam(model, images, min_prob=1.5, device="cpu")
    with pytest.raises(RcvlabError, match="out of range: the data has 2 images"):
        cam(model, images, indices=[0, 5], device="cpu")
    with pytest.raises(DataError, match="3 nuclei masks for 2 images"):
        cam(model, images, masks=np.zeros((3, 32, 32), bool), device="cpu")
    with pytest.raises(RcvlabError, match="softmax"):
        cam(model, images, layer="softmax", device="cpu")
    # without class names the range is known after one blank image, still before any image
    plain = load_model(RandomNet(), input_size=32, **UNIT)
    with pytest.raises(RcvlabError, match="network has 3 classes") as e:
        cam(plain, images, target=3, device="cpu")
    _one_line(e)
    with pytest.raises(RcvlabError, match="not a spatial map"):
        cam(plain, images, layer="fc", device="cpu")


# -- single logit (a binary head) --------------------------------------------------------------


def binary_model():
    net = EX.planted()
    fc = nn.Linear(2, 1)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[3.0, -1.0]]))
        fc.bias.fill_(-0.2)
    net[5] = fc
    model = load_model(net.eval(), input_size=32, **UNIT)
    return replace(model, categories=("tumour",)), net


def test_single_logit_targets_and_probabilities():
    model, net = binary_model()
    images, _ = EX.blob_images(n=4, seed=5)
    with torch.no_grad():
        logit = net(_inputs(images))[:, 0].double()
    pos = cam(model, images, layer="1", method="gradcam,gradcam++", target="tumour", device="cpu")
    one = cam(model, images, layer="1", method="gradcam,gradcam++", target=1, device="cpu")
    neg = cam(model, images, layer="1", target="non-tumour", device="cpu")
    zero = cam(model, images, layer="1", target=0, device="cpu")
    np.testing.assert_allclose(pos.probs, torch.sigmoid(logit).numpy(), rtol=1e-6)
    np.testing.assert_allclose(neg.probs, 1 - torch.sigmoid(logit).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(pos.low, one.low)
    np.testing.assert_array_equal(neg.low, zero.low)
    assert pos.target_names == ("tumour",) * 4 and neg.target_names == ("non-tumour",) * 4
    # the red channel raises the logit: its map sits on the blob; the negative target's
    # weight on it is negative, so its grad-CAM map is the green channel's (weight +1)
    assert pos.maps[1].max() > 0
    assert not np.allclose(pos.low, neg.low)
    with pytest.raises(RcvlabError, match="single logit: use 1"):
        cam(model, images, target=2, device="cpu")
    with pytest.raises(UnknownNameError, match="'tumour' \\(1\\), 'non-tumour' \\(0\\)"):
        cam(model, images, target="normal", device="cpu")
    assert fallback_target(model, "tumour") == "tumour"
    imagenet_like = replace(model, categories=("cat", "dog", "fish"))
    assert fallback_target(imagenet_like, "tumour") == "top"


# -- selection: one forward over all, backward only for the kept ----------------------------------


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.with_grad = 0
        self.without = 0

    def forward(self, x):
        out = self.inner(x)
        if out.requires_grad:
            self.with_grad += x.shape[0]
        else:
            self.without += x.shape[0]
        return out


def test_top_and_min_prob_select_by_probability_without_wasted_backward_passes():
    net = Counting(EX.planted())
    model = load_model(net.eval(), input_size=32, **UNIT)
    images, _ = EX.blob_images(n=10, seed=7)
    with torch.no_grad():
        p = torch.softmax(net.inner(_inputs(images)), 1)[:, 1].numpy()
    net.with_grad = net.without = 0
    r = cam(model, images, layer="inner.2", top=3, batch_size=4, device="cpu")
    order = np.argsort(-p, kind="stable")
    assert r.indices.tolist() == order[:3].tolist()
    np.testing.assert_allclose(r.probs, p[order[:3]], rtol=1e-5)
    assert net.with_grad == 3  # backward passes only for the kept images
    assert net.without == 10 + 1  # the scoring pass, and the blank image checking the layer
    threshold = float(np.sort(p)[-5])
    r = cam(model, images, layer="inner.2", min_prob=threshold, device="cpu")
    assert sorted(r.indices.tolist()) == sorted(np.flatnonzero(p >= threshold).tolist())
    assert np.all(np.diff(r.probs) <= 0)  # highest first
    sub = cam(model, images, layer="inner.2", indices=[4, 2, 9], device="cpu")
    assert sub.indices.tolist() == [4, 2, 9]
    assert sub.ids == ("array[4]", "array[2]", "array[9]")
    with pytest.raises(DataError, match=r"No image has P\(class 1\) >= 0\.999") as e:
        cam(model, images, layer="inner.2", min_prob=0.999, device="cpu")
    _one_line(e)


# -- nuclei mass -------------------------------------------------------------------------------


def test_nuclei_mass_known_by_hand():
    # layer "1" is at the input resolution and the detector is a 1x1 filter: the normalised
    # map is 1 on the red square and 0 elsewhere, exactly
    images = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
    images[:, 8:16, 4:20] = (255, 0, 0)  # 8 x 16 = 128 px
    full = np.zeros((2, 32, 32), bool)
    full[:, 8:16, 4:20] = True
    left = np.zeros((2, 32, 32), bool)
    left[:, 8:16, 4:12] = True  # half the square
    left[:, 24:30, 24:30] = True  # and 36 px of grey
    masks = np.stack([full[0], left[1]])
    r = cam(planted_model(), images, layer="1", method="gradcam,gradcam++", masks=masks)
    np.testing.assert_allclose(r.nuclei_fraction, [128 / 1024, (64 + 36) / 1024])
    np.testing.assert_allclose(r.nuclei_mass, [[1.0, 1.0], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(r.nuclei_masks, masks)
    frame = r.to_frame()
    assert frame["excess_gradcam"].tolist() == pytest.approx([1 - 0.125, 0.5 - 100 / 1024])


def test_masks_from_the_data_resized_to_the_input(tmp_path):
    from PIL import Image

    images = np.full((2, 64, 64, 3), 128, dtype=np.uint8)
    images[:, 16:32, 8:40] = (255, 0, 0)
    paths = []
    for i in range(2):
        m = np.zeros((64, 64), np.uint8)
        m[16:32, 8:40] = 255
        paths.append(str(tmp_path / f"m{i}.png"))
        Image.fromarray(m).save(paths[-1])
    data = ArrayImageSet(list(images), masks=paths, classes=["tumour", "non-tumour"])
    r = cam(planted_model(), data, layer="1")  # 64 px images, 32 px input
    assert r.meta["nuclei_source"] == "the data's nuclei masks"
    np.testing.assert_allclose(r.nuclei_fraction, [128 / 1024] * 2)
    np.testing.assert_allclose(r.nuclei_mass[:, 0], [1.0, 1.0], atol=1e-6)
    assert r.classes == ("tumour", "non-tumour")
    # without masks: segmentation of the image (or NaN when rcvlab cannot segment)
    r = cam(planted_model(), images, layer="1")
    assert r.meta["nuclei_source"].startswith(("rcvlab.measures.segment_nuclei", "none"))
    off = cam(planted_model(), images, layer="1", nuclei=False)
    assert np.isnan(off.nuclei_mass).all() and not off.nuclei_masks.any()


# -- the paired test -------------------------------------------------------------------------------


def _pair(masks_seed: int | None = None, n: int = 12):
    images, masks = EX.blob_images(n=n, seed=11)
    if masks_seed is not None:  # masks unrelated to the blobs: differences of both signs
        rng = np.random.default_rng(masks_seed)
        masks = rng.random((n, 32, 32)) < rng.uniform(0.1, 0.6, (n, 1, 1))
    opts = {"layer": "2", "method": "gradcam,gradcam++", "masks": masks, "device": "cpu"}
    a = cam(planted_model(5, 0.4), images, **opts)
    b = cam(planted_model(), images, indices=a.indices, **opts)
    return a, b


@pytest.mark.parametrize("masks_seed", [None, 3])
def test_wilcoxon_against_scipy_from_stored_maps_and_masks(masks_seed):
    a, b = _pair(masks_seed)
    c = compare_cams(a, b)
    assert isinstance(c, CamComparison)
    for j, m in enumerate(c.methods):
        excess = {}
        for name, r in (("a", a), ("b", b)):
            vals = []
            for i in range(len(r)):
                norm = r.normalised_for(m)[i].astype(np.float64)
                mask = r.nuclei_masks[i]
                if norm.sum() == 0:
                    vals.append(np.nan)
                    continue
                vals.append(norm[mask].sum() / norm.sum() - mask.mean())
            excess[name] = np.array(vals)
        np.testing.assert_allclose(c.excess_reference[:, j], excess["a"], rtol=1e-9)
        np.testing.assert_allclose(c.excess_other[:, j], excess["b"], rtol=1e-9)
        d = excess["b"] - excess["a"]
        d = d[np.isfinite(d)]
        ref = stats.wilcoxon(d)
        s = c.stats[m]
        assert s["n"] == len(d) == 11  # image 0 has no blob: NaN, left out
        assert s["statistic"] == pytest.approx(ref.statistic)
        assert s["p_value"] == pytest.approx(ref.pvalue)
        # Kerby's simple difference formula: r = 4 T+ / (n (n + 1)) - 1, ranks of |d|
        ranks = np.empty(len(d))
        ranks[np.argsort(np.abs(d))] = np.arange(1, len(d) + 1)  # no ties in these values
        t_plus = ranks[d > 0].sum()
        assert s["rank_biserial"] == pytest.approx(4 * t_plus / (len(d) * (len(d) + 1)) - 1)
        assert s["median_difference"] == pytest.approx(np.median(d))
    if masks_seed is None:  # masks on the blobs: the sharp detector has more mass on them
        assert all(c.stats[m]["rank_biserial"] == 1.0 for m in c.methods)
    else:
        assert any(-1 < c.stats[m]["rank_biserial"] < 1 for m in c.methods)


def test_compare_needs_the_same_images():
    images, masks = EX.blob_images(n=6, seed=2)
    a = cam(planted_model(), images, layer="2", masks=masks, device="cpu")
    b = cam(planted_model(), images, layer="2", masks=masks, indices=[1, 2, 3], device="cpu")
    with pytest.raises(DataError, match="different images") as e:
        compare_cams(a, b)
    _one_line(e)


# -- layers of real architectures ----------------------------------------------------------------


def test_last_conv_layer_of_inception_mobilenet_efficientnet():
    import timm
    import torchvision

    inc = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=False)
    assert last_conv_layer(inc) == "Mixed_7c"
    assert last_conv_layer(torchvision.models.mobilenet_v2()) == "features.18"
    assert last_conv_layer(timm.create_model("tf_efficientnet_lite0")) == "bn2"
    assert last_conv_layer(nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU())) == "2"
    with pytest.raises(RcvlabError, match=r"no nn\.Conv2d"):
        last_conv_layer(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layer", "module"),
    [("mobilenet_v2", "features.18", "features.18"), ("efficientnet_lite0", "head", "bn2")],
)
def test_default_layer_on_registered_models_at_random_weights(name, layer, module):
    model = load_model(name, "random", input_size=64)
    r = cam(model, random_images(2, size=64), method="gradcam,gradcam++", target="top")
    assert (r.layer, r.module) == (layer, module)
    assert r.maps.shape == (2, 64, 64) and r.low.shape[:2] == (2, 2)
    assert np.isfinite(r.maps).all() and (r.maps >= 0).all()
    assert r.target_names[0] in model.categories
    assert _hooks(model.module) == 0


# -- figure and run folder ------------------------------------------------------------


@pytest.mark.slow
def test_plot_write_run_and_section(tmp_path):
    from rcvlab.report.cam import cam_section, write_cam_run
    from rcvlab.viz.cam import plot_cams

    a, b = _pair(n=3)
    fig = plot_cams(b)
    assert len([ax for ax in fig.axes if ax.images]) == 3 * 3
    fig = plot_cams(b, compare=a)
    assert len([ax for ax in fig.axes if ax.images]) == 3 * 5
    with pytest.raises(DataError):
        plot_cams(b, compare=cam(planted_model(), EX.blob_images(n=2)[0], device="cpu"))
    files = write_cam_run(tmp_path, b, compare=a)
    for name in ("cams.png", "cams.npz", "cams.csv", "summary.md", "cam.json", "comparison.json"):
        assert files[name].is_file(), name
    with np.load(files["cams.npz"]) as z:
        np.testing.assert_array_equal(z["maps_gradcampp"], b.maps_for("gradcam++"))
        np.testing.assert_array_equal(z["normalised_gradcam"], b.normalised_for("gradcam"))
        np.testing.assert_array_equal(z["reference_maps_gradcam"], a.maps_for("gradcam"))
        assert z["maps_gradcam"].dtype == np.float32
        assert z["ids"].tolist() == list(b.ids)
    csv = pd.read_csv(files["cams.csv"])
    assert {"id", "class", "prob", "nuclei_fraction", "nuclei_mass_gradcam++"} <= set(csv.columns)
    assert "reference_nuclei_mass_gradcam" in csv.columns
    summary = files["summary.md"].read_text()
    assert "Wilcoxon" in summary and "rank-biserial" in summary
    again = CamResult.from_json(files["cam.json"])
    np.testing.assert_array_equal(again.maps, b.maps)
    np.testing.assert_array_equal(again.normalised, b.normalised)
    assert json.loads(files["comparison.json"].read_text())["kind"] == "cam_comparison"
    html = cam_section(b, compare=a)
    assert html.startswith("<h2>") and "data:image/png;base64," in html and "rank-biserial" in html
    evil = replace(b, model="<script>")
    assert "<script>" not in cam_section(evil)


# -- GPU ------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_maps_equal_cpu_maps_and_the_model_stays_on_its_device():
    net = RandomNet(seed=4).eval()
    model = load_model(net, input_size=32, **UNIT)
    images = random_images(6, seed=4)
    cpu = cam(model, images, layer="act", method="gradcam,gradcam++", device="cpu")
    gpu = cam(model, images, layer="act", method="gradcam,gradcam++", device="cuda", top=4)
    assert next(net.parameters()).device.type == "cpu"
    assert _hooks(net) == 0
    order = np.argsort(-cpu.probs, kind="stable")[:4]
    assert gpu.indices.tolist() == cpu.indices[order].tolist()
    np.testing.assert_allclose(gpu.low, cpu.low[order], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(gpu.normalised, cpu.normalised[order], atol=1e-3)
