"""The noise-input experiment: padding carries the image size, corrected GAP removes it."""

import json

import numpy as np
import pytest

from rcvlab.analyses.noise import (
    DEFAULT_SIZES,
    NoiseSizeResult,
    draw_noise,
    noise_images,
    noise_size,
)
from rcvlab.errors import RcvlabError, UnknownNameError
from rcvlab.models.registry import Model, load_model
from rcvlab.sizes import parse_sizes


@pytest.fixture(scope="module")
def inception_random():
    return load_model("inception_v3", "random", seed=0)


@pytest.fixture(scope="module")
def result(inception_random):
    return noise_size(
        inception_random,
        sizes="150:230:20",
        n_train=5,
        n_test=10,
        reps=3,
        layers=["mixed0", "mixed1", "mixed2", "mixed5", "pre-softmax"],
        seed=0,
    )


def test_regular_gap_regresses_size_and_corrected_gap_does_not(result):
    kept = [e for e in result.layers if e.r2_corrected is not None]
    assert [e.layer for e in kept] == ["mixed0", "mixed1", "mixed2"]
    for e in kept:
        gap, cor = np.mean(e.r2_gap), np.mean(e.r2_corrected)
        assert gap > 0.5, e.layer
        assert gap > cor, e.layer
        assert cor < 0.3, e.layer
    # deep layers and the logits keep no position at 150 px: reported, not invented
    for name in ("mixed5", "pre-softmax"):
        e = result.layer(name)
        assert e.r2_corrected is None and e.min_positions == 0
        assert len(e.r2_gap) == 3


def test_positions_match_the_masks_and_json_reports_zero(result, inception_random):
    from rcvlab.features.receptive import padding_masks

    specs = inception_random.resolve(["mixed1"])
    for s in result.sizes[:2]:
        assert (
            result.layer("mixed1").positions[s]
            == padding_masks(inception_random.module, specs, s)["mixed1"].sum()
        )
    d = json.loads(result.to_json())
    assert d["kind"] == "noise_size"
    by = {e["layer"]: e for e in d["layers"]}
    assert by["mixed5"]["positions"] == 0 and by["mixed5"]["r2_corrected"] is None
    assert by["mixed5"]["corrected_gap"]["r2_mean"] is None
    back = NoiseSizeResult.from_json(result.to_json())
    assert back.layer("mixed0").r2_gap == result.layer("mixed0").r2_gap
    assert back.widths == result.widths and back.meta == result.meta
    f = result.to_frame()
    assert set(f.pooling) == {"gap", "corrected-gap"} and len(f) == 2 * len(result.layers)
    assert f.loc[(f.layer == "mixed5") & (f.pooling == "corrected-gap"), "r2_mean"].isna().all()


