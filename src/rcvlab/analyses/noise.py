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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from rcvlab.analyses.common import check_int
from rcvlab.distributed.client import check_client
from rcvlab.distributed.tasks import Call, Shared, run_calls
from rcvlab.errors import RcvlabError
from rcvlab.features.extract import choose_device
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import corrected_gap, gap
from rcvlab.features.receptive import padding_masks
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, as_model
from rcvlab.models.state import borrowed
from rcvlab.probe.fit import check_regressor, fit_predict
from rcvlab.probe.stats import mean_ci95, r2_score
from rcvlab.progress import progress_bar
from rcvlab.result import Result, jsonable, nan_if_none, provenance
from rcvlab.sizes import check_max_size, parse_sizes

if TYPE_CHECKING:
    from distributed import Client

POOLS = ("gap", "corrected-gap")

DEFAULT_SIZES = "150:500:50"
"""Default widths (``--sizes``): 150, 200, ..., 500 px.

Paper 000 §4.2 gives 5 training and 20 test images but not the widths; its only size range
is §4.1's 75–500 px. 500 px is kept as the top. The start is 150 px because corrected GAP
needs positions free of padding at *every* requested width: on InceptionV3 (the papers'
network; Figure 7 is at ``mixed0``) 75 px leaves ``mixed0`` a single such position and
``mixed1``/``mixed2`` none, 150 px leaves them 121, 49 and 9. A step of 50 px gives 8 widths,
more than the 5 training images, so each repetition trains on distinct widths."""
DEFAULT_N_TRAIN = 5
"""Training images per repetition (paper 000 §4.2)."""
DEFAULT_N_TEST = 20
"""Held-out images per repetition (paper 000 §4.2)."""
DEFAULT_REPS = 10
"""Repetitions, each with fresh noise."""
DEFAULT_REGRESSOR = "ols"
"""Least squares, as the paper's regression of the width."""
DEFAULT_BATCH_SIZE = 16
"""Images of one width run together."""

