"""The resizing sweep (rcvlab.analyses.resize) and size specs (rcvlab.sizes)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from rcvlab.analyses.resize import (
    INTERPOLATIONS,
    ResizeSweepResult,
    class_probabilities,
    min_input_size,
    parse_interps,
    resize_sweep,
    resized_batch,
    wilson_ci95,
)
from rcvlab.data.base import ArrayImageSet, FileImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.models.registry import load_model
from rcvlab.sizes import DEFAULT_STEP, parse_sizes

N_CLASSES = 10


class SizeColour(nn.Module):
    """Logits known in closed form: class 0 gets ``side / 100``, class 1 ``3 * mean red``
    (input units), class k >= 2 gets ``-k``."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # something for .to() and the digest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        logits = -torch.arange(N_CLASSES, dtype=torch.float32).repeat(b, 1).to(x.device)
        logits[:, 0] = x.shape[-1] / 100.0
        logits[:, 1] = 3.0 * x[:, 0].mean(dim=(1, 2))
        return logits + self.dummy


def expected_softmax(side: int, red: int) -> np.ndarray:
    z = np.array([side / 100.0, 3.0 * red / 255.0, *(-np.arange(2, N_CLASSES))], dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.fixture
def colour_model():
    # mean 0, std 1: the network sees pixel / 255
    return load_model(SizeColour(), input_size=224, mean=(0, 0, 0), std=(1, 1, 1))


def flat_images(reds: list[int], side: int = 40) -> list[np.ndarray]:
    return [np.full((side, side + 7, 3), (r, 30, 60), dtype=np.uint8) for r in reds]


class NoLoad(ArrayImageSet):
    """Fails the test if any image is decoded (errors must come before the run)."""

    def _load(self, i: int) -> Image.Image:
        raise AssertionError("an image was loaded before the error")


# -- size specs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "sizes"),
    [
        ("75:500:25", list(range(75, 501, 25))),
        ("75:510:25", list(range(75, 501, 25))),
        ("150:250", [150, 175, 200, 225, 250]),
        ("224,299", [224, 299]),
        (" 299 , 224 ", [224, 299]),
        ("75:125:25,100,299", [75, 100, 125, 299]),
        ("224", [224]),
        (224, [224]),
        ([299, 224], [224, 299]),
        ("100:100:5", [100]),
    ],
)
def test_parse_sizes(spec, sizes) -> None:
    assert parse_sizes(spec) == sizes
    assert DEFAULT_STEP == 25


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("500:75:25", "start 500 is larger than stop 75"),
        ("75:500:0", "step must be positive"),
        ("75:500:-25", "step must be positive"),
        ("75.5:500", "not a whole number"),
        ("a,b", "not a whole number"),
        ("", "empty"),
        ("1:2:3:4", "too many"),
        ("0,224", "not positive"),
        ([224, 2.5], "not a whole number"),
    ],
)
def test_parse_sizes_errors(spec, match) -> None:
    with pytest.raises(RcvlabError, match=match) as e:
        parse_sizes(spec)
    assert "\n" not in str(e.value)


def test_parse_interps() -> None:
    assert parse_interps("lanczos, Nearest") == ["lanczos", "nearest"]
    assert set(INTERPOLATIONS) >= {"lanczos", "bilinear", "bicubic", "nearest", "box", "hamming"}
    with pytest.raises(UnknownNameError, match="Did you mean 'lanczos'"):
        parse_interps("lanczoz")
    with pytest.raises(RcvlabError, match="repeated"):
        parse_interps("nearest,nearest")


# -- statistics -------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (47, 100), (1, 1)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    lo, hi = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    np.testing.assert_allclose(wilson_ci95(k, n), (lo, hi), atol=1e-12)
    assert all(math.isnan(v) for v in wilson_ci95(0, 0))


# -- exact values from a hand-made classifier ---------------------------------------------


