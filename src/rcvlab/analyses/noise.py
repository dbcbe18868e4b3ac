"""Image size from white noise (paper 000 §3.6, §4.2, Figure 7): padding carries the size.

White-noise images carry no object and no scale, only their width. Each layer's features
are pooled twice in the same forward pass: with regular GAP, which averages the border
positions whose receptive field reaches into the zero padding (their share of the map shrinks
as the image grows), and with corrected GAP (:mod:`rcvlab.features.receptive`), which
averages only positions that see nothing but noise. A linear regression of the width fitted
on a few images and scored on held-out ones then shows whether the layer encodes the size.
The papers' finding: regular GAP regresses the size (R² near 1 in deep layers), corrected
GAP does not (R² < 0) — and this holds without pretraining.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from rcvlab import __version__
from rcvlab.errors import RcvlabError
from rcvlab.features.extract import choose_device
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import corrected_gap, gap
from rcvlab.features.receptive import padding_masks
from rcvlab.models.registry import Model, as_model
from rcvlab.probe.fit import check_regressor, fit_predict
from rcvlab.probe.result import _jsonable
from rcvlab.probe.stats import mean_ci95, r2_score
from rcvlab.progress import progress_bar
from rcvlab.sizes import parse_sizes

POOLS = ("gap", "corrected-gap")


@dataclass(frozen=True)
class NoiseLayer:
    """One layer's held-out R² of the image width, per repetition, for both poolings.

    Attributes
    ----------
    layer : str
    positions : dict of int to int
        Positions corrected GAP averages at each requested input size (0: none).
    r2_gap : tuple of float
        Test R² with regular GAP, one per repetition.
    r2_corrected : tuple of float or None
        Test R² with corrected GAP; None when some requested size leaves the layer without
        a position free of padding (the features would be undefined for those images).
    """

    layer: str
    positions: dict[int, int]
    r2_gap: tuple[float, ...]
    r2_corrected: tuple[float, ...] | None

    @property
    def min_positions(self) -> int:
        """The fewest positions over the requested sizes (0: corrected GAP not defined)."""
        return min(self.positions.values())

    def summary(self, pooling: str) -> dict[str, float | None]:
        """Mean, standard deviation, 95 % CI (Student t over repetitions), median and
        quartiles of the R² (all None for corrected GAP without positions)."""
        vals = self.r2_gap if pooling == "gap" else self.r2_corrected
        keys = ("r2_mean", "r2_std", "r2_ci95_low", "r2_ci95_high", "r2_median", "r2_q25", "r2_q75")
        if vals is None:
            return dict.fromkeys(keys)
        v = np.asarray(vals)
        lo, hi = mean_ci95(v)  # fresh images every repetition: independent scores
        q25, med, q75 = np.percentile(v, [25, 50, 75])
        return {
            "r2_mean": float(v.mean()),
            "r2_std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "r2_ci95_low": lo,
            "r2_ci95_high": hi,
            # with 5 training images one repetition can score R² << -1 (a feature almost
            # constant on them); the median and quartiles show the typical repetition
            "r2_median": float(med),
            "r2_q25": float(q25),
            "r2_q75": float(q75),
        }


@dataclass(frozen=True)
class NoiseSizeResult:
    """Result of :func:`noise_size`: per layer, R² of the width with regular and corrected GAP."""

    model: str
    weights: str
    sizes: tuple[int, ...]
    n_train: int
    n_test: int
    reps: int
    regressor: str
    alpha: float | None
    seed: int
    layers: tuple[NoiseLayer, ...]
    command: str = ""
    rcvlab_version: str = __version__
    extra: dict = field(default_factory=dict)

    def layer(self, name: str) -> NoiseLayer:
        """The entry of one layer."""
        for entry in self.layers:
            if entry.layer == name:
                return entry
        raise RcvlabError(f"No layer {name!r} in this result ({', '.join(self.layer_names)}).")

    @property
    def layer_names(self) -> list[str]:
        return [e.layer for e in self.layers]

    def to_frame(self) -> pd.DataFrame:
        """One row per layer and pooling: R² mean, std, 95 % CI, median, quartiles and the
        corrected-GAP positions."""
        rows = []
        for e in self.layers:
            for pooling in POOLS:
                rows.append(
                    {
                        "layer": e.layer,
                        "pooling": pooling,
                        **e.summary(pooling),
                        "positions_min": e.min_positions if pooling != "gap" else None,
                        "positions_max": max(e.positions.values()) if pooling != "gap" else None,
                        "n_reps": self.reps,
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [
            {
                "layer": e.layer,
                # a layer without positions is reported as such, never as a number
                "positions": 0 if e.min_positions == 0 else e.min_positions,
                "positions_by_size": {str(k): v for k, v in e.positions.items()},
                "r2_gap": list(e.r2_gap),
                "r2_corrected": None if e.r2_corrected is None else list(e.r2_corrected),
                "gap": e.summary("gap"),
                "corrected_gap": e.summary("corrected-gap"),
            }
            for e in self.layers
        ]
        return _jsonable(d)

    def to_json(self) -> str:
        """JSON text (NaN written as null)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> NoiseSizeResult:
        """Read what :meth:`to_json` wrote."""
        d = json.loads(text)
        nan = float("nan")
        layers = tuple(
            NoiseLayer(
                layer=e["layer"],
                positions={int(k): int(v) for k, v in e["positions_by_size"].items()},
                r2_gap=tuple(nan if v is None else v for v in e["r2_gap"]),
                r2_corrected=None
                if e["r2_corrected"] is None
                else tuple(nan if v is None else v for v in e["r2_corrected"]),
            )
            for e in d["layers"]
        )
        d.update(layers=layers, sizes=tuple(d["sizes"]))
        return cls(**d)