_SUMMARY_KEYS = (
    "r2_mean",
    "r2_std",
    "r2_ci95_low",
    "r2_ci95_high",
    "r2_median",
    "r2_q25",
    "r2_q75",
)


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
        if pooling not in POOLS:
            raise RcvlabError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLS)}.")
        vals = self.r2_gap if pooling == "gap" else self.r2_corrected
        if vals is None:
            return dict.fromkeys(_SUMMARY_KEYS)
        v = np.asarray(vals, dtype=np.float64)
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

    def to_dict(self) -> dict[str, Any]:
        """The layer's entry of ``noise.json``: per-repetition R² and both summaries."""
        return {
            "layer": self.layer,
            "positions": self.min_positions,
            "positions_by_size": {str(k): v for k, v in self.positions.items()},
            "r2_gap": list(self.r2_gap),
            "r2_corrected": None if self.r2_corrected is None else list(self.r2_corrected),
            "gap": self.summary("gap"),
            "corrected_gap": self.summary("corrected-gap"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseLayer:
        """Rebuild from :meth:`to_dict` (the summaries are recomputed, not read)."""
        cor = d["r2_corrected"]
        return cls(
            layer=str(d["layer"]),
            positions={int(k): int(v) for k, v in d["positions_by_size"].items()},
            r2_gap=tuple(nan_if_none(v) for v in d["r2_gap"]),
            r2_corrected=None if cor is None else tuple(nan_if_none(v) for v in cor),
        )


@dataclass(frozen=True)
class NoiseSizeResult(Result):
    """Result of :func:`noise_size`: per layer, R² of the width with regular and corrected GAP.

    Attributes
    ----------
    model, weights : str
        The network and its weights (``imagenet``, ``random``, a path, ``custom``).
    sizes : tuple of int
        The widths the images were drawn from.
    n_train, n_test, reps : int
    regressor : str
    alpha : float or None
    layers : tuple of NoiseLayer
    widths : tuple of tuple of int
        ``(reps, n_train + n_test)``: every image's width, training images first.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, versions, seed (of the
        noise, the widths and random weights), ``weights_id``.

    ``to_frame()`` has one row per layer and pooling, with the columns ``layer``,
    ``pooling`` (``gap`` or ``corrected-gap``), ``r2_mean``, ``r2_std`` (``ddof=1``),
    ``r2_ci95_low`` / ``r2_ci95_high`` (Student-t 95 % interval of the mean over
    repetitions), ``r2_median``, ``r2_q25``, ``r2_q75`` (quartiles over repetitions),
    ``positions_min`` / ``positions_max`` (positions corrected GAP averages at the smallest
    and largest width; empty for ``gap``) and ``n_reps``. A layer without positions has
    empty R² cells for ``corrected-gap``.
    """

    kind: ClassVar[str] = "noise_size"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "layer",
        "pooling",
        *_SUMMARY_KEYS,
        "positions_min",
        "positions_max",
        "n_reps",
    )

    model: str
    weights: str
    sizes: tuple[int, ...]
    n_train: int
    n_test: int
    reps: int
    regressor: str
    alpha: float | None
    layers: tuple[NoiseLayer, ...]
    widths: tuple[tuple[int, ...], ...]
    meta: dict[str, Any]

    @property
    def seed(self) -> int | None:
        """The seed of the noise and the widths (``meta["seed"]``)."""
        return self.meta.get("seed")

    def layer(self, name: str) -> NoiseLayer:
        """The entry of one layer."""
        for entry in self.layers:
            if entry.layer == name:
                return entry
        raise RcvlabError(f"No layer {name!r} in this result ({', '.join(self.layer_names)}).")

    @property
    def layer_names(self) -> list[str]:
        """Layer names, in order."""
        return [e.layer for e in self.layers]

    def to_frame(self) -> pd.DataFrame:
        """One row per layer and pooling (columns: see the class docstring)."""
        rows = []
        for e in self.layers:
            for pooling in POOLS:
                corrected = pooling != "gap"
                rows.append(
                    {
                        "layer": e.layer,
                        "pooling": pooling,
                        **e.summary(pooling),
                        "positions_min": e.min_positions if corrected else None,
                        "positions_max": max(e.positions.values()) if corrected else None,
                        "n_reps": self.reps,
                    }
                )
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """Settings, every image's width, per layer the per-repetition R² and summaries."""
        return jsonable(
            {
                "model": self.model,
                "weights": self.weights,
                "sizes": list(self.sizes),
                "n_train": self.n_train,
                "n_test": self.n_test,
                "reps": self.reps,
                "regressor": self.regressor,
                "alpha": self.alpha,
                "layers": [e.to_dict() for e in self.layers],
                "widths": [list(w) for w in self.widths],
                "meta": self.meta,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseSizeResult:
        """Rebuild from :meth:`to_dict`; also reads ``noise.json`` of rcvlab 0.x, which kept
        ``seed``, ``command``, ``rcvlab_version`` and ``extra`` (widths) as fields."""
        extra = dict(d.get("extra") or {})
        meta = d.get("meta")
        if meta is None:  # the layout before the result contract
            meta = {
                "command": d.get("command", ""),
                "rcvlab_version": d.get("rcvlab_version", ""),
                "versions": {},
                "seed": d.get("seed"),
                **{k: v for k, v in extra.items() if k != "widths"},
            }
        widths = d.get("widths", extra.get("widths", []))
        alpha = d.get("alpha")
        return cls(
            model=str(d["model"]),
            weights=str(d["weights"]),
            sizes=tuple(int(s) for s in d["sizes"]),
            n_train=int(d["n_train"]),
            n_test=int(d["n_test"]),
            reps=int(d["reps"]),
            regressor=str(d["regressor"]),
            alpha=None if alpha is None else float(alpha),
            layers=tuple(NoiseLayer.from_dict(e) for e in d["layers"]),
            widths=tuple(tuple(int(v) for v in row) for row in widths),
            meta=dict(meta),
        )


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


def check_noise_options(
    *,
    sizes: str | int | Sequence[int],
    n_train: int,
    n_test: int,
    reps: int,
    batch_size: int,
    regressor: str,
    alpha: float | None,
    seed: int,
) -> tuple[list[int], str, float | None]:
    """Validate :func:`noise_size`'s options (no model needed); ``(sizes, regressor, alpha)``.

    Raises
    ------
    RcvlabError
        One line for the first bad option: fewer than two sizes, a size above
        :data:`rcvlab.sizes.MAX_SIZE`, ``n_train < 2``, ``n_test < 2``, ``reps < 1``,
        ``batch_size < 1``, a negative seed, an unknown regressor or a bad alpha.
    """
    check_int("n_train", n_train, 2, "a regression needs two training images")
    check_int("n_test", n_test, 2, "R² needs two held-out images of different widths")
    check_int("reps", reps, 1)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    reg, a = check_regressor(regressor, alpha)
    size_list = parse_sizes(sizes)
    if len(size_list) < 2:
        raise RcvlabError(
            f"Need at least two different sizes to regress the width, got {size_list}; "
            f"give a range such as {DEFAULT_SIZES}."
        )
    check_max_size(size_list)
    return size_list, reg, a


def noise_size(
    model: str | Model,
    *,
    weights: str | None = None,
    sizes: str | Sequence[int] = DEFAULT_SIZES,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int = DEFAULT_N_TEST,
    reps: int = DEFAULT_REPS,
    layers: Sequence[str] | str | None = None,
    regressor: str = DEFAULT_REGRESSOR,
    alpha: float | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
    client: Client | None = None,
) -> NoiseSizeResult:
    """Regress the width of white-noise images from each layer, with regular and corrected GAP.

    There is no ``data`` argument: the experiment's inputs are white noise that it draws
    itself (seeded by ``seed``), because the point is images that carry no object and no
    scale, only their width. Every option is keyword-only.

    Every repetition draws ``n_train + n_test`` new noise images. Widths are drawn from
    ``sizes`` in a balanced way: a random permutation of the sizes, repeated as needed (so
    the training widths are distinct when there are at least ``n_train`` sizes, and neither
    side is ever of one width). Images enter the network at their own size (normalised with
    the model's mean and std, not resized). A linear probe (:func:`rcvlab.probe.fit.
    fit_predict`: features standardised on the training images, min-norm least squares by
    default) is fitted on the training images and scored by R² on the test images.

    Parameters
    ----------
    model : str or Model
        Registry name (loaded with ``weights`` and ``seed``) or a loaded model. Its module
        runs on ``device`` in eval mode and comes back as it was given (device, memory
        format, every submodule's ``training`` flag).
    weights : str, optional
        ``imagenet`` (default), ``random`` or a state-dict path; only with a model name
        (a loaded Model has its weights).
    sizes : str or sequence of int
        Square widths in pixels (default :data:`DEFAULT_SIZES`; see
        :func:`rcvlab.sizes.parse_sizes`); at least two.
    n_train, n_test : int
        Images to fit (>= 2) and to score on (>= 2), per repetition (5 and 20 in the paper).
    reps : int
        Repetitions (>= 1).
    layers : sequence of str or "all", optional
        Layers (default: all of the model's named layers).
    regressor, alpha
        As in :func:`rcvlab.probe.fit.fit_rcv` (``ols`` as in the paper).
    seed : int
        Seeds the noise, the widths and (with a model name) the random weights.
    batch_size : int
        Images of one width run together.
    device : str, optional
        Default: CUDA when available.
    progress : bool or callable
        A progress bar, or ``progress(done, total)``.
    command : str
        The command line, recorded in ``meta``.
    client : distributed.Client, optional
        Fit on this Dask cluster (:mod:`rcvlab.distributed.tasks`): the features are
        computed here, scattered once to every worker, and each layer's repetitions are one
        task. The fits run with one BLAS thread here and there, so the result is the same.

    Returns
    -------
    NoiseSizeResult

    Raises
    ------
    RcvlabError
        Before any image is drawn: a bad option (:func:`check_noise_options`), ``weights``
        with a loaded model, an unknown device, a size too small for the network.
    UnknownNameError
        Unknown model, layer or regressor.
    """
    size_list, reg, a = check_noise_options(
        sizes=sizes,
        n_train=n_train,
        n_test=n_test,
        reps=reps,
        batch_size=batch_size,
        regressor=regressor,
        alpha=alpha,
        seed=seed,
    )
    check_client(client)
    if weights is not None and not isinstance(model, str):
        raise RcvlabError(
            f"weights={weights!r} applies to a model name only; this model is loaded with "
            "its weights already (drop weights, or pass the name)."
        )
    dev = choose_device(device)
    model = as_model(model, "imagenet" if weights is None else weights, seed)
    specs = model.resolve(layers)
    names = [s.name for s in specs]
    masks: dict[int, dict[str, np.ndarray]] = {}
    for s in size_list:
        try:
            masks[s] = padding_masks(model.module, specs, s)
        except RcvlabError as e:
            raise RcvlabError(
                f"Size {s} px is too small for {model.name}: {e} Use --sizes from a larger "
                f"start (the model's own input size is {model.input_size})."
            ) from None
    positions = {k: {s: int(masks[s][k].sum()) for s in size_list} for k in names}

    widths, images = draw_noise(size_list, reps, n_train, n_test, seed)
    feats = _features(model, specs, images, widths.ravel(), masks, batch_size, dev, progress)
    # One call per layer: the repetitions' fits of both poolings. The features are shared
    # inputs, scattered once when the calls are tasks on a cluster.
    shared: dict[Any, Any] = {"widths": widths}
    calls = []
    for k in names:
        pools = POOLS if min(positions[k].values()) > 0 else ("gap",)
        for p in pools:
            shared[(p, k)] = feats[p][k]
        x = {p: Shared((p, k)) for p in pools}
        calls.append(Call(_layer_scores, (x, Shared("widths"), n_train, reg, a)))
    # One BLAS thread, as probe_layers: the fits are small, and the numbers then do not
    # depend on the thread count (a cluster's tasks run with one thread too).
    with threadpool_limits(limits=1, user_api="blas"):
        scores = run_calls(client, calls, shared, name="rcvlab-noise")
    out = [
        NoiseLayer(
            layer=k,
            positions=positions[k],
            r2_gap=sc["gap"],
            r2_corrected=sc.get("corrected-gap"),
        )
        for k, sc in zip(names, scores, strict=True)
    ]
    return NoiseSizeResult(
        model=model.name,
        weights=model.weights,
        sizes=tuple(size_list),
        n_train=int(n_train),
        n_test=int(n_test),
        reps=int(reps),
        regressor=reg,
        alpha=a,
        layers=tuple(out),
        widths=tuple(tuple(int(v) for v in row) for row in widths),
        meta=provenance(
            command=command,
            seed=int(seed),
            weights_id=model.weights_id,
            device=str(dev),
            batch_size=int(batch_size),
        ),
    )


def _layer_scores(
    feats: Mapping[str, np.ndarray],
    widths: np.ndarray,
    n_train: int,
    regressor: str,
    alpha: float | None,
) -> dict[str, tuple[float, ...]]:
    """One layer's test R² of the width per repetition, for every pooling in ``feats``."""
    reps, per = widths.shape
    out = {}
    for pooling, X in feats.items():
        Xr = X.reshape(reps, per, -1)
        vals = []
        for r in range(reps):
            y = widths[r].astype(np.float64)
            pred, _, _ = fit_predict(
                Xr[r, :n_train], y[:n_train, None], Xr[r, n_train:], regressor, alpha
            )
            vals.append(r2_score(y[n_train:], pred[:, 0]))
        out[pooling] = tuple(vals)
    return out


def _features(
    model: Model,
    specs: Sequence[LayerSpec],
    images: list[np.ndarray],
    widths: np.ndarray,
    masks: dict[int, dict[str, np.ndarray]],
    batch_size: int,
    dev: torch.device,
    progress: bool | Callable[[int, int], None],
) -> dict[str, dict[str, np.ndarray]]:
    """Both poolings of every layer from one forward pass per batch of equal-size images."""
    mean = torch.tensor(model.preprocessing.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocessing.std, device=dev).view(1, 3, 1, 1)
    n = len(images)
    res: dict[str, dict[str, np.ndarray]] = {"gap": {}, "corrected-gap": {}}
    bar = progress_bar(progress, n, f"noise {model.name} ({model.weights})")
    with borrowed(model.module, dev) as module, bar as tick:
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


def _both(
    cgap: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([gap(x), cgap(x)], dim=1)

    return pool


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "DEFAULT_REGRESSOR",
    "DEFAULT_REPS",
    "DEFAULT_SIZES",
    "NoiseLayer",
    "NoiseSizeResult",
    "check_noise_options",
    "draw_noise",
    "noise_images",
    "noise_size",
]