def test_exact_probabilities_from_a_known_network(colour_model) -> None:
    reds = [0, 120, 255]
    data = ArrayImageSet(flat_images(reds), {"class_index": [0, 0, 1]})
    sizes = [50, 200, 400]
    calls: list[tuple[int, int]] = []
    res = resize_sweep(
        colour_model,
        data,
        sizes=sizes,
        interps="lanczos,nearest,bicubic",
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (27, 27) and len(calls) == 2 * 9  # two batches x 9 (filter, size)
    assert res.sizes == tuple(sizes) and res.interps == ("lanczos", "nearest", "bicubic")
    assert res.p.shape == (3, 3, 3) and res.n_outputs == N_CLASSES
    for b, s in enumerate(sizes):
        want = [expected_softmax(s, r)[lab] for r, lab in zip(reds, (0, 0, 1), strict=True)]
        for a in range(3):  # a flat image is flat after any filter
            np.testing.assert_allclose(res.p[a, b], want, rtol=1e-5)
    # top-1: class 0 wins once side / 100 > 3 * red / 255; top-5 = classes 0..4
    red = np.array(reds)
    for b, s in enumerate(sizes):
        win0 = s / 100 > 3 * red / 255
        np.testing.assert_array_equal(res.top1[0, b], np.where([1, 1, 0], win0, ~win0))
        assert res.top5[:, b].all()
        np.testing.assert_array_equal(res.pred[0, b], np.where(win0, 0, 1))
    f = res.to_frame()
    assert list(f["size"]) == sizes * 3 and set(f.n) == {3}
    np.testing.assert_allclose(f.p_mean, res.p.mean(axis=2).ravel())


def test_top5_miss_and_multiple_acceptable_classes(colour_model) -> None:
    class Multi(ArrayImageSet):
        def imagenet_labels(self, i: int) -> tuple[int, ...]:
            return ((0, 1), (7,), (6, 9))[i]

    data = Multi(flat_images([100, 100, 100]))
    res = resize_sweep(colour_model, data, sizes=[150], interps=["bilinear"])
    q = expected_softmax(150, 100)
    np.testing.assert_allclose(res.p[0, 0], [q[0] + q[1], q[7], q[6] + q[9]], rtol=1e-5)
    np.testing.assert_array_equal(res.top1[0, 0], [True, False, False])
    np.testing.assert_array_equal(res.top5[0, 0], [True, False, False])
    assert res.labels == ((0, 1), (7,), (6, 9))


def test_summary_intervals(colour_model) -> None:
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (30, 30, 3), dtype=np.uint8) for _ in range(8)]
    data = ArrayImageSet(ims, {"class_index": [0, 1, 2, 3, 4, 5, 6, 0]})
    res = resize_sweep(colour_model, data, sizes="100:300:100", interps="lanczos,bilinear")
    f = res.to_frame()
    assert len(f) == 6
    assert (f.p_ci95_low <= f.p_mean).all() and (f.p_mean <= f.p_ci95_high).all()
    assert (f.top5_ci95_low <= f.top5).all() and (f.top5 <= f.top5_ci95_high).all()
    assert (f.top1_ci95_low <= f.top1).all() and (f.top1 <= f.top1_ci95_high).all()
    assert (f.top5 >= f.top1).all() and (res.top5 >= res.top1).all()
    assert ((f.p_ci95_low >= 0) & (f.p_ci95_high <= 1)).all()
    long = res.per_image_frame()
    assert len(long) == 2 * 3 * 8 and set(long["size"]) == {100, 200, 300}
    np.testing.assert_allclose(long.p, res.p.ravel())
    peaks = res.peaks()
    assert set(peaks) == {"lanczos", "bilinear"}
    text = res.to_markdown()
    assert "Student-t" in text and "Wilson" in text and "## bilinear" in text


def test_json_round_trip(colour_model, tmp_path) -> None:
    data = ArrayImageSet(flat_images([10, 200]), {"class_index": [0, 1]})
    res = resize_sweep(
        colour_model, data, sizes="60,90", interps="nearest", command="rcvlab resize-sweep"
    )
    back = ResizeSweepResult.from_json(res.to_json(tmp_path / "sweep.json"))
    for k in ("model", "weights", "sizes", "interps", "ids", "labels", "skipped", "meta"):
        assert getattr(back, k) == getattr(res, k), k
    for k in ("p", "top1", "top5", "pred"):
        np.testing.assert_array_equal(getattr(back, k), getattr(res, k))
        assert getattr(back, k).dtype == getattr(res, k).dtype
    again = ResizeSweepResult.from_json(tmp_path / "sweep.json")
    assert again.meta["command"] == "rcvlab resize-sweep"
    assert again.meta["data_fingerprint"] == data.fingerprint()
    with pytest.raises(DataError, match="not a complete 'resize_sweep' result"):
        ResizeSweepResult.from_json('{"model": 1}')


def test_reads_the_json_of_earlier_versions(colour_model, tmp_path) -> None:
    """sweep.json of rcvlab 0.x: command and data beside a meta without provenance."""
    data = ArrayImageSet(flat_images([10, 200]), {"class_index": [0, 1]})
    res = resize_sweep(colour_model, data, sizes="60,90", interps="nearest")
    d = json.loads(res.to_json())
    d["command"], d["data"] = "rcvlab resize-sweep --sizes 60,90", "filled:cat"
    d["meta"] = {"device": "cpu", "seconds": 0.1}
    back = ResizeSweepResult.from_json(json.dumps(d))
    assert back.meta["command"] == "rcvlab resize-sweep --sizes 60,90"
    assert back.data_source == "filled:cat"
    np.testing.assert_array_equal(back.p, res.p)


