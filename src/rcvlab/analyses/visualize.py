"""Activation maximisation: the image a channel (or an RCV direction) of a layer likes most.

Paper 004 (METHOD.md §7) shows, with the Lucid toolbox, what single channels of InceptionV3
respond to before and after finetuning. This module is a compact re-implementation on
``torch.fft`` and ``F.affine_grid`` (torch-lucent is unmaintained and leaves its hooks on the
model), with Lucid's choices:

* **Parametrisation.** Each image is a spectrum ``(3, H, W//2+1)`` of complex coefficients
  (initialised ``N(0, 0.01²)``), scaled by ``1 / max(f, 1/max(H, W))`` (``decay_power`` 1:
  the ``1/f`` fall-off of natural images, Lucid's ``rfft2d_freqs``), brought to pixels by an
  orthonormal inverse real FFT and divided by 4 (:func:`fourier_image`); the three channels
  are then mixed by Lucid's colour decorrelation matrix ``color_correlation_svd_sqrt``
  scaled by its largest column norm (:func:`decorrelate_colour`), and a sigmoid maps them to
  ``[0, 1]`` (:func:`to_rgb`). The network sees ``(x - mean) / std`` with the model's own
  preprocessing mean and std.
* **Robustness transforms**, drawn again at every step (Lucid's ``standard_transforms``, the
  paper's code): pad 12 px with grey (0.5), jitter 8 px, scale by one of
  ``1 + (i - 5) / 50``, ``i = 0..10`` (1 ± 0.1), rotate by one of ``-10..10`` degrees (0
  six times as often as any other), jitter 4 px. They are composed into one affine map
  applied by a single ``F.affine_grid`` + ``F.grid_sample`` (bilinear) after the pad; the
  network's input is ``size + 2·12 - 8 - 4`` px (140 for 128), as Lucid's crops leave it. Unlike
  Lucid's, the scale zooms within that fixed window instead of resizing it, so a batch of
  images with different transforms goes through the network at once.
* **Objective** of image ``b``: the mean over positions of channel ``c_b`` of the layer's
  output (Lucid's ``channel``; the layer's GAP feature ``c_b``), or for ``rcv=`` the
  projection ``<GAP(A), v>`` of the layer's GAP features on the unit RCV ``v`` (``+v`` and
  ``-v``: "more" and "less" of the concept), minus ``tv`` times the total variation of the
  image (``tf.image.total_variation``: the sum of absolute differences between neighbouring
  pixels of the ``[0, 1]`` image, per image). Maximised with Adam; the forward pass stops
  once the layer's output is read.
* **Schedule.** ``steps=None`` is the paper's code: three stages on the same parameters
  (a new Adam per stage): 512 steps lr 0.1; 1,024 steps lr 0.1 with TV 0.025; 2,048 steps
  lr 0.01 with TV 0.0025 (3,584 in all, :data:`PAPER_SCHEDULE`). ``steps=N`` is a short
  mode: one stage of ``N`` steps at lr :data:`SHORT_LR` without TV. ``lr=`` and ``tv=``
  given explicitly replace every stage's.

Every random draw (initial spectrum, transforms) comes from a ``torch.Generator`` seeded by
``(seed, target)`` only, so an image depends on the seed and its channel, not on the other
channels asked for with it nor on the global RNG: the same seed gives the same image (bit for
bit on the CPU; on CUDA ``grid_sample``'s backward adds atomically, so last bits may vary).
The module comes back as given: device, ``training`` flags
(:func:`rcvlab.models.state.borrowed`), ``requires_grad`` flags, and no hook left.
"""

from __future__ import annotations

import base64
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from rcvlab.analyses.common import check_int, frozen_array
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.extract import as_image_set, choose_device, extract_features
from rcvlab.features.hooks import capture
from rcvlab.features.pooling import gap
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model, as_model
from rcvlab.models.state import borrowed
from rcvlab.probe.fit import fit_rcv
from rcvlab.probe.sensitivity import raw_direction
from rcvlab.progress import progress_bar
from rcvlab.result import Result, jsonable, nan_if_none, provenance

FloatArray = NDArray[np.float64]

COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
"""Lucid's square root of the ImageNet colour correlation (rows: R, G, B outputs)."""
COLOR_CORRELATION_NORMALISED = COLOR_CORRELATION_SVD_SQRT / float(
    np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
)
""":data:`COLOR_CORRELATION_SVD_SQRT` divided by its largest column norm, as Lucid uses it."""

SPECTRUM_SD = 0.01
"""Standard deviation of the initial Fourier coefficients (Lucid's ``sd``)."""
DECAY_POWER = 1.0
"""Exponent of the ``1/f`` scaling of the spectrum."""
FOURIER_DIVISOR = 4.0
"""Lucid divides the inverse FFT by 4 before the colour transform."""

