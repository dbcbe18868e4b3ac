"""Activation maximisation (rcvlab.visualize): planted Gabor channels, the Fourier and colour
parametrisation against hand and numpy computations, determinism, the model given back."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from rcvlab.analyses.visualize import (
    PAPER_SCHEDULE,
    VisualizeResult,
    decorrelate_colour,
    fourier_image,
    parse_channels,
    rcv_direction,
    schedule,
    spectrum_shape,
    target_generator,
    to_rgb,
    transform,
    visualize,
)
from rcvlab.data.base import ArrayImageSet
from rcvlab.errors import RcvlabError, UnknownNameError
from rcvlab.models.registry import IMAGENET_MEAN, IMAGENET_STD, load_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster, and much faster on a busy machine (no spinning
    OpenMP workers waiting for a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gabor(k: int, wavelength: float, theta: float, sigma: float) -> np.ndarray:
    """A zero-mean cosine Gabor: stripes across direction ``theta`` (x right, y down)."""
    r = np.arange(k) - k // 2
    y, x = np.meshgrid(r, r, indexing="ij")
    xp = x * np.cos(theta) + y * np.sin(theta)
    yp = -x * np.sin(theta) + y * np.cos(theta)
    g = np.exp(-(xp**2 + yp**2) / (2 * sigma**2)) * np.cos(2 * np.pi * xp / wavelength)
    return g - g.mean()


class GaborNet(nn.Module):
    """Channel i: a Gabor filter of (wavelength, angle) ``filters[i]`` on the grey image
    (the same kernel on R, G and B), then ReLU."""

    def __init__(self, filters: list[tuple[float, float]], k: int = 17, sigma: float = 4.0):
        super().__init__()
        self.conv = nn.Conv2d(3, len(filters), k, bias=False)
        self.relu = nn.ReLU()
        with torch.no_grad():
            for i, (lam, deg) in enumerate(filters):
                g = torch.tensor(gabor(k, lam, math.radians(deg), sigma) / 3, dtype=torch.float32)
                self.conv.weight[i] = g.expand(3, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)).mean(dim=(2, 3))


class SmallNet(nn.Module):
    """conv -> ReLU -> conv2 -> ReLU -> linear, fixed weights (a layer after ``relu`` exists,
    so the forward pass is cut short)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(self.relu(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def small_model():
    return load_model(SmallNet().eval(), input_size=24, layers=["relu", "conv2"])


def dominant_frequency(image: np.ndarray) -> tuple[float, float]:
    """(cycles per pixel, direction in degrees mod 180) of the strongest non-DC peak of the
    grey image's power spectrum (numpy FFT)."""
    g = image.astype(np.float64).mean(axis=-1)
    g -= g.mean()
    power = np.abs(np.fft.fft2(g)) ** 2
    power[0, 0] = 0
    iy, ix = np.unravel_index(power.argmax(), power.shape)
    fy, fx = np.fft.fftfreq(g.shape[0])[iy], np.fft.fftfreq(g.shape[1])[ix]
    return float(np.hypot(fx, fy)), float(np.degrees(np.arctan2(fy, fx)) % 180)


def angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


# -- planted channels ----------------------------------------------------------------------


@pytest.mark.slow
def test_gabor_channels_give_their_frequency_and_orientation():
    filters = [(6.0, 30.0), (4.0, 120.0)]
    model = load_model(GaborNet(filters).eval(), input_size=40, layers=["relu"])
    r = visualize(model, "relu", [0, 1], steps=150, size=40, device="cpu")
    assert r.images.shape == (2, 40, 40, 3) and r.images.dtype == np.uint8
    for (lam, deg), image in zip(filters, r.images, strict=True):
        f, angle = dominant_frequency(image)
        # one FFT bin is 1/40 = 0.025 cycles/px; the filter's band is ~1/(2 pi 4) = 0.04 wide
        assert abs(f - 1 / lam) <= 0.03, (lam, f)
        assert angle_gap(angle, deg) <= 10, (deg, angle)
    # from a random start near grey to a strong response
    assert np.all(r.objective_end > 100 * r.objective_start)
    assert np.all(r.objective_end > 5)


def test_objective_rises_by_a_large_factor():
    model = load_model(GaborNet([(5.0, 0.0)], k=9, sigma=2.0).eval(), input_size=24)
    r = visualize(model, "relu", [0], steps=30, size=24, device="cpu")
    assert r.objective_end[0] > 20 * r.objective_start[0] > 0
    assert r.to_frame().gain.iloc[0] == pytest.approx(r.objective_end[0] - r.objective_start[0])


def test_rcv_mode_moves_the_projection_both_ways():
    # 1x1 conv = identity: the GAP features are the normalised mean R, G, B
    net = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = load_model(net.eval(), input_size=24, layers=["0"])
    r = visualize(model, "0", rcv=np.array([2.0, 0, 0]), steps=40, size=24, lr=0.2, device="cpu")
    assert r.targets == ("+rcv", "-rcv")
    np.testing.assert_allclose(r.rcv_direction, [1, 0, 0])
    red = r.images[..., 0].mean(axis=(1, 2))
    assert red[0] > 200 and red[1] < 55
    assert r.objective_end[0] > r.objective_start[0] + 0.5
    assert r.objective_end[1] > r.objective_start[1] + 0.5  # -rcv: minus the projection rises
    assert list(r.to_frame().channel) == [-1, -1]


# -- parametrisation ------------------------------------------------------------------------


def test_fourier_image_falls_like_one_over_f():
    n = 64
    g = torch.Generator().manual_seed(0)
    spectrum = torch.randn((16, *spectrum_shape(n)), generator=g) * 0.01
    for pixels in (fourier_image(spectrum, n), to_rgb(spectrum, n)):
        x = pixels.double().numpy()  # (16, 3, n, n)
        amp = np.abs(np.fft.fft2(x - x.mean(axis=(2, 3), keepdims=True))).mean(axis=(0, 1))
        fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
        f = np.hypot(fx, fy)
        edges = np.geomspace(2 / n, 0.5, 9)
        centres, means = [], []
        for lo, hi in itertools.pairwise(edges):
            sel = (f >= lo) & (f < hi)
            centres.append(f[sel].mean())
            means.append(amp[sel].mean())
        slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
        assert slope == pytest.approx(-1.0, abs=0.12)


def test_fourier_image_is_numpys_scaled_inverse_rfft():
    n = 12
    g = torch.Generator().manual_seed(1)
    s = torch.randn((2, *spectrum_shape(n)), generator=g, dtype=torch.float64)
    c = s[..., 0].numpy() + 1j * s[..., 1].numpy()
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    scale = 1 / np.maximum(np.sqrt(fx**2 + fy**2), 1 / n)
    want = np.fft.irfft2(c * scale, s=(n, n), norm="ortho") / 4
    np.testing.assert_allclose(fourier_image(s, n).numpy(), want, atol=1e-12)


def test_colour_decorrelation_is_lucids_matrix_by_hand():
    m = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    # column norms 0.4620, 0.1273, 0.0616: the first is the largest
    largest = math.sqrt(0.26**2 + 0.27**2 + 0.27**2)
    t = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = decorrelate_colour(t).numpy()
    x = t.numpy()
    for i in range(3):
        want = sum(m[i, j] * x[:, j] for j in range(3)) / largest
        np.testing.assert_allclose(out[:, i], want, atol=1e-12)
    red = decorrelate_colour(torch.tensor([1.0, 0, 0], dtype=torch.float64).view(1, 3, 1, 1))
    np.testing.assert_allclose(red.ravel().numpy(), [0.5628, 0.5845, 0.5845], atol=1e-4)


def test_integer_jitters_are_exact_shifts_and_90_degrees_is_rot90():
    img = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    padded = np.pad(img.numpy(), ((0, 0), (0, 0), (12, 12), (12, 12)), constant_values=0.5)
    # first crop at (x 3, y 5) of 0..8, second at (x 1, y 2) of 0..4: offsets from centre
    params = torch.tensor([[3 - 4, 5 - 4, 1.0, 0.0, 1 - 2, 2 - 2]], dtype=torch.float64)
    out = transform(img, params).numpy()
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(out, padded[:, :, 7 : 7 + 32, 4 : 4 + 32], atol=1e-10)
    params = torch.tensor([[0, 0, 1.0, math.pi / 2, 0, 0]], dtype=torch.float64)
    rot = np.rot90(padded, k=1, axes=(2, 3))[:, :, 6:-6, 6:-6]
    np.testing.assert_allclose(transform(img, params).numpy(), rot, atol=1e-10)


def test_paper_schedule_and_short_mode():
    assert [(s.steps, s.lr, s.tv) for s in schedule()] == [
        (512, 0.1, 0.0),
        (1024, 0.1, 0.025),
        (2048, 0.01, 0.0025),
    ]
    assert sum(s.steps for s in PAPER_SCHEDULE) == 3584
    assert [(s.steps, s.lr, s.tv) for s in schedule(20)] == [(20, 0.05, 0.0)]
    assert [(s.lr, s.tv) for s in schedule(None, lr=0.2, tv=0.1)] == [(0.2, 0.1)] * 3
    for bad in ({"steps": 0}, {"steps": 2.5}, {"lr": 0}, {"tv": -1}, {"tv": float("nan")}):
        with pytest.raises(RcvlabError):
            schedule(**bad)


def test_tv_smooths_the_image():
    model = small_model()
    plain = visualize(model, "relu", [0], steps=30, size=24, device="cpu", lr=0.1)
    smooth = visualize(model, "relu", [0], steps=30, size=24, device="cpu", lr=0.1, tv=0.05)

    def tv(a: np.ndarray) -> float:
        a = a.astype(float)
        return float(np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum())

    assert tv(smooth.images[0]) < 0.7 * tv(plain.images[0])


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_same_image_other_seed_other_image():
    model = small_model()
    a = visualize(model, "relu", [0, 3], steps=8, size=24, seed=5, device="cpu")
    b = visualize(model, "relu", [0, 3], steps=8, size=24, seed=5, device="cpu")
    c = visualize(model, "relu", [0, 3], steps=8, size=24, seed=6, device="cpu")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.objective_end, b.objective_end)
    assert np.abs(a.images.astype(int) - c.images).mean() > 1
    # the global RNG is neither used nor needed
    torch.manual_seed(123)
    d = visualize(model, "relu", [0, 3], steps=8, size=24, seed=5, device="cpu")
    np.testing.assert_array_equal(a.images, d.images)


def test_an_image_depends_on_its_channel_not_on_its_batch():
    model = small_model()
    both = visualize(model, "relu", [1, 2], steps=8, size=24, device="cpu", batch=2)
    alone = visualize(model, "relu", [2], steps=8, size=24, device="cpu")
    assert np.abs(both.images[1].astype(int) - alone.images[0]).max() <= 1
    assert target_generator(0, (0, 2)).initial_seed() != target_generator(0, (0, 1)).initial_seed()


# -- the model given back, errors -----------------------------------------------------------


def _hooks(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in module.modules()
    )


def test_model_mode_flags_and_hooks_are_restored():
    model = small_model()
    module = model.module
    module.train()
    module.conv2.eval()
    module.fc.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in module.named_parameters()}
    weights = {n: p.detach().clone() for n, p in module.named_parameters()}
    visualize(model, "relu", [0], steps=3, size=24, device="cpu")
    assert module.training and module.conv.training and not module.conv2.training
    assert {n: p.requires_grad for n, p in module.named_parameters()} == before
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(p, weights[n]) for n, p in module.named_parameters())
    assert _hooks(module) == 0
    # also after an error raised once the hooks are on
    with pytest.raises(RcvlabError):
        visualize(model, "relu", [9], steps=3, size=24, device="cpu")
    assert _hooks(module) == 0 and module.training