def test_unreadable_images_are_skipped_or_fatal(colour_model, tmp_path) -> None:
    Image.new("RGB", (20, 20), (90, 0, 0)).save(tmp_path / "a.png")
    paths = [str(tmp_path / "a.png"), str(tmp_path / "gone.png")]
    data = FileImageSet(paths, {"class_index": [0, 1]})
    res = resize_sweep(colour_model, data, sizes=[100], interps="bicubic")
    assert res.ids == (paths[0],) and res.p.shape == (1, 1, 1)
    assert [s.path for s in res.skipped] == [paths[1]]
    with pytest.raises(DataError, match=r"gone\.png"):
        resize_sweep(colour_model, data, sizes=[100], interps="bicubic", strict=True)


# -- the full softmax and a registry network -----------------------------------------------


def test_softmax_rows_sum_to_one_and_match_the_sweep() -> None:
    model = load_model("efficientnet_lite0", weights="random", seed=0)
    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(3)]
    data = ArrayImageSet(ims, {"class_index": [10, 281, 999]})
    pil = [data.load(i) for i in range(3)]
    probs = class_probabilities(model, pil, 64, "lanczos", device="cpu")
    assert probs.shape == (3, 1000) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    res = resize_sweep(model, data, sizes=[32, 64], interps="lanczos", device="cpu")
    np.testing.assert_allclose(res.p[0, 1], probs[[0, 1, 2], [10, 281, 999]], rtol=1e-4)
    ranks = (-probs).argsort(axis=1)
    np.testing.assert_array_equal(res.pred[0, 1], ranks[:, 0])
    np.testing.assert_array_equal(
        res.top5[0, 1], [lab in ranks[i, :5] for i, lab in enumerate((10, 281, 999))]
    )
    assert res.model == "efficientnet_lite0" and res.weights == "random"
    assert res.input_size == 224


def test_resize_is_the_models_own_preprocessing() -> None:
    m = load_model(SizeColour(), input_size=64)
    pre = m.preprocessing
    rng = np.random.default_rng(2)
    pil = [Image.fromarray(rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)) for _ in range(2)]
    for interp in ("bilinear", "bicubic", "lanczos", "nearest"):
        want = replace(pre, interpolation=interp)(pil, mode="resize")
        torch.testing.assert_close(resized_batch(m, pil, 64, interp), want)
    # every filter, against PIL and the normalisation written out
    mean, std = np.asarray(pre.mean), np.asarray(pre.std)
    for interp, f in (("box", Image.BOX), ("hamming", Image.HAMMING), ("nearest", Image.NEAREST)):
        arr = np.stack([np.asarray(im.resize((48, 48), f)) for im in pil]) / 255.0
        want = torch.from_numpy(((arr - mean) / std).transpose(0, 3, 1, 2)).float()
        torch.testing.assert_close(resized_batch(m, pil, 48, interp), want)


# -- errors before anything runs ------------------------------------------------------------