PAD = 12
"""Grey (0.5) border added before the random transforms."""
JITTERS = (8, 4)
"""The two random crops (pixels), before the scale/rotation and after it."""
SCALES: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
"""Random zoom factors (1 ± 0.1 in steps of 0.02)."""
ANGLES: tuple[int, ...] = (*range(-10, 11), 0, 0, 0, 0, 0)
"""Random rotations in degrees (0 drawn six times as often as any other)."""


@dataclass(frozen=True)
class Stage:
    """One stage of the optimisation: ``steps`` Adam steps at ``lr`` with TV weight ``tv``."""

    steps: int
    lr: float
    tv: float = 0.0


PAPER_SCHEDULE: tuple[Stage, ...] = (
    Stage(512, 0.1, 0.0),
    Stage(1024, 0.1, 0.025),
    Stage(2048, 0.01, 0.0025),
)
"""The three stages of the paper's code (3,584 steps)."""
SHORT_LR = 0.05
"""Learning rate of the short mode (``steps=N``)."""
DEFAULT_SIZE = 128
"""Image side of the paper's code (pixels)."""
DEFAULT_BATCH = 16
"""Images optimised together (one per channel)."""

RCV_TARGETS = ("+rcv", "-rcv")
"""Target labels of the two images of ``rcv=`` mode (towards more / less of the concept)."""


# -- parametrisation ----------------------------------------------------------------------


def rfft2d_freqs(h: int, w: int) -> FloatArray:
    """Frequency magnitude (cycles per pixel) of every coefficient of a real 2-D FFT.

    Returns
    -------
    ndarray of shape (h, w // 2 + 1)
        ``sqrt(fy² + fx²)`` with ``fy = fftfreq(h)``, ``fx = rfftfreq(w)``.
    """
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = DECAY_POWER) -> FloatArray:
    """Lucid's ``1 / max(f, 1 / max(h, w)) ** decay_power`` for every coefficient."""
    return 1.0 / np.maximum(rfft2d_freqs(h, w), 1.0 / max(h, w)) ** decay_power


