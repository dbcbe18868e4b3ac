"""Sensitivity of a class logit along a Regression Concept Vector (Graziani et al. 2018).

Let ``A(x)`` be the output map of a layer for image ``x`` (``(C, H, W)``, ``(H, W, C)``
channels-last or ``(L, C)`` tokens, as the layer's declared layout says) and
``phi(x) = GAP(A(x))`` its globally averaged features, the space in which an RCV is fitted.
Shifting the map by a vector ``u`` at every position, ``A -> A + u`` broadcast over the
positions, shifts the features by exactly ``u`` (``GAP(A + u) = GAP(A) + u``). The shift
goes along the layout's channel axis at every position that GAP averages: a token layer's
class/register tokens (``NLC+k``) are left as they are, since GAP leaves them out. The
*sensitivity* of the logit ``f_K`` of class ``K`` along a unit direction ``v`` of feature
space is the directional derivative

    S(x) = d/dt f_K(network with A(x) replaced by A(x) + t v) at t = 0
         = sum over positions p of  <dF_K/dA_p(x), v>,

where the rest of the network after the layer runs unchanged. rcvlab computes the gradient
``g(x) = dF_K/du`` at ``u = 0`` (one ``d``-vector per image: the sum over positions of the
gradient of the logit with respect to the map) with one backward pass per batch, by a forward
hook that adds a per-image shift ``u_i`` (zeros, requiring grad) to the layer's output. Then
``S(x) = g(x) . v`` for any number of directions at no further cost.

Images in a batch are independent in eval mode (BatchNorm uses its running statistics), so
the gradient of the *sum* of the batch's logits with respect to ``u_i`` is image ``i``'s own
gradient. For a ResNet residual sum (``add_k``, layer kind ``residual_sum``) the shift goes on
the output of the block's last BatchNorm, which is the same as adding it to the sum before the
ReLU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
import torch.nn as nn
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from rcvlab.data.base import ImageSet, Skip
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.features.extract import load_batch
from rcvlab.features.hooks import LayoutError, capture
from rcvlab.features.pooling import gap
from rcvlab.models.layers import LayerSpec, with_layouts
from rcvlab.models.registry import Model
from rcvlab.models.state import borrowed, module_device
from rcvlab.probe.fit import RCV
from rcvlab.progress import progress_bar

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Unpack

FloatArray = NDArray[np.float64]
Images = ImageSet | torch.Tensor | np.ndarray | Sequence[Image.Image | np.ndarray]


# -- directions ------------------------------------------------------------------------------


def raw_direction(rcv: RCV) -> FloatArray:
    """The unit RCV in the raw (unstandardised) GAP feature space.

    An RCV predicts ``sum_k coef_k (x_k - mean_k) / scale_k + b`` on its kept columns, so its
    gradient with respect to the raw features ``x`` is ``coef_k / scale_k`` on kept columns
    and 0 on dropped (constant) ones; this vector, normalised to unit length, is returned.

    Parameters
    ----------
    rcv : RCV
        A fitted RCV (:func:`rcvlab.probe.fit.fit_rcv`).

    Returns
    -------
    ndarray of shape (d,)
        Unit vector, float64.

    Raises
    ------
    DataError
        When every coefficient is 0 (the RCV has no direction).
    """
    w = np.zeros(rcv.dim, dtype=np.float64)
    k = rcv.keep
    w[k] = rcv.coef[k] / rcv.scale_[k]
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0:
        raise DataError(
            "the RCV has no direction (all coefficients are 0): the measure is not linearly "
            "related to any feature of this layer, or every feature is constant"
        )
    return w / norm


# -- layers ------------------------------------------------------------------------------------


def layer_spec(
    model: Model | nn.Module,
    layer: str | LayerSpec,
    layout: str | Mapping[str, str] | None = None,
) -> LayerSpec:
    """Resolve ``layer`` to a :class:`LayerSpec` that can be shifted.

    Parameters
    ----------
    model : Model or torch.nn.Module
        With a plain module ``layer`` is a dotted module path, whose output is read as an
        ``NCHW`` map unless ``layout`` says otherwise.
    layer : str or LayerSpec
    layout : str or mapping of str to str, optional
        The layer's layout (``NCHW``, ``NHWC``, ``NLC``, ``NLC+k``), overriding the
        model's; as in :func:`rcvlab.features.extract_features`.

    Returns
    -------
    LayerSpec

    Raises
    ------
    UnknownNameError
        Unknown layer name.
    RcvlabError
        A ``softmax`` layer (no network after it to differentiate through), an unknown
        layout, a layer read through ``reshape=`` (its output cannot be shifted along
        channels: declare its ``layout=`` instead).
    """
    if isinstance(layer, LayerSpec):
        spec = layer
    elif isinstance(model, Model):
        (spec,) = model.resolve([layer])
    else:
        modules = dict(model.named_modules())
        if not layer or layer not in modules:
            raise UnknownNameError(
                f"Unknown layer '{layer}'.{did_you_mean(layer, [m for m in modules if m])} "
                "Give a dotted module path."
            )
        spec = LayerSpec(layer, layer)
    if layout is not None:
        prefix = model.prefix_tokens if isinstance(model, Model) else 0
        (spec,) = with_layouts([spec], layout, prefix_tokens=prefix)
    if spec.reshape is not None:
        raise RcvlabError(
            f"Layer '{spec.name}' is read through reshape=, which relevance cannot shift along "
            "its channels; declare its layout= instead (NCHW, NHWC or NLC)."
        )
    if spec.kind in ("softmax", "sigmoid"):
        raise RcvlabError(
            f"Layer '{spec.name}' is the {spec.kind} (class probabilities): no part of the network "
            "follows it, so a logit has no sensitivity to it; choose a layer with a spatial "
            "feature map before the global pooling."
        )
    return spec


def _shift_target(module: nn.Module, spec: LayerSpec) -> nn.Module:
    """The submodule whose output receives the shift."""
    target = module.get_submodule(spec.module)
    if spec.kind == "residual_sum":
        last_bn = "bn3" if hasattr(target, "bn3") else "bn2"
        if not hasattr(target, last_bn):
            raise RcvlabError(f"Layer {spec.name}: {type(target).__name__} is not a ResNet block.")
        return target.get_submodule(last_bn)
    return target


def _not_a_map(spec: LayerSpec, shape: Sequence[int]) -> RcvlabError:
    return RcvlabError(
        f"Layer '{spec.name}' gives a {tuple(shape)} vector per image (the logits, or a layer "
        "after the global pooling): relevance shifts a feature map at every position and "
        "differentiates the network after it, so choose a layer with a spatial map (n, C, H, W) "
        "or tokens (n, L, C) before the pooling."
    )


def _shift_axes(spec: LayerSpec, out: torch.Tensor) -> tuple[int, tuple[int, ...], int]:
    """``(channels, view of u, prefix tokens left unshifted)`` for ``out`` in its layout."""
    shape = tuple(out.shape)
    if out.ndim == 2 or spec.layout == "NC":
        raise _not_a_map(spec, shape)
    fix = f"pass layout='NCHW', 'NHWC' or 'NLC' (or layout={{'{spec.name}': ...}})"
    if spec.layout is None:
        raise LayoutError(
            f"Layer '{spec.name}' outputs shape {shape}, whose layout rcvlab cannot know; {fix}."
        )
    n = shape[0]
    if spec.layout == "NCHW" and out.ndim == 4:  # GAP averages dims 2, 3
        return shape[1], (n, -1, 1, 1), 0
    if spec.layout == "NHWC" and out.ndim == 4:  # GAP averages dims 1, 2
        return shape[3], (n, 1, 1, -1), 0
    if spec.layout == "NLC" and out.ndim == 3 and shape[1] > spec.prefix_tokens:
        return shape[2], (n, 1, -1), spec.prefix_tokens  # GAP averages the patch tokens
    raise LayoutError(
        f"Layer '{spec.name}' is read as {spec.layout_label} but outputs shape {shape}; {fix}."
    )


class _Shift:
    """Forward hook adding a per-image shift ``u`` (broadcast over positions) to an output.

    With ``active`` False it only records the output's shape. With ``active`` True it makes
    ``u``, an ``(n, d)`` tensor of zeros requiring grad, and returns ``output + u``.
    """

    def __init__(self, spec: LayerSpec) -> None:
        self.spec = spec
        self.active = False
        self.u: torch.Tensor | None = None
        self.calls = 0
        self.shape: tuple[int, ...] | None = None

    def __call__(self, _m: nn.Module, _inp: object, out: Any) -> torch.Tensor | None:
        if not isinstance(out, torch.Tensor):
            raise RcvlabError(
                f"Layer '{self.spec.name}' returns {type(out).__name__}, not a tensor; "
                "choose another layer."
            )
        self.calls += 1
        if self.calls > 1:
            raise RcvlabError(
                f"The module of layer '{self.spec.name}' runs more than once per forward pass "
                "(a shared module); its output cannot be shifted unambiguously."
            )
        self.shape = tuple(out.shape)
        d, view, skip = _shift_axes(self.spec, out)
        if not self.active:
            return None
        self.u = torch.zeros(
            out.shape[0], d, dtype=out.dtype, device=out.device, requires_grad=True
        )
        shift = self.u.view(view)
        if skip:  # prefix tokens are not averaged by GAP: they are not shifted
            keep = torch.ones(out.shape[1], 1, dtype=out.dtype, device=out.device)
            keep[:skip] = 0
            shift = shift * keep
        return out + shift

    def reset(self, active: bool) -> None:
        self.active, self.u, self.calls = active, None, 0


@contextmanager
def shift_hook(module: nn.Module, spec: LayerSpec) -> Iterator[_Shift]:
    """Register the shifting hook for ``spec`` on ``module``; it is always removed on exit.

    Call ``hook.reset(active=True)`` before a forward pass: the pass then adds a fresh
    per-image shift ``hook.u`` (zeros, requiring grad) to the layer's output, so that the
    gradient of any function of the outputs with respect to ``hook.u`` is the gradient with
    respect to a GAP-space shift. ``reset(active=False)`` only records the output's shape.
    """
    hook = _Shift(spec)
    handle = _shift_target(module, spec).register_forward_hook(hook)
    try:
        yield hook
    finally:
        handle.remove()


def blank_pass(model: Model, layer: str | LayerSpec) -> tuple[tuple[int, ...], int]:
    """``(layer shape, number of logits)`` from one blank image at the model's size.

    Checks, in about the time of one image, what a gradient pass would otherwise find only
    at its first batch: the layer gives a map (not vectors) and is reached, and the network
    returns ``(n, classes)`` logits.

    Raises
    ------
    RcvlabError
        A layer that gives vectors or is not reached, or whose output does not fit its
        layout (:class:`rcvlab.features.hooks.LayoutError`); a network that does not
        return ``(n, classes)`` logits.
    """
    spec = layer_spec(model, layer)
    module = model.module
    param = next(module.parameters(), None)
    dev = module_device(module)
    dtype = param.dtype if param is not None else torch.float32
    s = model.input_size
    # eval mode on the module's own device; it comes back as given (modes, no hooks)
    with borrowed(module, dev), shift_hook(module, spec) as hook, torch.inference_mode():
        logits = module(torch.zeros(1, 3, s, s, device=dev, dtype=dtype))
    if hook.shape is None:
        raise RcvlabError(f"Layer '{spec.name}' was not reached in the forward pass.")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise RcvlabError(f"The network must return (n, classes) logits; got {got}.")
    return hook.shape, int(logits.shape[1])


# -- gradients -------------------------------------------------------------------------------


def _n_classes(model: Model | nn.Module) -> int | None:
    if isinstance(model, Model) and model.categories:
        return len(model.categories)
    return None


def resolve_target_class(model: Model | nn.Module, target_class: int | str) -> int:
    """An ImageNet class index from an int, a digit string or a category name of the model.

    Parameters
    ----------
    model : Model or torch.nn.Module
        Names are looked up (case-insensitively) in ``model.categories``.
    target_class : int or str

    Returns
    -------
    int

    Raises
    ------
    RcvlabError
        A negative index, or an index beyond the model's classes (when known).
    UnknownNameError
        A name that is not one of the model's categories.
    """
    cats = model.categories if isinstance(model, Model) else ()
    if isinstance(target_class, str):
        s = target_class.strip()
        if s.lstrip("-").isdigit():
            target_class = int(s)
        else:
            lower = [c.lower() for c in cats]
            if s.lower() in lower:
                return lower.index(s.lower())
            if not cats:
                raise UnknownNameError(
                    f"Target class '{s}': this model has no class names; give an integer index."
                )
            raise UnknownNameError(
                f"Unknown target class '{s}'.{did_you_mean(s, cats)} Give an integer index "
                f"(0-{len(cats) - 1}) or one of the model's category names."
            )
    if isinstance(target_class, bool) or not isinstance(target_class, int | np.integer):
        raise RcvlabError(f"target_class must be an int or a class name, got {target_class!r}.")
    k = int(target_class)
    n = _n_classes(model)
    if k < 0 or (n is not None and k >= n):
        raise RcvlabError(
            f"target class {k} is out of range: the model has "
            f"{n if n is not None else 'an unknown number of'} classes (0-"
            f"{n - 1 if n is not None else '...'})."
        )
    return k


def _as_images(images: Images) -> ImageSet | torch.Tensor:
    # uint8 pixels are preprocessed like arrays; float tensors are used as they are
    if isinstance(images, torch.Tensor) and images.dtype != torch.uint8:
        if images.ndim != 4:
            raise DataError(
                f"A preprocessed batch must have shape (n, 3, H, W), got {tuple(images.shape)}."
            )
        return images
    from rcvlab.features.extract import as_image_set

    return as_image_set(images)


@contextmanager
def _grad_mode(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for the duration (flags restored on exit); device, eval mode
    and their restoration are :func:`rcvlab.models.state.borrowed`'s."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@dataclass(frozen=True)
class GradientPass:
    """What one forward + backward pass over a set of images gives (:func:`gradient_pass`).

    Attributes
    ----------
    gradients : ndarray of shape (n, d)
        ``g(x)`` per image (NaN rows for unreadable images).
    features : ndarray of shape (n, d)
        The layer's GAP features from the same forward pass (the shift is 0 there, so they
        are the features :func:`rcvlab.features.extract_features` gives).
    valid : ndarray of bool, shape (n,)
    skipped : dict of int to Skip
        Unreadable images, by index.
    """

    gradients: FloatArray
    features: FloatArray
    valid: NDArray[np.bool_]
    skipped: dict[int, Skip]


class PassOptions(TypedDict, total=False):
    """Keyword options of :func:`gradient_pass` (and of the functions built on it):
    ``batch_size`` (16), ``device``, ``resize`` (``"resize"``), ``strict`` (False),
    ``progress`` (False), ``layout`` (None); see there."""

    batch_size: int
    device: str | torch.device | None
    resize: str
    strict: bool
    progress: bool | Callable[[int, int], None]
    layout: str | Mapping[str, str] | None


def gap_gradient(
    model: Model | nn.Module,
    images: Images,
    layer: str | LayerSpec,
    target_class: int | str,
    **options: Unpack[PassOptions],
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """``(gradients, valid)`` of :func:`gradient_pass` (same parameters)."""
    p = gradient_pass(model, images, layer, target_class, **options)
    return p.gradients, p.valid


def gradient_pass(
    model: Model | nn.Module,
    images: Images,
    layer: str | LayerSpec,
    target_class: int | str,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    resize: str = "resize",
    strict: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    layout: str | Mapping[str, str] | None = None,
    shard: tuple[int, int] | None = None,
) -> GradientPass:
    """Gradient of class ``K``'s logit with respect to a GAP-space shift of ``layer``, and
    the layer's GAP features, from one forward and one backward pass per batch.

    For image ``x`` with layer map ``A``, ``g(x) = d/du f_K(A + u)`` at ``u = 0`` with ``u``
    broadcast over every position, i.e. the sum over positions of ``dF_K/dA``. The
    sensitivity along a unit RCV ``v`` is ``g(x) . v`` (:func:`directional_derivative`).
    One forward and one backward pass per batch, in eval mode on ``device``; the module
    comes back as it was given (device, memory format, ``training`` flags, parameters'
    ``requires_grad`` flags, no hooks).

    Parameters
    ----------
    model : Model or torch.nn.Module
        A loaded model; a plain module needs a preprocessed tensor as ``images``.
    images : ImageSet, tensor, ndarray or sequence of images
        An :class:`ImageSet` (or arrays / PIL images) is read and preprocessed exactly as
        :func:`rcvlab.features.extract_features` does (``model.preprocessing(images,
        mode=resize)``), and so is a uint8 tensor ``(n, 3, H, W)`` or ``(n, H, W, 3)``; a
        float tensor is an already preprocessed ``(n, 3, H, W)`` batch, used in its own
        dtype (the module must have the same dtype, e.g. ``.double()`` for float64).
    layer : str or LayerSpec
        A layer of the model (kinds ``output`` or ``residual_sum``) whose output is a map
        or tokens, as its layout says (a plain module's layers are read as ``NCHW`` maps;
        pass ``layout`` for others).
    target_class : int or str
        Index of the logit (or a category name of the model).
    batch_size : int
    device : str, optional
        Default: ``cuda`` when available, else ``cpu`` (for a tensor: its own device).
    resize : {"resize", "crop"}
        Preprocessing mode for images.
    strict : bool
        Raise on an unreadable image instead of leaving its row NaN.
    progress : bool or callable
        A progress bar, or ``progress(done, total)`` after each batch.
    layout : str or mapping of str to str, optional
        The layer's layout, as in :func:`rcvlab.features.extract_features`: ``NCHW``,
        ``NHWC`` (channels last), ``NLC`` (tokens ``(n, L, C)``), ``NLC+k`` (``k``
        class/register tokens first, not shifted since GAP leaves them out). Needed for a
        plain module's token or channels-last layer; a Model's layers know theirs.
    shard : (int, int), optional
        Only the images ``[start, stop)``: one shard of a larger pass (a task on a Dask
        cluster), whose batches start at ``start`` (pick it on a batch boundary of the
        whole pass to get the same batches). The arrays then have ``stop - start`` rows,
        the keys of ``skipped`` stay indices in ``images``, and a shard in which no image
        could be read gives arrays without columns, ``(stop - start, 0)``, not an error.

    Returns
    -------
    GradientPass
        float64 gradients and features; rows of unreadable images are NaN.

    Raises
    ------
    UnknownNameError
        Unknown layer or class name.
    RcvlabError
        A softmax layer, a layer giving vectors (the logits), a target class out of range,
        a logit that does not depend on the layer; an output that does not fit the layer's
        layout, or whose layout is not known (:class:`rcvlab.features.hooks.LayoutError`,
        naming ``layout=``); a shard outside the images.
    DataError
        No image, or (without ``shard``) no readable image; an unreadable image with
        ``strict``.
    """
    spec = layer_spec(model, layer, layout)
    module = model.module if isinstance(model, Model) else model
    k = resolve_target_class(model, target_class)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise RcvlabError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if batch_size < 1:
        raise RcvlabError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    data = _as_images(images)
    tensor_input = isinstance(data, torch.Tensor)
    if not tensor_input and not isinstance(model, Model):
        raise RcvlabError(
            "A plain torch.nn.Module needs a preprocessed (n, 3, H, W) tensor; or wrap it with "
            "rcvlab.load_model(module, input_size=...) to pass images."
        )
    n = int(data.shape[0]) if tensor_input else len(data)
    if n == 0:
        raise DataError("No images to compute gradients for.")
    start, stop = (0, n) if shard is None else _check_shard(shard, n)
    m = stop - start
    from rcvlab.features.extract import choose_device

    dev = data.device if tensor_input and device is None else choose_device(device)
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32

    grads: FloatArray | None = None
    feats: FloatArray | None = None
    valid = np.zeros(m, dtype=bool)
    skipped: dict[int, Skip] = {}
    batches = [(i0, min(i0 + batch_size, stop)) for i0 in range(start, stop, batch_size)]
    with (
        borrowed(module, dev),
        _grad_mode(module),
        shift_hook(module, spec) as hook,
        # registered after the shift: it pools the shifted map, whose shift is 0
        capture(module, [spec], gap) as pooled,
        progress_bar(progress, m, "gradients") as tick,
    ):
        for i0, i1 in batches:
            if tensor_input:
                x, ok = data[i0:i1], list(range(i1 - i0))
            else:
                x, ok, bad = load_batch(model, data, i0, i1, resize=resize, strict=strict)  # type: ignore[arg-type]
                skipped.update(bad)
            if x is None:
                tick(i1 - i0)
                continue
            x = x.to(device=dev, dtype=dtype)
            g = _batch_gradient(module, hook, x, k, spec)
            f = pooled[spec.name].detach().double().cpu().numpy()
            if grads is None:
                grads = np.full((m, g.shape[1]), np.nan, dtype=np.float64)
                feats = np.full((m, f.shape[1]), np.nan, dtype=np.float64)
            rows = np.asarray(ok, dtype=np.intp) + (i0 - start)
            grads[rows] = g
            feats[rows] = f  # type: ignore[index]
            valid[rows] = True
            tick(i1 - i0)
    if grads is None or feats is None:
        if shard is None:
            raise DataError("No image could be read.")
        grads, feats = np.empty((m, 0)), np.empty((m, 0))  # the other shards know d
    return GradientPass(grads, feats, valid, skipped)


def _check_shard(shard: object, n: int) -> tuple[int, int]:
    ok = (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in shard)
    )
    if not ok or not 0 <= shard[0] < shard[1] <= n:  # type: ignore[index]
        raise RcvlabError(
            f"shard must be (start, stop) with 0 <= start < stop <= {n} (the images), "
            f"got {shard!r}."
        )
    return int(shard[0]), int(shard[1])  # type: ignore[index]


def _batch_gradient(
    module: nn.Module, hook: _Shift, x: torch.Tensor, k: int, spec: LayerSpec
) -> FloatArray:
    """``(b, d)`` gradients of logit ``k`` with respect to per-image GAP-space shifts."""
    hook.reset(active=True)
    try:
        logits = module(x)
        u = hook.u
    finally:
        hook.reset(active=False)
    if u is None:
        raise RcvlabError(f"Layer '{spec.name}' was not reached in the forward pass.")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise RcvlabError(f"The network must return (n, classes) logits; got {got}.")
    if k >= logits.shape[1]:
        raise RcvlabError(
            f"target class {k} is out of range: the network has {logits.shape[1]} outputs "
            f"(0-{logits.shape[1] - 1})."
        )
    target = logits[:, k].sum()
    g = None
    if target.requires_grad:
        (g,) = torch.autograd.grad(target, u, allow_unused=True)
    if g is None:
        raise RcvlabError(f"Logit {k} does not depend on layer '{spec.name}'.")
    return g.detach().to(torch.float64).cpu().numpy()


def directional_derivative(
    model: Model | nn.Module,
    images: Images,
    layer: str | LayerSpec,
    direction: ArrayLike,
    target_class: int | str,
    **options: Unpack[PassOptions],
) -> FloatArray:
    """Sensitivity of class ``K``'s logit along ``direction`` at ``layer``, per image.

    ``S(x) = d/dt f_K(A(x) + t v) at t = 0`` with ``v`` added at every position of the
    layer's map ``A`` (see the module docstring); since ``GAP(A + t v) = GAP(A) + t v`` this
    is the directional derivative of the logit along ``v`` in GAP feature space. ``v`` is
    used as given (pass a unit vector, e.g. :func:`raw_direction`, for the RCV paper's
    sensitivity).

    Parameters
    ----------
    model, images, layer, target_class
        As in :func:`gradient_pass`.
    direction : array_like of shape (d,) or (m, d)
        One direction in the raw GAP feature space of the layer, or ``m`` of them.
    **options
        :class:`PassOptions` (``batch_size``, ``device``, ``resize``, ``strict``,
        ``progress``), as in :func:`gradient_pass`.

    Returns
    -------
    ndarray of shape (n,) or (n, m)
        float64; NaN for unreadable images.

    Raises
    ------
    DataError
        A direction whose length is not the layer's channel count, or non-finite values.
    """
    v = np.asarray(direction, dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[-1] == 0 or not np.all(np.isfinite(v)):
        raise DataError(f"direction must be a finite (d,) or (m, d) array, got shape {v.shape}.")
    grads, _ = gap_gradient(model, images, layer, target_class, **options)
    if grads.shape[1] != v.shape[-1]:
        raise DataError(
            f"The direction has {v.shape[-1]} components, layer '{layer}' has {grads.shape[1]} "
            "channels."
        )
    return grads @ v.T


__all__ = [
    "GradientPass",
    "PassOptions",
    "blank_pass",
    "directional_derivative",
    "gap_gradient",
    "gradient_pass",
    "layer_spec",
    "raw_direction",
    "resolve_target_class",
    "shift_hook",
]