class NeedsForty(nn.Module):
    """A 40x40 convolution without padding: inputs below 40 px fail."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, N_CLASSES, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def test_size_below_the_minimum() -> None:
    model = load_model(NeedsForty(), input_size=64)
    assert min_input_size(model, [32, 64]) == 40
    assert min_input_size(model, [48, 64]) == 48
    data = NoLoad(flat_images([1, 2]), {"class_index": [0, 1]})
    with pytest.raises(RcvlabError, match=r"Sizes 20, 30 px are below .* \(40 px\)") as e:
        resize_sweep(model, data, sizes="20:60:10", interps="lanczos")
    assert "--sizes 40:60:25" in str(e.value) and "\n" not in str(e.value)


def test_known_minimum_of_inception(colour_model) -> None:
    model = replace(colour_model, name="inception_v3")
    data = NoLoad(flat_images([1]), {"class_index": [0]})
    with pytest.raises(RcvlabError, match=r"Size 50 px is below .*inception_v3.*\(75 px\)"):
        resize_sweep(model, data, sizes="50,100", interps="lanczos")


def test_network_that_fails_everywhere() -> None:
    model = load_model(NeedsForty(), input_size=64)
    with pytest.raises(RcvlabError, match="accepts any input size"):
        resize_sweep(
            model,
            NoLoad(flat_images([1]), {"class_index": [0]}),
            sizes="10,20",
            interps="nearest",
        )


def test_image_without_class_index(colour_model) -> None:
    data = NoLoad(flat_images([1, 2, 3]), {"class_index": [0, np.nan, np.nan]})
    with pytest.raises(DataError, match=r"Image array\[1\] \(and 1 more\) has no class index"):
        resize_sweep(colour_model, data, sizes=[64], interps="lanczos")


def test_class_index_beyond_the_outputs(colour_model) -> None:
    data = NoLoad(flat_images([1, 2]), {"class_index": [0, N_CLASSES]})
    with pytest.raises(DataError, match=r"array\[1\] has class index 10, but custom has 10"):
        resize_sweep(colour_model, data, sizes=[64], interps="lanczos")


def test_data_without_labels(colour_model) -> None:
    with pytest.raises(DataError, match="no ImageNet class index"):
        resize_sweep(
            colour_model, NoLoad(flat_images([1]), {"r": [0.5]}), sizes=[64], interps="lanczos"
        )


def test_unknown_interpolation(colour_model) -> None:
    data = NoLoad(flat_images([1]), {"class_index": [0]})
    with pytest.raises(UnknownNameError, match="Did you mean 'bicubic'"):
        resize_sweep(colour_model, data, sizes=[64], interps="bicubik")


def test_frame_and_peaks_match_scipy_and_numpy(colour_model) -> None:
    """The printed numbers recomputed from the per-image values: Student-t for p, Wilson
    (statsmodels) for accuracies, argmax for the peak."""
    import scipy.stats
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, (30, 30, 3), dtype=np.uint8) for _ in range(8)]
    data = ArrayImageSet(ims, {"class_index": [0, 1, 2, 3, 4, 5, 6, 1]})
    res = resize_sweep(colour_model, data, sizes="50,150,300", interps="nearest,bilinear")
    frame = res.to_frame()
    for a, interp in enumerate(res.interps):
        for b, size in enumerate(res.sizes):
            row = frame[(frame.interp == interp) & (frame["size"] == size)].iloc[0]
            p = res.p[a, b]
            t = scipy.stats.t.interval(0.95, p.size - 1, loc=p.mean(), scale=scipy.stats.sem(p))
            assert row.p_mean == pytest.approx(p.mean())
            assert (row.p_ci95_low, row.p_ci95_high) == pytest.approx(
                (max(t[0], 0.0), min(t[1], 1.0)), abs=1e-9
            )
            k5 = int(res.top5[a, b].sum())
            assert (row.top5_ci95_low, row.top5_ci95_high) == pytest.approx(
                proportion_confint(k5, p.size, method="wilson"), abs=1e-9
            )
        size, pmax = res.peaks()[interp]
        assert size == res.sizes[int(np.argmax(res.p[a].mean(axis=1)))]
        assert pmax == pytest.approx(res.p[a].mean(axis=1).max())


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"sizes": "500:75"}, RcvlabError, "start 500 is larger"),
        ({"sizes": "75,5000"}, RcvlabError, "above 4096"),
        ({"interps": "bicubik"}, UnknownNameError, "bicubic"),
        ({"interps": ""}, RcvlabError, "No interpolation"),
        ({"batch_size": 0}, RcvlabError, "batch_size must be an integer >= 1"),
        ({"seed": -1}, RcvlabError, "seed must be an integer >= 0"),
        ({"weights": "random"}, RcvlabError, "applies to a model name only"),
        ({"device": "bogus"}, RcvlabError, "Unknown device"),
        ({"data": [1, 2]}, RcvlabError, "must be an ImageSet"),
        ({"data": NoLoad([])}, DataError, "No images"),
    ],
)
def test_options_are_checked_before_any_work(
    colour_model, monkeypatch, options, error, match
) -> None:
    """One line each, before a network runs or an image is decoded."""
    import rcvlab.analyses.resize as rs

    def no_work(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(rs, "min_input_size", no_work)
    monkeypatch.setattr(rs, "load_model", no_work)
    data = options.pop("data", NoLoad(flat_images([1]), {"class_index": [0]}))
    with pytest.raises(error, match=match) as e:
        rs.resize_sweep(colour_model, data, **options)
    assert "\n" not in str(e.value)


def test_one_default_and_keyword_only_options() -> None:
    import inspect

    from rcvlab.analyses.resize import DEFAULT_INTERPS, DEFAULT_SIZES

    sig = inspect.signature(resize_sweep)
    params = list(sig.parameters.values())
    assert [p.name for p in params[:2]] == ["model", "data"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    assert sig.parameters["sizes"].default == DEFAULT_SIZES
    assert parse_sizes(DEFAULT_SIZES) == list(range(75, 501, 25))  # paper 000 §4.1
    assert sig.parameters["interps"].default == DEFAULT_INTERPS
    assert set(DEFAULT_INTERPS) == {"lanczos", "bilinear", "bicubic", "nearest"}