def fourier_image(
    spectrum: torch.Tensor, size: int | tuple[int, int], decay_power: float = DECAY_POWER
) -> torch.Tensor:
    """Pixels of Fourier parameters, before the colour transform.

    Parameters
    ----------
    spectrum : Tensor of shape (n, 3, h, w // 2 + 1, 2)
        Real and imaginary parts of the coefficients.
    size : int or (int, int)
        ``(h, w)`` of the image.
    decay_power : float

    Returns
    -------
    Tensor of shape (n, 3, h, w)
        ``irfft2(spectrum * spectrum_scale, norm="ortho") / 4``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    scale = torch.as_tensor(spectrum_scale(h, w, decay_power), dtype=spectrum.dtype)
    coef = torch.view_as_complex(spectrum.contiguous()) * scale.to(spectrum.device)
    return torch.fft.irfft2(coef, s=(h, w), norm="ortho") / FOURIER_DIVISOR


def decorrelate_colour(t: torch.Tensor) -> torch.Tensor:
    """Mix the channels of ``(n, 3, h, w)`` by :data:`COLOR_CORRELATION_NORMALISED`:
    output channel ``i`` is ``sum_j M[i, j] t_j`` (Lucid's ``_linear_decorelate_color``)."""
    m = torch.as_tensor(COLOR_CORRELATION_NORMALISED, dtype=t.dtype, device=t.device)
    return torch.einsum("ij,njhw->nihw", m, t)


def to_rgb(spectrum: torch.Tensor, size: int, decay_power: float = DECAY_POWER) -> torch.Tensor:
    """The images in ``[0, 1]``: ``sigmoid(decorrelate_colour(fourier_image(spectrum)))``."""
    return torch.sigmoid(decorrelate_colour(fourier_image(spectrum, size, decay_power)))


def spectrum_shape(size: int) -> tuple[int, int, int, int]:
    """Shape of one image's parameters: ``(3, size, size // 2 + 1, 2)``."""
    return (3, size, size // 2 + 1, 2)


def to_uint8(images: torch.Tensor) -> NDArray[np.uint8]:
    """``(n, 3, h, w)`` in ``[0, 1]`` as ``(n, h, w, 3)`` uint8 (rounded)."""
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per image, the sum of absolute differences between vertically and horizontally
    neighbouring pixels over all channels (``tf.image.total_variation``): ``(n,)``."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().sum(dim=(1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))
    return dy + dx


# -- random transforms --------------------------------------------------------------------


def target_generator(seed: int, key: tuple[int, int]) -> torch.Generator:
    """The generator of one image: seeded by ``(seed, *key)`` only (``key`` = ``(0, channel)``
    for a channel, ``(1, 0 or 1)`` for the ``+``/``-`` RCV image)."""
    state = np.random.SeedSequence((seed, *key)).generate_state(1, np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def draw_transforms(gen: torch.Generator, steps: int) -> torch.Tensor:
    """The random transforms of ``steps`` steps of one image, from its generator.

    Returns
    -------
    Tensor of shape (steps, 6), float64
        Per step: first jitter offset ``(x, y)`` from the centred crop (pixels), scale,
        angle (radians), second jitter offset ``(x, y)``.
    """
    j1, j2 = JITTERS
    d1 = torch.randint(0, j1 + 1, (steps, 2), generator=gen).double() - j1 / 2
    s = torch.tensor(SCALES, dtype=torch.float64)[
        torch.randint(0, len(SCALES), (steps,), generator=gen)
    ]
    a = torch.tensor(ANGLES, dtype=torch.float64)[
        torch.randint(0, len(ANGLES), (steps,), generator=gen)
    ]
    d2 = torch.randint(0, j2 + 1, (steps, 2), generator=gen).double() - j2 / 2
    return torch.cat([d1, s[:, None], torch.deg2rad(a)[:, None], d2], dim=1)


def network_size(size: int, transforms: bool = True) -> int:
    """Side of the network's input: ``size + 2·PAD - sum(JITTERS)`` with the transforms."""
    return size + 2 * PAD - sum(JITTERS) if transforms else size


def affine_theta(params: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid``'s ``theta`` ``(n, 2, 3)`` of the composed transforms.

    In centred pixel coordinates an output pixel ``u`` of the ``network_size`` window reads
    the padded image at ``A (u + t2) + t1``, ``A = R(angle) / scale``: the second crop, then
    the inverse rotation and zoom, then the first crop. Integer jitters with no rotation or
    zoom land exactly on pixel centres (a pure shift).

    Parameters
    ----------
    params : Tensor of shape (n, 6)
        Rows of :func:`draw_transforms`.
    size : int
        Side of the (unpadded) image.
    """
    lp = size + 2 * PAD
    lo = network_size(size)
    t1, s, a, t2 = params[:, 0:2], params[:, 2], params[:, 3], params[:, 4:6]
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    A = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    t = torch.einsum("nij,nj->ni", A, t2) + t1
    return torch.cat([A * (lo / lp), (2 * t / lp)[:, :, None]], dim=2)


def transform(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Pad ``(n, 3, S, S)`` images with grey and apply each one's transform: the network's
    ``(n, 3, L, L)`` input in ``[0, 1]``, ``L = network_size(S)``."""
    size = images.shape[-1]
    padded = F.pad(images, (PAD, PAD, PAD, PAD), value=0.5)
    lo = network_size(size)
    theta = affine_theta(params, size).to(images.dtype).to(images.device)
    grid = F.affine_grid(theta, [images.shape[0], 3, lo, lo], align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)


# -- options ------------------------------------------------------------------------------


def parse_channels(spec: int | str | Sequence[int], n_channels: int | None = None) -> list[int]:
    """Channel indices from an int, a list, or a string of comma-separated parts, each an
    index or a Python slice ``start:stop[:step]`` (``"0:512:10"``, ``"3,7,100:110"``).

    Parameters
    ----------
    spec : int, str or sequence of int
    n_channels : int, optional
        The layer's channel count: needed for an open slice (``"0::10"``) and checked
        against (one-line error naming the count).

    Returns
    -------
    list of int
        In the order given.

    Raises
    ------
    RcvlabError
        A part that is not an index or slice, a negative or repeated index, no channel, an
        open slice without ``n_channels``, or an index ``>= n_channels``.
    """
    hint = "give indices and slices such as '0:512:10' or '3,7,12'"
    if isinstance(spec, bool):
        raise RcvlabError(f"Bad channels {spec!r}; {hint}.")
    if isinstance(spec, int | np.integer):
        out = [int(spec)]
    elif isinstance(spec, str):
        out = []
        for part in (p.strip() for p in spec.split(",")):
            try:
                if ":" in part:
                    bits = part.split(":")
                    if len(bits) > 3:
                        raise ValueError
                    start, stop, step = [int(b) if b.strip() else None for b in bits] + [None] * (
                        3 - len(bits)
                    )
                    if stop is None:
                        if n_channels is None:
                            raise RcvlabError(
                                f"Channels '{part}' has no stop and the layer's channel count "
                                f"is not known here; {hint}."
                            )
                        stop = n_channels
                    if (step or 1) <= 0 or (start or 0) < 0 or stop < 0:
                        raise ValueError
                    out.extend(range(start or 0, stop, step or 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise RcvlabError(f"Bad channels '{spec}' (part '{part}'); {hint}.") from None
    else:
        try:
            out = [int(c) for c in spec]
        except (TypeError, ValueError):
            raise RcvlabError(f"Bad channels {spec!r}; {hint}.") from None
    if not out:
        raise RcvlabError(f"No channels in {spec!r}; {hint}.")
    if min(out) < 0:
        raise RcvlabError(f"Channel {min(out)} is negative; channels count from 0.")
    if len(set(out)) != len(out):
        dup = next(c for c in out if out.count(c) > 1)
        raise RcvlabError(f"Channel {dup} is asked for twice in {spec!r}; give each once.")
    if n_channels is not None and max(out) >= n_channels:
        raise RcvlabError(
            f"Channel {max(out)} is out of range: the layer has {n_channels} channels "
            f"(0–{n_channels - 1})."
        )
    return out


def schedule(
    steps: int | None = None, lr: float | None = None, tv: float | None = None
) -> tuple[Stage, ...]:
    """The stages of an optimisation: the paper's three (``steps=None``) or one stage of
    ``steps`` (lr :data:`SHORT_LR`, no TV); ``lr`` / ``tv`` replace every stage's.

    Raises
    ------
    RcvlabError
        ``steps`` not an integer >= 1, ``lr`` not > 0, ``tv`` negative or not finite.
    """
    if lr is not None and (
        isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0
    ):
        raise RcvlabError(f"lr must be a number > 0, got {lr!r}; e.g. lr=0.05.")
    if tv is not None and (
        isinstance(tv, bool) or not isinstance(tv, int | float) or not math.isfinite(tv) or tv < 0
    ):
        raise RcvlabError(f"tv must be a number >= 0, got {tv!r}; e.g. tv=0.0025.")
    if steps is None:
        stages = PAPER_SCHEDULE
    else:
        n = check_int("steps", steps, 1, "or leave it out for the paper's 3-stage schedule")
        stages = (Stage(n, SHORT_LR, 0.0),)
    return tuple(
        Stage(s.steps, float(s.lr if lr is None else lr), float(s.tv if tv is None else tv))
        for s in stages
    )


# -- the network --------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a hook once the layer's output is read, to skip the rest of the network."""


@contextmanager
def layer_reader(
    module: nn.Module, spec: LayerSpec
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function ``x -> (n, C)`` GAP of ``spec``'s output that runs the network only up to
    that layer. Hooks are registered for the ``with`` block and removed on exit."""
    target = module.get_submodule(spec.module)
    with capture(module, [spec], gap) as out:

        def stop(_m: nn.Module, _i: object, _y: object) -> None:
            # registered after capture's hooks on the same module, so it fires once the
            # layer's output is pooled
            if spec.name in out:
                raise _Stop

        handle = target.register_forward_hook(stop)
        try:

            def read(x: torch.Tensor) -> torch.Tensor:
                out.clear()
                try:
                    module(x)
                except _Stop:
                    pass
                if spec.name not in out:
                    raise RcvlabError(
                        f"Layer {spec.name} ({spec.module}) was not reached by the forward pass."
                    )
                return out[spec.name]

            yield read
        finally:
            handle.remove()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def layer_dim(
    read: Callable[[torch.Tensor], torch.Tensor], size: int, device: torch.device, name: str
) -> int:
    """The layer's channel count from one forward pass of a blank ``size`` px input."""
    x = torch.zeros(1, 3, size, size, device=device)
    try:
        with torch.no_grad():
            return int(read(x).shape[1])
    except RcvlabError:
        raise
    except RuntimeError as e:
        raise RcvlabError(
            f"{name} cannot run on {size} px inputs ({_first_line(e)}); use a larger size."
        ) from None


# -- RCV directions -----------------------------------------------------------------------


def rcv_direction(
    model: Model | str,
    data: Any,
    layer: str,
    measure: str,
    *,
    alpha: float | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FloatArray:
    """The unit Regression Concept Vector of ``measure`` at ``layer``, in raw GAP space.

    Ridge regression of the measure on the layer's GAP features, standardised (``ddof=0``)
    on all images with a finite measure (:func:`rcvlab.probe.fit.fit_rcv`); the direction in
    the raw feature space is ``coef / std`` (0 on constant columns), normalised to unit
    length (:func:`rcvlab.probe.sensitivity.raw_direction`). What :func:`visualize` takes
    as ``rcv=``.

    Parameters
    ----------
    model : Model or str
    data : ImageSet or images
        Images with the measure (held by the data or computed by :mod:`rcvlab.measures`).
    layer : str
        rcvlab layer name or dotted module path.
    measure : str
    alpha : float, optional
        Ridge penalty; None chooses it by leave-one-out (as :func:`rcvlab.relevance`).
    batch_size : int
    device : str or torch.device, optional
    cache_dir : path, optional
        Feature cache (:func:`rcvlab.extract_features`).

    Returns
    -------
    ndarray of shape (d,)

    Raises
    ------
    UnknownNameError
        Unknown layer or measure.
    DataError
        Fewer than 3 images with a finite measure and features, or no direction.
    """
    m = as_model(model)
    spec = m.resolve([layer])[0]
    images = as_image_set(data)
    y = np.asarray(images.measure(measure), dtype=np.float64)
    feats = extract_features(
        m, images, [spec.name], batch_size=batch_size, device=device, cache_dir=cache_dir
    )
    X = np.asarray(feats[spec.name], dtype=np.float64)
    rows = np.isfinite(y) & np.asarray(feats.valid, dtype=bool) & np.isfinite(X).all(axis=1)
    if rows.sum() < 3:
        raise DataError(
            f"Measure {measure} has {int(rows.sum())} usable images (finite value and "
            "features); an RCV needs at least 3."
        )
    rcv = fit_rcv(X[rows], y[rows], "ridge", alpha)
    return raw_direction(rcv)


def rcv_vector(
    rcv: ArrayLike | Result | str | os.PathLike[str],
    layer: str,
    measure: str | None = None,
    model: Model | None = None,
) -> tuple[FloatArray, str]:
    """An RCV as a unit vector and its label, from what :func:`visualize` accepts.

    ``rcv`` is a vector (its label is ``measure`` or ``"rcv"``), a
    :class:`~rcvlab.analyses.relevance.RelevanceResult` or the path of its
    ``relevance.json`` (its direction of ``measure``, which may be left out when it holds
    one; its layer must be ``layer``, and its network ``model`` when given: a direction
    fitted in one network's feature space means nothing in another's).

    Raises
    ------
    RcvlabError
        Not a vector, zero or not finite; a result of another kind or layer; a measure the
        result does not hold.
    """
    from rcvlab.analyses.relevance import RelevanceResult
    from rcvlab.result import load_result

    label = measure or "rcv"
    if isinstance(rcv, str | os.PathLike):
        if not os.path.isfile(rcv):
            raise RcvlabError(
                f"rcv={os.fspath(rcv)!r} is not a file; give a relevance.json, a vector, or "
                "fit the RCV of a measure first: rcv_direction(model, data, layer, measure)."
            )
        rcv = load_result(rcv)
    if isinstance(rcv, Result):
        if not isinstance(rcv, RelevanceResult):
            raise RcvlabError(
                f"rcv= takes a relevance result (its RCV directions), not a '{rcv.kind}' "
                "result; or give the vector, or a measure and data (rcv_direction)."
            )
        if rcv.layer != layer:
            raise RcvlabError(
                f"The relevance result's RCVs are of layer {rcv.layer}, not {layer}; "
                f"visualise layer {rcv.layer}."
            )
        wid = rcv.meta.get("weights_id")
        if model is not None and (
            (rcv.model and rcv.model != model.name) or (wid and wid != model.weights_id)
        ):
            raise RcvlabError(
                f"The relevance result's RCVs were fitted in {rcv.model} ({rcv.weights}), not "
                f"in {model.name} ({model.weights}); fit them in this network (--rcv MEASURE "
                "--data DATA, or rcv_direction)."
            )
        have = list(rcv.directions)
        if measure is None and len(have) == 1:
            measure = have[0]
        if measure not in rcv.directions:
            raise RcvlabError(
                f"The relevance result has RCVs of {', '.join(have) or 'no measure'}, not "
                f"{measure!r}; pick one with rcv_measure=."
            )
        label = measure
        rcv = rcv.directions[measure]
    try:
        v = np.asarray(rcv, dtype=np.float64)
    except (TypeError, ValueError):
        raise RcvlabError(f"rcv must be a vector of numbers, got {type(rcv).__name__}.") from None
    if v.ndim != 1 or v.size == 0:
        raise RcvlabError(f"rcv must be a 1-D vector, got shape {v.shape}.")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(v).all() or norm == 0:
        raise RcvlabError("rcv must be finite and not all zero.")
    return v / norm, label


# -- the result ---------------------------------------------------------------------------


def png_base64(image: NDArray[np.uint8]) -> str:
    """A ``(h, w, 3)`` uint8 image as base64 PNG text (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), "RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_from_base64(text: str) -> NDArray[np.uint8]:
    """Inverse of :func:`png_base64`."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class VisualizeResult(Result):
    """Images that maximise single channels (or an RCV direction) of one layer.

    Attributes
    ----------
    model, weights : str
        The network and its weights (``imagenet``, ``random``, a path ...).
    layer : str
        The layer's rcvlab name (or dotted module path).
    layer_module : str
        Its dotted module path.
    n_channels : int
        The layer's channel count (GAP dimension).
    targets : tuple of str
        What each image maximises: a channel index (``"12"``), or ``"+rcv"`` / ``"-rcv"``
        (the projection on the RCV, or its negative).
    images : ndarray of uint8, shape (k, size, size, 3)
        The final images (stored in JSON as base64 PNG, lossless).
    objective_start, objective_end : ndarray of shape (k,)
        The objective (mean channel activation, or RCV projection; without TV) at the start
        (random) and at the end, of the image padded and centred as the network sees it
        during the run (no jitter, zoom or rotation).
    size : int
    seed : int
    stages : tuple of (int, float, float)
        ``(steps, lr, tv)`` of every stage.
    transforms : bool
        Whether the random pad/jitter/scale/rotate were applied.
    rcv_measure : str
        The measure of the RCV in ``rcv`` mode ('' for channels).
    rcv_direction : ndarray or None
        The unit RCV in raw GAP space in ``rcv`` mode.
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`) plus ``device``, ``seconds``,
        ``steps_per_second``, ``batch`` and ``weights_id``.

    ``to_frame()`` has one row per image with the columns ``model``, ``weights``, ``layer``,
    ``target`` (channel index or ``+rcv``/``-rcv``), ``channel`` (the index; -1 for an RCV
    image), ``objective_start``, ``objective_end`` and ``gain`` (end minus start).
    """

    kind: ClassVar[str] = "visualize"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "model",
        "weights",
        "layer",
        "target",
        "channel",
        "objective_start",
        "objective_end",
        "gain",
    )

    model: str
    weights: str
    layer: str
    layer_module: str
    n_channels: int
    targets: tuple[str, ...]
    images: NDArray[np.uint8] = field(repr=False)
    objective_start: FloatArray = field(repr=False)
    objective_end: FloatArray = field(repr=False)
    size: int = DEFAULT_SIZE
    seed: int = 0
    stages: tuple[tuple[int, float, float], ...] = ()
    transforms: bool = True
    rcv_measure: str = ""
    rcv_direction: FloatArray | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> list[int]:
        """Channel index of every image (-1 for an RCV image)."""
        return [int(t) if t.lstrip("-").isdigit() else -1 for t in self.targets]

    @property
    def steps(self) -> int:
        """Steps over all stages."""
        return sum(s[0] for s in self.stages)

    @property
    def objective(self) -> FloatArray:
        """The final objective of every image (``objective_end``)."""
        return self.objective_end

    def to_frame(self) -> pd.DataFrame:
        """One row per image; the columns are in the class docstring."""
        return pd.DataFrame(
            {
                "model": self.model,
                "weights": self.weights,
                "layer": self.layer,
                "target": list(self.targets),
                "channel": self.channels,
                "objective_start": self.objective_start,
                "objective_end": self.objective_end,
                "gain": self.objective_end - self.objective_start,
            },
            columns=list(self.frame_columns),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "weights": self.weights,
            "layer": self.layer,
            "layer_module": self.layer_module,
            "n_channels": self.n_channels,
            "targets": list(self.targets),
            "size": self.size,
            "seed": self.seed,
            "stages": [list(s) for s in self.stages],
            "transforms": self.transforms,
            "rcv_measure": self.rcv_measure,
            "rcv_direction": None if self.rcv_direction is None else jsonable(self.rcv_direction),
            "objective_start": jsonable(self.objective_start),
            "objective_end": jsonable(self.objective_end),
            "images_png": [png_base64(im) for im in self.images],
            "meta": jsonable(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Any) -> VisualizeResult:
        images = [png_from_base64(t) for t in d["images_png"]]
        size = int(d["size"])
        stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        direction = d.get("rcv_direction")
        return cls(
            model=str(d["model"]),
            weights=str(d["weights"]),
            layer=str(d["layer"]),
            layer_module=str(d["layer_module"]),
            n_channels=int(d["n_channels"]),
            targets=tuple(str(t) for t in d["targets"]),
            images=frozen_array(stack, np.uint8),
            objective_start=frozen_array([nan_if_none(x) for x in d["objective_start"]]),
            objective_end=frozen_array([nan_if_none(x) for x in d["objective_end"]]),
            size=size,
            seed=int(d["seed"]),
            stages=tuple((int(s[0]), float(s[1]), float(s[2])) for s in d["stages"]),
            transforms=bool(d.get("transforms", True)),
            rcv_measure=str(d.get("rcv_measure", "")),
            rcv_direction=None
            if direction is None
            else frozen_array([nan_if_none(x) for x in direction]),
            meta=dict(d.get("meta", {})),
        )


# -- the optimisation ---------------------------------------------------------------------


def _objective(
    pooled: torch.Tensor,
    index: torch.Tensor | None,
    v: torch.Tensor | None,
    sign: torch.Tensor | None,
) -> torch.Tensor:
    """Per image: the pooled feature of its channel, or its signed projection on ``v``."""
    if index is not None:
        return pooled.gather(1, index[:, None])[:, 0]
    if v is None or sign is None:
        raise RcvlabError("visualize needs channels or an RCV to maximise.")
    return (pooled @ v) * sign


def _optimise_chunk(
    read: Callable[[torch.Tensor], torch.Tensor],
    keys: list[tuple[int, int]],
    index: torch.Tensor | None,
    v: torch.Tensor | None,
    sign: torch.Tensor | None,
    *,
    seed: int,
    size: int,
    stages: tuple[Stage, ...],
    transforms: bool,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    tick: Callable[[int], None],
) -> tuple[NDArray[np.uint8], FloatArray, FloatArray]:
    gens = [target_generator(seed, k) for k in keys]
    init = torch.stack([torch.randn(spectrum_shape(size), generator=g) for g in gens]) * SPECTRUM_SD
    spectrum = init.to(device).requires_grad_(True)

    # the objective is reported on the centred window the network sees during the run
    # (no jitter, zoom or rotation), so it is measured at the optimised input size
    centred = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]] * len(keys), dtype=torch.float64)

    def evaluate() -> FloatArray:
        with torch.no_grad():
            img = to_rgb(spectrum, size)
            x = transform(img, centred) if transforms else img
            return _objective(read((x - mean) / std), index, v, sign).double().cpu().numpy()

    start = evaluate()
    for stage in stages:
        opt = torch.optim.Adam([spectrum], lr=stage.lr)
        table = (
            torch.stack([draw_transforms(g, stage.steps) for g in gens], 1) if transforms else None
        )
        for i in range(stage.steps):
            opt.zero_grad(set_to_none=True)
            img = to_rgb(spectrum, size)
            x = transform(img, table[i]) if table is not None else img
            obj = _objective(read((x - mean) / std), index, v, sign)
            if stage.tv > 0:
                obj = obj - stage.tv * total_variation(img)
            (-obj.sum()).backward()
            opt.step()
            tick(1)
    end = evaluate()
    with torch.no_grad():
        images = to_uint8(to_rgb(spectrum, size))
    return images, start, end


def visualize(
    model: Model | str,
    layer: str,
    channels: int | str | Sequence[int] | None = None,
    *,
    seed: int = 0,
    steps: int | None = None,
    size: int = DEFAULT_SIZE,
    lr: float | None = None,
    tv: float | None = None,
    rcv: ArrayLike | Result | str | os.PathLike[str] | None = None,
    rcv_measure: str | None = None,
    transforms: bool = True,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device | None = None,
    progress: bool | Callable[[int, int], None] = False,
    command: str = "",
) -> VisualizeResult:
    """Images that maximise single channels of a layer, or the projection on an RCV.

    See the module docstring for the parametrisation, transforms, objective and schedule.

    Parameters
    ----------
    model : Model or str
        From :func:`rcvlab.load_model` (or a registry name, loaded with ImageNet weights).
    layer : str
        rcvlab layer name or dotted module path (the paper's Figure 1 layers ``Mixed_5b``,
        ``Mixed_5c``, ``Mixed_6a``, ``Mixed_7c`` of InceptionV3 are ``mixed0``, ``mixed1``,
        ``mixed3``, ``mixed10``).
    channels : int, str or sequence of int
        Channel indices, or a string ``"0:512:10"`` / ``"3,7,12"`` (:func:`parse_channels`);
        one image each. Not with ``rcv``.
    seed : int
        Seeds the initial spectra and the transforms (per channel).
    steps : int, optional
        None: the paper's 3-stage schedule (3,584 steps); N: one stage of N steps at lr
        :data:`SHORT_LR` without TV.
    size : int
        Image side in pixels (the network sees ``size + 12`` px with the transforms).
    lr, tv : float, optional
        Replace every stage's learning rate / total-variation weight.
    rcv : array, RelevanceResult or path, optional
        Maximise (``+rcv``) and minimise (``-rcv``) the projection of the layer's GAP
        features on this RCV (:func:`rcv_vector`; :func:`rcv_direction` fits one from a
        measure and data). Its length must be the layer's channel count.
    rcv_measure : str, optional
        The RCV's measure: its label, and which direction of a relevance result.
    transforms : bool
        Apply the random pad/jitter/scale/rotate every step (False: the plain image).
    batch : int
        Images optimised together.
    device : str or torch.device, optional
        Default: CUDA when available.
    progress : bool or callable
        A progress bar, or ``progress(done, total)`` after every step.
    command : str
        Recorded in ``meta``.

    Returns
    -------
    VisualizeResult

    Raises
    ------
    UnknownNameError
        Unknown layer.
    RcvlabError
        Bad options; a channel out of range (the message names the layer's channel count);
        both or neither of ``channels`` and ``rcv``; an RCV of the wrong length.
    """
    stages = schedule(steps, lr, tv)
    size = check_int("size", size, 16, "e.g. size=128")
    seed = check_int("seed", seed, 0)
    batch = check_int("batch", batch, 1)
    if (channels is None) == (rcv is None):
        raise RcvlabError(
            "Give either channels (e.g. channels='0:512:10') or rcv (an RCV to maximise), "
            "not both" + (" nor neither." if channels is None else ".")
        )
    m = as_model(model)
    spec = m.resolve([layer])[0]
    v_np, label = (None, "") if rcv is None else rcv_vector(rcv, spec.name, rcv_measure, m)
    dev = choose_device(device)
    module = m.module
    flags = [(p, p.requires_grad) for p in module.parameters()]
    t0 = time.perf_counter()
    total_steps = 0
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with borrowed(module, dev), layer_reader(module, spec) as read:
            n = layer_dim(read, network_size(size, transforms), dev, m.name)
            if v_np is not None:
                if v_np.size != n:
                    raise RcvlabError(
                        f"The RCV has {v_np.size} values but layer {spec.name} has {n} "
                        "channels; use an RCV of this layer."
                    )
                targets = list(RCV_TARGETS)
                keys = [(1, 0), (1, 1)]
                chans: list[int] = []
            else:
                chans = parse_channels(channels, n)  # type: ignore[arg-type]  # not None here
                targets = [str(c) for c in chans]
                keys = [(0, c) for c in chans]
            mean = torch.tensor(m.preprocessing.mean, device=dev).view(1, 3, 1, 1)
            std = torch.tensor(m.preprocessing.std, device=dev).view(1, 3, 1, 1)
            per_image = sum(s.steps for s in stages)
            chunks = [range(i, min(i + batch, len(keys))) for i in range(0, len(keys), batch)]
            images, starts, ends = [], [], []
            with progress_bar(progress, per_image * len(chunks), "visualize") as tick:
                for chunk in chunks:
                    if v_np is not None:
                        v = torch.as_tensor(v_np, dtype=torch.float32, device=dev)
                        sign = torch.tensor([1.0, -1.0], device=dev)[list(chunk)]
                        index = None
                    else:
                        v = sign = None
                        index = torch.tensor([chans[i] for i in chunk], device=dev)
                    im, s0, s1 = _optimise_chunk(
                        read,
                        [keys[i] for i in chunk],
                        index,
                        v,
                        sign,
                        seed=seed,
                        size=size,
                        stages=stages,
                        transforms=transforms,
                        mean=mean,
                        std=std,
                        device=dev,
                        tick=tick,
                    )
                    images.append(im)
                    starts.append(s0)
                    ends.append(s1)
                    total_steps += per_image
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    seconds = time.perf_counter() - t0
    meta = provenance(
        command=command,
        seed=seed,
        device=str(dev),
        seconds=seconds,
        steps_per_second=total_steps / seconds if seconds > 0 else math.nan,
        batch=batch,
        weights_id=m.weights_id,
        network_input=network_size(size, transforms),
    )
    return VisualizeResult(
        model=m.name,
        weights=m.weights,
        layer=spec.name,
        layer_module=spec.module,
        n_channels=n,
        targets=tuple(targets),
        images=frozen_array(np.concatenate(images), np.uint8),
        objective_start=frozen_array(np.concatenate(starts)),
        objective_end=frozen_array(np.concatenate(ends)),
        size=size,
        seed=seed,
        stages=tuple((s.steps, s.lr, s.tv) for s in stages),
        transforms=bool(transforms),
        rcv_measure=label if v_np is not None else "",
        rcv_direction=None if v_np is None else frozen_array(v_np),
        meta=meta,
    )


__all__ = [
    "ANGLES",
    "COLOR_CORRELATION_NORMALISED",
    "COLOR_CORRELATION_SVD_SQRT",
    "DEFAULT_BATCH",
    "DEFAULT_SIZE",
    "JITTERS",
    "PAD",
    "PAPER_SCHEDULE",
    "RCV_TARGETS",
    "SCALES",
    "SHORT_LR",
    "Stage",
    "VisualizeResult",
    "affine_theta",
    "decorrelate_colour",
    "draw_transforms",
    "fourier_image",
    "layer_dim",
    "layer_reader",
    "network_size",
    "parse_channels",
    "png_base64",
    "png_from_base64",
    "rcv_direction",
    "rcv_vector",
    "rfft2d_freqs",
    "schedule",
    "spectrum_scale",
    "target_generator",
    "to_rgb",
    "to_uint8",
    "total_variation",
    "transform",
]