def test_channel_out_of_range_names_the_count_before_any_step():
    model = small_model()
    calls = []
    with pytest.raises(
        RcvlabError, match=r"^Channel 9 is out of range: the layer has 4 channels"
    ) as e:
        visualize(
            model,
            "relu",
            "0:10:3",
            steps=3,
            size=24,
            device="cpu",
            progress=lambda d, t: calls.append(d),
        )
    assert "\n" not in str(e.value)
    assert calls == []


def test_unknown_layer_is_one_line():
    with pytest.raises(UnknownNameError, match="Unknown layer 'relu9'") as e:
        visualize(small_model(), "relu9", [0], steps=3, size=24, device="cpu")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": None}, "either channels"),
        ({"rcv": [1.0, 0.0]}, "not both"),
        ({"size": 8}, "size must be"),
        ({"batch": 0}, "batch must be"),
        ({"seed": -1}, "seed must be"),
        ({"channels": None, "rcv": [1.0, 0.0]}, "RCV has 2 values but layer relu has 4"),
        ({"channels": None, "rcv": [0.0] * 4}, "not all zero"),
    ],
)
def test_bad_options_are_one_line(kwargs, match):
    options = {"channels": [0], "steps": 2, "size": 24, "device": "cpu", **kwargs}
    channels = options.pop("channels")
    with pytest.raises(RcvlabError, match=match) as e:
        visualize(small_model(), "relu", channels, **options)
    assert "\n" not in str(e.value)