def noise_images(sizes: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """White noise: one ``(s, s, 3)`` uint8 image per size, pixels uniform on 0…255."""
    return [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in sizes]


def draw_noise(
    sizes: Sequence[int], reps: int, n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The widths ``(reps, n_train + n_test)`` and the noise images (row-major) of
    :func:`noise_size`: per repetition and side, a random permutation of the sizes repeated
    as needed, so every size comes about equally often and no side is of one width."""
    rng = np.random.default_rng(seed)
    widths = np.empty((reps, n_train + n_test), dtype=np.int64)
    for r in range(reps):
        for lo, hi in ((0, n_train), (n_train, n_train + n_test)):
            widths[r, lo:hi] = rng.permutation(np.resize(rng.permutation(sizes), hi - lo))
    return widths, noise_images(widths.ravel().tolist(), rng)


def noise_size(
    model: str | Model | nn.Module,
    *,
    weights: str = "imagenet",
    sizes: str | Sequence[int] = "150:500:35",
    n_train: int = 5,
    n_test: int = 20,
    reps: int = 10,
    layers: Sequence[str] | str | None = None,
    regressor: str = "ols",
    alpha: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
    command: str = "",
) -> NoiseSizeResult:
    """Regress the width of white-noise images from each layer, with regular and corrected GAP.

    Every repetition draws ``n_train + n_test`` new noise images (seeded). Widths are drawn
    from ``sizes`` in a balanced way: a random permutation of the sizes, repeated as needed
    (so the training widths are distinct when there are at least ``n_train`` sizes, and
    neither side is ever of one width). Images enter the network at their own size
    (normalised with the model's mean and std, not resized). A linear probe
    (:func:`rcvlab.probe.fit.fit_predict`: features standardised on the training images,
    min-norm least squares by default) is fitted on the training images and scored by R² on
    the test images.

    Parameters
    ----------
    model : str, Model or torch.nn.Module
        Registry name (loaded with ``weights`` and ``seed``) or a loaded model.
    weights : str
        ``imagenet`` or ``random`` (used with a model name).
    sizes : str or sequence of int
        Square widths in pixels (``"150:500:35"``; see :func:`rcvlab.sizes.parse_sizes`).
    n_train, n_test : int
        Images to fit and to score on, per repetition (5 and 20 in the paper).
    reps : int
        Repetitions.
    layers : sequence of str or "all", optional
        Layers (default: all of the model's named layers).
    regressor, alpha
        As in :func:`rcvlab.probe.fit.fit_rcv` (``ols`` as in the paper).
    seed : int
        Seeds the noise, the widths and (with a model name) the random weights.

    Returns
    -------
    NoiseSizeResult
    """
    reg, a = check_regressor(regressor, alpha)
    checks = (("n_train", n_train, 2), ("n_test", n_test, 2), ("reps", reps, 1))
    for name, v, lo in (*checks, ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise RcvlabError(f"{name} must be an integer >= {lo}, got {v!r}.")
    size_list = parse_sizes(sizes)
    if len(size_list) < 2:
        raise RcvlabError(
            f"Need at least two different sizes to regress the width, got {size_list}."
        )
    model = as_model(model, weights, seed)
    specs = model.resolve(layers)
    names = [s.name for s in specs]
    module = model.module
    masks: dict[int, dict[str, np.ndarray]] = {}
    for s in size_list:
        try:
            masks[s] = padding_masks(module, specs, s)
        except RcvlabError as e:
            raise RcvlabError(
                f"Size {s} px is too small for {model.name}: {e} Use --sizes from a larger "
                f"start (the model's own input size is {model.input_size})."
            ) from None
    positions = {k: {s: int(masks[s][k].sum()) for s in size_list} for k in names}

    widths, images = draw_noise(size_list, reps, n_train, n_test, seed)
    flat = widths.ravel()
    feats = _features(model, specs, images, flat, masks, batch_size, device, progress)
    out = []
    for k in names:
        has_positions = min(positions[k].values()) > 0
        scores: dict[str, list[float]] = {"gap": [], "corrected-gap": []}
        for pooling in POOLS if has_positions else ("gap",):
            X = feats[pooling][k].reshape(reps, n_train + n_test, -1)
            for r in range(reps):
                y = widths[r].astype(np.float64)
                pred, _, _ = fit_predict(X[r, :n_train], y[:n_train, None], X[r, n_train:], reg, a)
                scores[pooling].append(r2_score(y[n_train:], pred[:, 0]))
        out.append(
            NoiseLayer(
                layer=k,
                positions=positions[k],
                r2_gap=tuple(scores["gap"]),
                r2_corrected=tuple(scores["corrected-gap"]) if has_positions else None,
            )
        )
    return NoiseSizeResult(
        model=model.name,
        weights=model.weights,
        sizes=tuple(size_list),
        n_train=int(n_train),
        n_test=int(n_test),
        reps=int(reps),
        regressor=reg,
        alpha=a,
        seed=int(seed),
        layers=tuple(out),
        command=command,
        extra={"weights_id": model.weights_id, "widths": widths.tolist()},
    )


def _features(
    model: Model,
    specs,
    images: list[np.ndarray],
    widths: np.ndarray,
    masks: dict[int, dict[str, np.ndarray]],
    batch_size: int,
    device: str | None,
    progress: bool,
) -> dict[str, dict[str, np.ndarray]]:
    """Both poolings of every layer from one forward pass per batch of equal-size images."""
    dev = choose_device(device)
    module = model.module.to(dev).eval()
    mean = torch.tensor(model.preprocessing.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocessing.std, device=dev).view(1, 3, 1, 1)
    n = len(images)
    res: dict[str, dict[str, np.ndarray]] = {"gap": {}, "corrected-gap": {}}
    bar = progress_bar(progress, n, f"noise {model.name} ({model.weights})")
    with bar as tick:
        for s in sorted(set(widths.tolist())):
            idx = np.flatnonzero(widths == s)
            pools = {sp.name: _both(corrected_gap(masks[s][sp.name])) for sp in specs}
            with capture(module, specs, pools, linear=True) as out, torch.inference_mode():
                for i0 in range(0, idx.size, batch_size):
                    rows = idx[i0 : i0 + batch_size]
                    x = torch.from_numpy(np.stack([images[i] for i in rows])).to(dev)
                    x = (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
                    out.clear()
                    module(x)
                    for sp in specs:
                        v = out[sp.name].cpu().numpy().astype(np.float64)
                        d = v.shape[1] // 2
                        for pooling, part in (("gap", v[:, :d]), ("corrected-gap", v[:, d:])):
                            if sp.name not in res[pooling]:
                                res[pooling][sp.name] = np.full((n, d), np.nan)
                            res[pooling][sp.name][rows] = part
                    tick(rows.size)
    return res


def _both(cgap):
    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([gap(x), cgap(x)], dim=1)

    return pool


__all__ = ["NoiseLayer", "NoiseSizeResult", "draw_noise", "noise_images", "noise_size"]