def test_widths_and_images_are_seeded_and_distinct_in_training(result):
    w = np.asarray(result.widths)
    assert w.shape == (3, 15)
    assert all(len(set(row[:5])) == 5 and len(set(row[5:])) > 1 for row in w)
    assert set(w.ravel()) <= set(result.sizes)
    a = noise_images([9, 12], np.random.default_rng(1))
    b = noise_images([9, 12], np.random.default_rng(1))
    assert [x.shape for x in a] == [(9, 9, 3), (12, 12, 3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[1].min() >= 0 and a[1].max() <= 255 and a[1].dtype == np.uint8


def test_same_seed_same_numbers():
    m = load_model("mobilenet_v2", "random", seed=0)
    kw = dict(sizes="64,96,128", n_train=3, n_test=4, reps=2, layers=["features.4"], seed=3)
    a, b = noise_size(m, **kw), noise_size(m, **kw)
    assert a.layer("features.4").r2_gap == b.layer("features.4").r2_gap
    assert a.layer("features.4").r2_corrected == b.layer("features.4").r2_corrected


def test_bad_input_is_one_clear_error(inception_random):
    with pytest.raises(RcvlabError, match="too small"):
        noise_size(inception_random, sizes="40,150", layers=["mixed0"], reps=1)
    with pytest.raises(UnknownNameError, match="mixed99"):
        noise_size(inception_random, sizes="150,200", layers=["mixed99"])


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"sizes": "150"}, RcvlabError, "two different sizes"),
        ({"sizes": "150,5000"}, RcvlabError, "above 4096"),
        ({"sizes": "150:a"}, RcvlabError, "not a whole number"),
        ({"n_train": 1}, RcvlabError, "n_train must be an integer >= 2"),
        ({"n_train": 2.5}, RcvlabError, "n_train must be an integer >= 2"),
        ({"n_test": 1}, RcvlabError, "n_test must be an integer >= 2"),
        ({"reps": 0}, RcvlabError, "reps must be an integer >= 1"),
        ({"batch_size": 0}, RcvlabError, "batch_size must be an integer >= 1"),
        ({"seed": -1}, RcvlabError, "seed must be an integer >= 0"),
        ({"regressor": "ridgge"}, UnknownNameError, "ridge"),
        ({"regressor": "lasso"}, RcvlabError, "alpha"),
        ({"device": "bogus"}, RcvlabError, "Unknown device"),
        ({"device": "cuda:7"}, RcvlabError, "not available"),
        ({"weights": "random"}, RcvlabError, "applies to a model name only"),
    ],
)
def test_options_are_checked_before_any_work(monkeypatch, options, error, match):
    """Each bad option is one line, raised before the model is loaded or noise drawn."""
    import rcvlab.analyses.noise as noise

    def no_work(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(noise, "as_model", no_work)
    monkeypatch.setattr(noise, "draw_noise", no_work)
    model = options.pop("model", None) or object.__new__(Model)
    with pytest.raises(error, match=match) as e:
        noise.noise_size(model, **options)
    assert "\n" not in str(e.value)


def test_one_default_and_keyword_only_options():
    import inspect

    sig = inspect.signature(noise_size)
    params = list(sig.parameters.values())
    assert params[0].name == "model"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    assert sig.parameters["sizes"].default == DEFAULT_SIZES
    assert parse_sizes(DEFAULT_SIZES) == [150, 200, 250, 300, 350, 400, 450, 500]
    assert sig.parameters["n_train"].default == 5 and sig.parameters["n_test"].default == 20


def test_reads_the_json_of_earlier_versions():
    old = {
        "model": "inception_v3",
        "weights": "random",
        "sizes": [150, 200],
        "n_train": 2,
        "n_test": 2,
        "reps": 1,
        "regressor": "ols",
        "alpha": None,
        "seed": 4,
        "layers": [
            {
                "layer": "mixed0",
                "positions": 121,
                "positions_by_size": {"150": 121, "200": 289},
                "r2_gap": [0.5],
                "r2_corrected": None,
            }
        ],
        "command": "rcvlab noise-size",
        "rcvlab_version": "0.1.0",
        "extra": {"weights_id": "random:4", "widths": [[150, 200, 200, 150]]},
    }
    r = NoiseSizeResult.from_json(json.dumps(old))
    assert r.seed == 4 and r.meta["command"] == "rcvlab noise-size"
    assert r.meta["weights_id"] == "random:4" and r.widths == ((150, 200, 200, 150),)
    assert r.layer("mixed0").positions == {150: 121, 200: 289}


def test_scores_and_summary_match_an_independent_computation(result):
    """One repetition's R² from numpy least squares, the summary from scipy."""
    import scipy.stats

    # the summary: Student-t interval and median over repetitions
    e = result.layer("mixed0")
    v = np.asarray(e.r2_gap)
    s = e.summary("gap")
    lo, hi = scipy.stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=scipy.stats.sem(v))
    assert s["r2_mean"] == pytest.approx(v.mean())
    assert (s["r2_ci95_low"], s["r2_ci95_high"]) == pytest.approx((lo, hi))
    assert s["r2_median"] == pytest.approx(np.median(v))