def test_parse_channels():
    assert parse_channels("0:512:100") == [0, 100, 200, 300, 400, 500]
    assert parse_channels("3,7, 10:13") == [3, 7, 10, 11, 12]
    assert parse_channels("::2", n_channels=5) == [0, 2, 4]
    assert parse_channels(4) == [4] and parse_channels([2, 1]) == [2, 1]
    for bad, match in [
        ("a", "Bad channels"),
        ("1:2:3:4", "Bad channels"),
        ("5:1:-1", "Bad channels"),
        ("3,3", "twice"),
        ("-1", "negative"),
        ("4:4", "No channels"),
        ("0::2", "no stop"),
        (True, "Bad channels"),
    ]:
        with pytest.raises(RcvlabError, match=match):
            parse_channels(bad)
    with pytest.raises(RcvlabError, match="has 5 channels"):
        parse_channels("0:512:10", n_channels=5)


# -- RCV directions -------------------------------------------------------------------------


class Tiny(nn.Module):
    """1x1 conv (R; G - B) -> ReLU -> GAP -> linear: hand-computable features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, -1]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_rcv_direction_is_sklearns_ridge_over_the_feature_std():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    x = (images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    feats = np.stack(
        [
            np.maximum(x[..., 0], 0).mean(axis=(1, 2)),
            np.maximum(x[..., 1] - x[..., 2], 0).mean(axis=(1, 2)),
        ],
        axis=1,
    )
    y = 3 * feats[:, 0] - feats[:, 1] + 0.01 * rng.standard_normal(40)
    data = ArrayImageSet(list(images), {"m": y})
    model = load_model(Tiny().eval(), input_size=8, layers=["relu"])
    v = rcv_direction(model, data, "relu", "m", alpha=1.0, device="cpu")
    scaler = StandardScaler().fit(feats)
    want = Ridge(alpha=1.0).fit(scaler.transform(feats), y).coef_ / scaler.scale_
    np.testing.assert_allclose(v, want / np.linalg.norm(want), atol=1e-5)
    r = visualize(model, "relu", rcv=v, rcv_measure="m", steps=3, size=16, device="cpu")
    assert r.rcv_measure == "m" and r.images.shape == (2, 16, 16, 3)
    again = VisualizeResult.from_json(r.to_json())
    np.testing.assert_array_equal(again.images, r.images)
    np.testing.assert_allclose(again.rcv_direction, r.rcv_direction)


# -- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_on_cuda_the_module_stays_where_it_was():
    model = load_model(GaborNet([(6.0, 30.0), (4.0, 120.0)]).eval(), input_size=40)
    module = model.module
    cpu = visualize(model, "relu", [0, 1], steps=150, size=40, device="cpu")
    gpu = visualize(model, "relu", [0, 1], steps=150, size=40, device="cuda")
    again = visualize(model, "relu", [0, 1], steps=150, size=40, device="cuda")
    assert all(p.device.type == "cpu" for p in module.parameters())
    assert _hooks(module) == 0
    assert gpu.meta["device"].startswith("cuda")
    for (lam, deg), image in zip([(6.0, 30.0), (4.0, 120.0)], gpu.images, strict=True):
        f, angle = dominant_frequency(image)
        assert abs(f - 1 / lam) <= 0.03 and angle_gap(angle, deg) <= 10
    assert np.all(gpu.objective_end > 100 * gpu.objective_start)
    # same seed: the same optimisation up to CUDA's atomic-add rounding in grid_sample's
    # backward (bit-identical on the CPU), and the same optimum as on the CPU
    np.testing.assert_allclose(again.objective_end, gpu.objective_end, rtol=0.02)
    np.testing.assert_allclose(gpu.objective_end, cpu.objective_end, rtol=0.2)


# -- figure, run folder, report section -------------------------------------------------------


def test_run_folder_figure_and_section(tmp_path):
    from PIL import Image

    from rcvlab.report.visualize import visualize_section, write_visualize_run
    from rcvlab.result import load_result
    from rcvlab.viz.visualize import plot_visualize

    model = small_model()
    a = visualize(model, "relu", [0, 2], steps=2, size=24, device="cpu")
    b = dataclasses.replace(
        visualize(model.twin("random", seed=1), "relu", [0, 2], steps=2, size=24, device="cpu"),
        weights="runs/ft<x>/model.pt",
    )
    fig = plot_visualize([a, b])
    assert len([ax for ax in fig.axes if ax.images]) == 4
    one = tmp_path / "one"
    one.mkdir()
    files = write_visualize_run(one, a)
    assert {"visualize.json", "visualize.csv", "visualize.png", "summary.md"} <= set(files)
    np.testing.assert_array_equal(load_result(one / "visualize.json").images, a.images)
    png = np.asarray(Image.open(one / "images" / "custom_relu_2.png").convert("RGB"))
    np.testing.assert_array_equal(png, a.images[1])
    two = tmp_path / "two"
    two.mkdir()
    files = write_visualize_run(two, [a, b])
    assert "visualize_custom.json" in files and "visualize_ft-x-model.json" in files
    assert (two / "images" / "ft-x-model_relu_0.png").is_file()
    frame = pd.read_csv(two / "visualize.csv")
    assert list(frame.weights) == ["custom"] * 2 + ["runs/ft<x>/model.pt"] * 2
    assert list(frame.target) == [0, 2, 0, 2]
    html = visualize_section([a, b])
    assert "<x>" not in html and "ft&lt;x&gt;" in html and "data:image/png;base64," in html
    other = visualize(model, "relu", [1], steps=2, size=24, device="cpu")
    with pytest.raises(RcvlabError, match="same layer and channels"):
        plot_visualize([a, other])


def test_rcv_from_a_relevance_json(tmp_path):
    import importlib.util
    from pathlib import Path

    where = Path(__file__).parents[1] / "examples" / "ex_relevance.py"
    spec = importlib.util.spec_from_file_location("rcvlab_vis_ex_relevance", where)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    rel = ex.example()  # RCVs of 'red' and 'red_partial' at layer conv (3 channels)
    path = tmp_path / "relevance.json"
    rel.to_json(path)
    model = load_model(ex.RedNet().eval(), input_size=16, layers=["conv"])
    r = visualize(model, "conv", rcv=path, rcv_measure="red", steps=2, size=16, device="cpu")
    np.testing.assert_allclose(
        r.rcv_direction, rel.directions["red"] / np.linalg.norm(rel.directions["red"])
    )
    assert r.rcv_measure == "red"
    with pytest.raises(RcvlabError, match="RCVs of red, red_partial, not None"):
        visualize(model, "conv", rcv=path, steps=2, size=16, device="cpu")
    with pytest.raises(RcvlabError, match="not a file"):
        visualize(model, "conv", rcv="glcm_asm", steps=2, size=16, device="cpu")


def test_rcv_of_another_network_is_refused(tmp_path):
    import importlib.util
    from dataclasses import replace
    from pathlib import Path

    where = Path(__file__).parents[1] / "examples" / "ex_relevance.py"
    spec = importlib.util.spec_from_file_location("rcvlab_vis_ex_relevance2", where)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    rel = ex.example()
    model = load_model(ex.RedNet().eval(), input_size=16, layers=["conv"])
    other = replace(rel, meta={**rel.meta, "weights_id": "file:0123"})
    with pytest.raises(RcvlabError, match="fitted in"):
        visualize(model, "conv", rcv=other, rcv_measure="red", steps=2, size=16, device="cpu")