def test_one_repetition_equals_min_norm_least_squares():
    from rcvlab.features.extract import extract_features

    m = load_model("mobilenet_v2", "random", seed=0)
    res = noise_size(m, sizes="64,96,128", n_train=4, n_test=6, reps=1, layers=["features.2"])
    widths, imgs = draw_noise([64, 96, 128], 1, 4, 6, 0)
    w = widths[0]
    assert w.tolist() == list(res.widths[0])
    # features of the same images by the ordinary extraction (native size: no resampling)
    X = np.vstack(
        [
            extract_features(m, [im], layers=["features.2"], input_size=im.shape[0])["features.2"]
            for im in imgs
        ]
    ).astype(np.float64)
    tr, te = slice(0, 4), slice(4, 10)
    mu, sd = X[tr].mean(0), X[tr].std(0)
    keep = sd > 1e-6 * np.abs(X[tr]).max(0)
    Z = (X[:, keep] - mu[keep]) / sd[keep]
    A = np.c_[np.ones(4), Z[tr]]
    coef = np.linalg.pinv(A) @ w[tr]
    pred = np.c_[np.ones(6), Z[te]] @ coef
    y = w[te].astype(float)
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert res.layer("features.2").r2_gap[0] == pytest.approx(r2, rel=1e-4, abs=1e-4)


def _circular_twin(net):
    """A copy of ``net`` whose convolutions pad circularly instead of with zeros."""
    import copy

    import torch

    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, torch.nn.Conv2d) and any(p > 0 for p in m.padding):
            m.padding_mode = "circular"
    return twin


def _map_and_free_positions(net, twin, image: np.ndarray, mean, std):
    """The map of ``net`` for one image and, independently of rcvlab's receptive-field code,
    the positions free of padding: those whose every channel is unchanged in ``twin`` (circular
    instead of zero padding; a position that sees the padding sees other values there)."""
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        zero, circ = (n(x)[0].double().numpy() for n in (net, twin))
    free = np.abs(zero - circ).max(axis=0) <= 1e-5 * np.abs(zero).max()
    return zero, free


def test_corrected_gap_r2_equals_an_independent_computation():
    """Corrected GAP by hand: the positions free of padding found by circular padding, the
    map averaged over them, standardised and regressed with numpy's pinv; R² by hand."""
    from rcvlab.features.receptive import padding_masks

    m = load_model("mobilenet_v2", "random", seed=0)
    sizes = [64, 96, 128]
    res = noise_size(
        m, sizes=sizes, n_train=4, n_test=6, reps=1, layers=["features.2"], device="cpu"
    )
    widths, imgs = draw_noise(sizes, 1, 4, 6, 0)
    w = widths[0].astype(float)
    pre = m.preprocessing
    net = m.module.features[:3]  # the network up to and including features.2
    twin = _circular_twin(net)
    feats, seen = [], {}
    for im in imgs:
        a, free = _map_and_free_positions(net, twin, im, pre.mean, pre.std)
        seen[im.shape[0]] = free
        feats.append(a[:, free].mean(axis=1))
    entry = res.layer("features.2")
    for s, free in seen.items():
        assert entry.positions[s] == int(free.sum()) > 0
        masks = padding_masks(m.module, m.resolve(["features.2"]), s)
        assert np.array_equal(free, masks["features.2"])
    X = np.vstack(feats)
    tr, te = slice(0, 4), slice(4, 10)
    mu, sd = X[tr].mean(0), X[tr].std(0)
    keep = sd > 1e-6 * np.abs(X[tr]).max(0)
    Z = (X[:, keep] - mu[keep]) / sd[keep]
    coef = np.linalg.pinv(np.c_[np.ones(4), Z[tr]]) @ w[tr]
    pred = np.c_[np.ones(6), Z[te]] @ coef
    r2 = 1 - ((w[te] - pred) ** 2).sum() / ((w[te] - w[te].mean()) ** 2).sum()
    assert entry.r2_corrected[0] == pytest.approx(r2, rel=1e-4, abs=1e-4)
