"""Class activation maps (grad-CAM, grad-CAM++) and how much of them falls on nuclei.

Paper 004 (METHOD.md §7) shows grad-CAM++ maps of the tumour logit of a finetuned
InceptionV3 for patches with P(tumour) > 0.99 and reads them as "the network looks at
atypical nuclei". :func:`cam` computes the maps; the nuclei mass puts a number on the claim.

The maps
    The weights and maps are pytorch-grad-cam's (``GradCAM`` / ``GradCAMPlusPlus``
    ``get_cam_image``: per-channel weights from the gradients, weighted sum of the
    activations), and its normalisation (``scale_cam_image``: ReLU, per-image min-max,
    bilinear upsampling by OpenCV to the input size, min-max again). What rcvlab adds is
    the pass that feeds them: **one forward and one backward pass per batch** for every
    method at once, where calling the library runs one per method (and its examples one per
    image). The backward pass starts at the target logit and stops at the layer: the layer's
    output is replaced by a detached copy that requires grad, parameters get no gradient
    (``.grad`` is untouched) and nothing before the layer is differentiated.
``maps`` (raw)
    ``ReLU(sum_c w_c A_c)`` at the layer's resolution, upsampled bilinearly to the input size
    exactly as the library upsamples (``cv2.resize``), *without* scaling: values are
    comparable between images and networks.
``normalised``
    What the library returns for the same image and target (in ``[0, 1]`` per image).
Targets
    A multi-class network: the logit of a class index or category name, or ``"top"`` (each
    image's top class). A single-logit network (``categories == ("tumour",)``, see
    :func:`rcvlab.models.binary_head`): ``1`` / ``"tumour"`` is the logit itself, ``0`` /
    ``"non-tumour"`` its negative (the library's ``BinaryClassifierOutputTarget``). The
    stored probability is the target's: softmax, or sigmoid of the signed logit.
Selection
    ``top=k`` and / or ``min_prob=p`` keep the images with the highest target probability
    (the paper: P(tumour) > 0.99). Selection is one forward pass without gradients over all
    images; the backward passes run only for the kept ones.
Nuclei mass (beyond the paper)
    For every image with a nuclei mask (the data's own, ``masks=``, else
    :func:`rcvlab.measures.segment_nuclei` of the image), brought to the input as the image
    is (resize, or resize and crop) by nearest neighbour: ``nuclei_fraction`` = share of the
    input's pixels on nuclei and ``nuclei_mass`` = ``sum(normalised map over nuclei) /
    sum(normalised map)``, per method. A map that looks at nuclei no more than at anything
    else has mass = fraction; the
    *excess* ``mass - fraction`` is the number compared between networks
    (:func:`compare_cams`). A difference is used rather than the ratio ``mass / fraction``
    because the ratio explodes on patches with few nuclei pixels and is undefined without
    any.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from numpy.typing import ArrayLike, NDArray
from PIL import Image
from scipy import stats

from rcvlab.analyses.common import check_int, frozen_array
from rcvlab.data.base import ImageSet, Skip, TensorImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean
from rcvlab.features.extract import as_image_set, choose_device, load_batch
from rcvlab.models.layers import LayerSpec
from rcvlab.models.registry import Model
from rcvlab.models.state import borrowed
from rcvlab.result import Result, jsonable, nan_if_none, provenance

FloatArray = NDArray[np.float64]

METHODS: tuple[str, ...] = ("gradcam", "gradcam++")
"""The CAM methods, in the order they are stored."""
_ALIASES = {"gradcam": "gradcam", "gradcam++": "gradcam++", "gradcampp": "gradcam++"}
DEFAULT_BATCH_SIZE = 16
"""Images per forward + backward pass."""

DEFINITION = (
    "maps: ReLU(sum_c w_c A_c) at the layer, upsampled bilinearly (cv2.resize) to the input "
    "size, unscaled; normalised: pytorch-grad-cam's output; w_c: mean gradient (gradcam) or "
    "Chattopadhyay et al.'s alpha-weighted positive gradients (gradcam++); nuclei_mass: "
    "sum(normalised over nuclei) / sum(normalised); excess = nuclei_mass - nuclei_fraction"
)


# -- arrays in JSON ---------------------------------------------------------------------------


def encode_array(a: ArrayLike) -> dict[str, Any]:
    """An array as JSON: dtype, shape and its bytes zlib-compressed in base64 (exact).

    Boolean arrays are bit-packed. :func:`decode_array` is the inverse.
    """
    arr = np.ascontiguousarray(a)
    raw = np.packbits(arr.ravel()).tobytes() if arr.dtype == bool else arr.tobytes()
    return {
        "dtype": arr.dtype.str if arr.dtype != bool else "bool",
        "shape": list(arr.shape),
        "zlib_base64": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
    }


def decode_array(d: Mapping[str, Any]) -> np.ndarray:
    """The read-only array of :func:`encode_array`'s dict."""
    shape = tuple(int(s) for s in d["shape"])
    raw = zlib.decompress(base64.b64decode(d["zlib_base64"]))
    if d["dtype"] == "bool":
        n = int(np.prod(shape))
        out = np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(bool).reshape(shape)
    else:
        out = np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(shape).copy()
    out.setflags(write=False)
    return out


# -- the maps from low resolution, as pytorch-grad-cam makes them ------------------------------


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` maps resized to ``size = (H, W)`` bilinearly, unscaled, float32.

    The library's own resize (``cv2.resize`` in ``scale_cam_image``) without its min-max.
    """
    import cv2

    h, w = size
    out = np.empty((len(maps), h, w), dtype=np.float32)
    for i, m in enumerate(maps):
        out[i] = cv2.resize(np.float32(m), (w, h))
    return out


def normalise_like_gradcam(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's output for ``(n, h, w)`` layer maps (ReLU already applied): its
    ``compute_cam_per_layer`` scaling and upsampling, then ``aggregate_multi_layers``."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    h, w = size
    per_layer = scale_cam_image(np.maximum(maps, 0), (w, h))[:, None]
    # aggregate_multi_layers of one layer: mean over the layer axis, min-max again
    return scale_cam_image(np.maximum(per_layer, 0).mean(axis=1)).astype(np.float32)


def nuclei_mass(normalised: np.ndarray, mask: np.ndarray) -> float:
    """``sum(normalised over mask) / sum(normalised)``; NaN for an all-zero map."""
    total = float(np.sum(normalised, dtype=np.float64))
    if not total > 0:
        return math.nan
    return float(np.sum(normalised[mask], dtype=np.float64)) / total


# -- results ----------------------------------------------------------------------------------


def _method_columns(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{m}" for m in METHODS)


@dataclass(frozen=True, eq=False)
class CamResult(Result):
    """grad-CAM / grad-CAM++ maps of one network at one layer for a set of images.

    Attributes
    ----------
    model, weights : str
        The network (registry name) and its weights.
    layer : str
        The layer (rcvlab name, or the dotted module path when it has none).
    module : str
        Its dotted module path.
    methods : tuple of str
        ``gradcam`` and / or ``gradcam++``, in the order of the ``methods`` axis.
    target : str
        The target as asked (``"tumour"``, ``"3"``, ``"top"``).
    indices : ndarray of int, shape (n,)
        Each image's index in the data given to :func:`cam`.
    ids, classes : tuple of str
        The images' identifiers and data classes (``""`` without classes).
    target_classes : ndarray of int, shape (n,)
        The logit each map explains (single logit: 1 = positive, 0 = its negative).
    target_names : tuple of str
        That class's name (``""`` when the network has no names).
    probs : ndarray, shape (n,)
        Probability of the target (softmax, or sigmoid of the signed logit).
    images : ndarray of uint8, shape (n, H, W, 3)
        The network's input pixels (before the normalisation), for overlays.
    low : ndarray of float32, shape (n, methods, h, w)
        ``ReLU(sum_c w_c A_c)`` at the layer's resolution; :attr:`maps` and
        :attr:`normalised` are computed from it.
    nuclei_masks : ndarray of bool, shape (n, H, W)
        Nuclei masks at the input size (all False where an image has none).
    nuclei_fraction : ndarray, shape (n,)
        Share of the input's pixels on nuclei (NaN without a mask).
    nuclei_mass : ndarray, shape (n, methods)
        Share of the normalised map on nuclei (NaN without a mask or for an all-zero map).
    meta : dict
        Provenance (:func:`rcvlab.result.provenance`): command, versions, the data's
        fingerprint, ``weights_id``, layer shape, selection (``top``, ``min_prob``,
        ``n_candidates``), ``nuclei_source`` and ``skipped`` (unreadable images).

    ``to_frame()`` has one row per image: ``index``, ``id``, ``class``, ``target_class``,
    ``target_name``, ``prob``, ``nuclei_fraction`` and per method
    ``nuclei_mass_gradcam`` / ``nuclei_mass_gradcam++`` (share of the normalised map on
    nuclei) and ``excess_gradcam`` / ``excess_gradcam++`` (mass minus fraction).
    """

    model: str
    weights: str
    layer: str
    module: str
    methods: tuple[str, ...]
    target: str
    indices: NDArray[np.intp]
    ids: tuple[str, ...]
    classes: tuple[str, ...]
    target_classes: NDArray[np.intp]
    target_names: tuple[str, ...]
    probs: FloatArray
    images: NDArray[np.uint8]
    low: NDArray[np.float32]
    nuclei_masks: NDArray[np.bool_]
    nuclei_fraction: FloatArray
    nuclei_mass: FloatArray
    meta: dict[str, Any]

    kind: ClassVar[str] = "cam"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "index",
        "id",
        "class",
        "target_class",
        "target_name",
        "prob",
        "nuclei_fraction",
        *_method_columns("nuclei_mass"),
        *_method_columns("excess"),
    )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        """The input size ``(H, W)`` of the maps."""
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def _method_index(self, method: str) -> int:
        m = check_methods(method)[0]
        if m not in self.methods:
            raise RcvlabError(
                f"This CAM result has no {m} maps (it has {', '.join(self.methods)}); "
                f"run cam(..., method=[{', '.join(repr(x) for x in METHODS)}])."
            )
        return self.methods.index(m)

    @cached_property
    def all_maps(self) -> NDArray[np.float32]:
        """Raw maps at the input size, ``(n, methods, H, W)`` float32."""
        n, k, h, w = self.low.shape
        up = upsample(self.low.reshape(n * k, h, w), self.size)
        out = up.reshape(n, k, *self.size)
        out.setflags(write=False)
        return out

    @cached_property
    def all_normalised(self) -> NDArray[np.float32]:
        """pytorch-grad-cam's normalised maps, ``(n, methods, H, W)`` float32."""
        n, k, h, w = self.low.shape
        out = normalise_like_gradcam(self.low.reshape(n * k, h, w), self.size)
        out = out.reshape(n, k, *self.size)
        out.setflags(write=False)
        return out

    @property
    def maps(self) -> NDArray[np.float32]:
        """Raw maps ``(n, H, W)`` of the first method (:meth:`maps_for` for the others)."""
        return self.all_maps[:, 0]

    @property
    def normalised(self) -> NDArray[np.float32]:
        """Normalised maps ``(n, H, W)`` of the first method."""
        return self.all_normalised[:, 0]

    def maps_for(self, method: str) -> NDArray[np.float32]:
        """Raw maps ``(n, H, W)`` of ``method``."""
        return self.all_maps[:, self._method_index(method)]

    def normalised_for(self, method: str) -> NDArray[np.float32]:
        """Normalised maps ``(n, H, W)`` of ``method``."""
        return self.all_normalised[:, self._method_index(method)]

    @property
    def excess(self) -> FloatArray:
        """``nuclei_mass - nuclei_fraction``, ``(n, methods)``."""
        return self.nuclei_mass - self.nuclei_fraction[:, None]

    def to_frame(self) -> pd.DataFrame:
        """One row per image (columns: see the class docstring)."""
        cols: dict[str, Any] = {
            "index": self.indices,
            "id": list(self.ids),
            "class": list(self.classes),
            "target_class": self.target_classes,
            "target_name": list(self.target_names),
            "prob": self.probs,
            "nuclei_fraction": self.nuclei_fraction,
        }
        for j, m in enumerate(self.methods):
            cols[f"nuclei_mass_{m}"] = self.nuclei_mass[:, j]
        for j, m in enumerate(self.methods):
            cols[f"excess_{m}"] = self.excess[:, j]
        return pd.DataFrame(cols, columns=[c for c in self.frame_columns if c in cols])

    def to_markdown(self) -> str:
        """A short summary: settings and the nuclei mass per method."""
        lines = [
            f"# CAM: {self.model} ({self.weights}) at {self.layer}",
            "",
            f"- methods: {', '.join(self.methods)}; target: {self.target}",
            f"- images: {len(self)} (selection: top={self.meta.get('top')}, "
            f"min_prob={self.meta.get('min_prob')}, out of {self.meta.get('n_candidates')})",
            f"- target probability: min {_fmt(np.nanmin(self.probs) if len(self) else math.nan)}"
            f", median {_fmt(np.nanmedian(self.probs) if len(self) else math.nan)}",
            f"- nuclei masks: {self.meta.get('nuclei_source', '')}",
            "",
            "| method | mean nuclei fraction | mean CAM mass on nuclei | mean excess | images |",
            "|---|---|---|---|---|",
        ]
        for j, m in enumerate(self.methods):
            ok = np.isfinite(self.excess[:, j])
            lines.append(
                f"| {m} | {_fmt(_mean(self.nuclei_fraction[ok]))} | "
                f"{_fmt(_mean(self.nuclei_mass[ok, j]))} | {_fmt(_mean(self.excess[ok, j]))} "
                f"| {int(ok.sum())} |"
            )
        lines += ["", f"Definition: {DEFINITION}.", ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Settings, per-image values, and the arrays (images, layer maps, masks) encoded
        exactly (:func:`encode_array`)."""
        return {
            "definition": DEFINITION,
            "model": self.model,
            "weights": self.weights,
            "layer": self.layer,
            "module": self.module,
            "methods": list(self.methods),
            "target": self.target,
            "indices": jsonable(self.indices),
            "ids": list(self.ids),
            "classes": list(self.classes),
            "target_classes": jsonable(self.target_classes),
            "target_names": list(self.target_names),
            "probs": jsonable(self.probs),
            "nuclei_fraction": jsonable(self.nuclei_fraction),
            "nuclei_mass": jsonable(self.nuclei_mass),
            "images": encode_array(self.images),
            "low": encode_array(self.low),
            "nuclei_masks": encode_array(self.nuclei_masks),
            "meta": jsonable(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CamResult:
        """Rebuild from :meth:`to_dict`."""
        methods = tuple(str(m) for m in d["methods"])
        mass = [[nan_if_none(v) for v in row] for row in d["nuclei_mass"]]
        return cls(
            model=str(d["model"]),
            weights=str(d["weights"]),
            layer=str(d["layer"]),
            module=str(d["module"]),
            methods=methods,
            target=str(d["target"]),
            indices=frozen_array(d["indices"], np.intp),
            ids=tuple(str(x) for x in d["ids"]),
            classes=tuple(str(x) for x in d["classes"]),
            target_classes=frozen_array(d["target_classes"], np.intp),
            target_names=tuple(str(x) for x in d["target_names"]),
            probs=frozen_array([nan_if_none(v) for v in d["probs"]], np.float64),
            images=decode_array(d["images"]),
            low=decode_array(d["low"]),
            nuclei_masks=decode_array(d["nuclei_masks"]),
            nuclei_fraction=frozen_array(
                [nan_if_none(v) for v in d["nuclei_fraction"]], np.float64
            ),
            nuclei_mass=frozen_array(
                np.array(mass, dtype=np.float64).reshape(-1, len(methods)), float
            ),
            meta=dict(d["meta"]),
        )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def _fmt(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "n/a"


@dataclass(frozen=True, eq=False)
class CamComparison(Result):
    """A paired test of the CAM nuclei excess between two networks on the same images.

    For every method both results have and every image with a finite excess in both,
    ``d = excess(other) - excess(reference)``, where excess = CAM mass on nuclei minus the
    nuclei fraction of the patch (the fraction is the same for both networks, so ``d`` is
    the difference of masses). The test is the Wilcoxon signed-rank test of ``d``
    (``scipy.stats.wilcoxon``, two-sided, zero differences dropped), with the matched-pairs
    rank-biserial correlation as effect size: ``r = (T+ - T-) / (T+ + T-)`` over the ranks of
    the non-zero ``|d|`` (+1: the other network puts more mass on nuclei on every image).

    Attributes
    ----------
    reference, other : dict
        ``model``, ``weights``, ``layer``, ``target`` of each network.
    methods : tuple of str
    ids : tuple of str
        The images (the same in both results).
    nuclei_fraction : ndarray, shape (n,)
    excess_reference, excess_other : ndarray, shape (n, methods)
    stats : dict of str to dict
        Per method: ``n`` (pairs used), ``n_zero`` (zero differences, dropped by the test),
        ``statistic`` (scipy's: the smaller rank sum), ``p_value``, ``rank_biserial``,
        ``median_difference``, ``mean_difference``, ``mean_excess_reference``,
        ``mean_excess_other``, ``frac_other_higher``.
    meta : dict

    ``to_frame()`` has one row per method: ``method``, ``n``, ``n_zero``, ``statistic``,
    ``p_value``, ``rank_biserial``, ``median_difference``, ``mean_difference``,
    ``mean_excess_reference``, ``mean_excess_other``, ``frac_other_higher``.
    """

    reference: dict[str, str]
    other: dict[str, str]
    methods: tuple[str, ...]
    ids: tuple[str, ...]
    nuclei_fraction: FloatArray
    excess_reference: FloatArray
    excess_other: FloatArray
    stats: dict[str, dict[str, float]]
    meta: dict[str, Any]

    kind: ClassVar[str] = "cam_comparison"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "method",
        "n",
        "n_zero",
        "statistic",
        "p_value",
        "rank_biserial",
        "median_difference",
        "mean_difference",
        "mean_excess_reference",
        "mean_excess_other",
        "frac_other_higher",
    )

    def to_frame(self) -> pd.DataFrame:
        """One row per method (columns: see the class docstring)."""
        rows = [{"method": m, **self.stats[m]} for m in self.methods]
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def per_image_frame(self) -> pd.DataFrame:
        """One row per (image, method): ``id``, ``method``, ``nuclei_fraction``,
        ``excess_reference``, ``excess_other``, ``difference``."""
        rows = []
        for j, m in enumerate(self.methods):
            for i, id_ in enumerate(self.ids):
                a, b = self.excess_reference[i, j], self.excess_other[i, j]
                rows.append(
                    {
                        "id": id_,
                        "method": m,
                        "nuclei_fraction": self.nuclei_fraction[i],
                        "excess_reference": a,
                        "excess_other": b,
                        "difference": b - a,
                    }
                )
        return pd.DataFrame(rows)

    def label(self, which: str) -> str:
        """``"model (weights)"`` of ``reference`` or ``other``."""
        d = self.reference if which == "reference" else self.other
        return f"{d.get('model', '')} ({d.get('weights', '')})"

    def to_markdown(self) -> str:
        """The paired test per method as a Markdown table."""
        lines = [
            f"## Paired test: {self.label('other')} vs {self.label('reference')}",
            "",
            "Per image, excess = CAM mass on nuclei - nuclei fraction; d = excess(other) - "
            "excess(reference); Wilcoxon signed-rank test of d (two-sided, zeros dropped), "
            "effect size = matched-pairs rank-biserial correlation.",
            "",
            "| method | n | mean excess reference | mean excess other | median d | "
            "rank-biserial | W | p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in self.methods:
            s = self.stats[m]
            lines.append(
                f"| {m} | {int(s['n'])} | {_fmt(s['mean_excess_reference'])} | "
                f"{_fmt(s['mean_excess_other'])} | {_fmt(s['median_difference'])} | "
                f"{_fmt(s['rank_biserial'])} | {_fmt(s['statistic'])} | "
                f"{s['p_value']:.3g} |"
            )
        return "\n".join([*lines, ""])

    def to_dict(self) -> dict[str, Any]:
        """Everything :meth:`from_dict` needs (JSON-ready)."""
        return jsonable(
            {
                "reference": self.reference,
                "other": self.other,
                "methods": list(self.methods),
                "ids": list(self.ids),
                "nuclei_fraction": self.nuclei_fraction,
                "excess_reference": self.excess_reference,
                "excess_other": self.excess_other,
                "stats": self.stats,
                "meta": self.meta,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CamComparison:
        """Rebuild from :meth:`to_dict`."""
        methods = tuple(str(m) for m in d["methods"])

        def table(v: Any) -> FloatArray:
            rows = [[nan_if_none(x) for x in row] for row in v]
            return frozen_array(np.array(rows, dtype=np.float64).reshape(-1, len(methods)), float)

        return cls(
            reference={str(k): str(v) for k, v in d["reference"].items()},
            other={str(k): str(v) for k, v in d["other"].items()},
            methods=methods,
            ids=tuple(str(x) for x in d["ids"]),
            nuclei_fraction=frozen_array([nan_if_none(x) for x in d["nuclei_fraction"]], float),
            excess_reference=table(d["excess_reference"]),
            excess_other=table(d["excess_other"]),
            stats={
                str(m): {str(k): nan_if_none(v) for k, v in s.items()}
                for m, s in d["stats"].items()
            },
            meta=dict(d["meta"]),
        )


def paired_test(d: ArrayLike) -> dict[str, float]:
    """Wilcoxon signed-rank test of paired differences ``d`` (NaN dropped) and effect size.

    Returns ``n``, ``n_zero``, ``statistic``, ``p_value`` (``scipy.stats.wilcoxon``,
    two-sided, zeros dropped; NaN with no non-zero difference), ``rank_biserial``
    (``(T+ - T-) / (T+ + T-)``), ``median_difference`` and ``mean_difference``.
    """
    x = np.asarray(d, dtype=np.float64)
    x = x[np.isfinite(x)]
    nz = x[x != 0]
    out = {
        "n": float(len(x)),
        "n_zero": float(len(x) - len(nz)),
        "statistic": math.nan,
        "p_value": math.nan,
        "rank_biserial": math.nan,
        "median_difference": float(np.median(x)) if len(x) else math.nan,
        "mean_difference": float(np.mean(x)) if len(x) else math.nan,
    }
    if len(nz) == 0:
        return out
    res = stats.wilcoxon(nz, zero_method="wilcox", alternative="two-sided")
    ranks = stats.rankdata(np.abs(nz))
    plus, minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    out.update(
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        rank_biserial=(plus - minus) / (plus + minus),
    )
    return out


def compare_cams(reference: CamResult, other: CamResult, *, command: str = "") -> CamComparison:
    """Paired test of the CAM nuclei excess: ``other`` (e.g. finetuned) against
    ``reference`` (e.g. ImageNet-pretrained) on the same images.

    Run the second network on the first's images with
    ``cam(model_b, data, indices=a.indices, ...)``. A network without the first's target
    class (ImageNet weights and a tumour target) explains its own top class per image
    (``target="top"``; :func:`fallback_target` picks it).

    Parameters
    ----------
    reference, other : CamResult
        Maps of the same images (same ids, same order).
    command : str

    Returns
    -------
    CamComparison
        See its docstring for the statistics.

    Raises
    ------
    DataError
        Results on different images, or with no method in common.
    """
    if reference.ids != other.ids:
        raise DataError(
            "The two CAM results are on different images; run the second network on the "
            "first's images: cam(model, data, indices=first.indices, ...)."
        )
    methods = tuple(m for m in other.methods if m in reference.methods)
    if not methods:
        raise DataError(
            f"The two CAM results share no method ({', '.join(reference.methods)} vs "
            f"{', '.join(other.methods)}); compute the same methods for both."
        )
    ja = [reference.methods.index(m) for m in methods]
    jb = [other.methods.index(m) for m in methods]
    ea = reference.excess[:, ja]
    eb = other.excess[:, jb]
    out: dict[str, dict[str, float]] = {}
    for k, m in enumerate(methods):
        ok = np.isfinite(ea[:, k]) & np.isfinite(eb[:, k])
        s = paired_test(eb[ok, k] - ea[ok, k])
        s["mean_excess_reference"] = _mean(ea[ok, k])
        s["mean_excess_other"] = _mean(eb[ok, k])
        s["frac_other_higher"] = float(np.mean(eb[ok, k] > ea[ok, k])) if ok.any() else math.nan
        out[m] = s

    def side(r: CamResult) -> dict[str, str]:
        return {"model": r.model, "weights": r.weights, "layer": r.layer, "target": r.target}

    return CamComparison(
        reference=side(reference),
        other=side(other),
        methods=methods,
        ids=other.ids,
        nuclei_fraction=frozen_array(other.nuclei_fraction, np.float64),
        excess_reference=frozen_array(ea, np.float64),
        excess_other=frozen_array(eb, np.float64),
        stats=out,
        meta=provenance(command=command, data=str(other.meta.get("data_fingerprint", ""))),
    )


# -- options ----------------------------------------------------------------------------------


def check_methods(method: str | Sequence[str]) -> tuple[str, ...]:
    """Method names (``"gradcam,gradcam++"``, a list, or one) in :data:`METHODS` order.

    Raises
    ------
    UnknownNameError
        An unknown name, or none.
    """
    names = method.split(",") if isinstance(method, str) else list(method)
    found = []
    for raw in names:
        key = str(raw).strip().lower().replace("-", "").replace("_", "")
        if key not in _ALIASES:
            raise UnknownNameError(
                f"Unknown CAM method '{raw}'.{did_you_mean(key, METHODS)} "
                f"Use {' or '.join(METHODS)} (or both, comma-separated)."
            )
        found.append(_ALIASES[key])
    if not found:
        raise UnknownNameError(f"No CAM method given; use {' or '.join(METHODS)}.")
    return tuple(m for m in METHODS if m in found)


_NORM = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.Identity)


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, nn.Conv2d) for x in m.modules())


def _is_norm_or_activation(m: nn.Module) -> bool:
    return isinstance(m, _NORM) or type(m).__module__ == "torch.nn.modules.activation"


def last_conv_layer(module: nn.Module) -> str:
    """Dotted path of the last convolutional block before the pooling and classifier.

    From the root, take the last child that holds an ``nn.Conv2d``; descend into it while it
    is a plain container (``nn.Sequential`` / ``nn.ModuleList``) whose own last such child is
    not a bare convolution. A bare convolution at the end is extended by the normalisation
    and activation modules that follow it (its map after BN and ReLU). Gives ``Mixed_7c``
    for torchvision InceptionV3, ``features.18`` for MobileNetV2, ``layer4.2`` for
    ResNet50 and ``bn2`` (after ``conv_head``) for timm EfficientNets.

    Raises
    ------
    RcvlabError
        A module without any ``nn.Conv2d``.
    """

    def last_conv_child(m: nn.Module) -> tuple[int, list[tuple[str, nn.Module]]] | None:
        kids = list(m.named_children())
        idx = [i for i, (_, c) in enumerate(kids) if _has_conv(c)]
        return (idx[-1], kids) if idx else None

    found = last_conv_child(module)
    if found is None:
        raise RcvlabError(
            f"{type(module).__name__} has no nn.Conv2d, so it has no convolutional layer for a "
            "CAM; give layer= (a layer with a spatial map)."
        )
    path: list[str] = []
    while True:
        i, kids = found
        name, child = kids[i]
        if isinstance(child, nn.Conv2d):
            # the map after the bare convolution's BN / activation
            while i + 1 < len(kids) and _is_norm_or_activation(kids[i + 1][1]):
                i += 1
            return ".".join([*path, kids[i][0]])
        inner = last_conv_child(child)
        plain = isinstance(child, nn.Sequential | nn.ModuleList)
        if not plain or inner is None or isinstance(inner[1][inner[0]][1], nn.Conv2d):
            return ".".join([*path, name])
        path.append(name)
        found = inner


def _layer(model: Model, layer: str | None) -> LayerSpec:
    name = layer if layer is not None else last_conv_layer(model.module)
    if layer is None:
        # the rcvlab name of that module's output, where the model has one
        named = [s for s in model.layer_specs if s.kind == "output" and s.module == name]
        if named:
            name = named[0].name
    (spec,) = model.resolve([name])
    if spec.kind in ("softmax", "sigmoid"):
        raise RcvlabError(
            f"Layer '{spec.name}' is the {spec.kind} (class probabilities), not a feature map; "
            "choose a convolutional layer (default: the last one)."
        )
    if spec.kind == "residual_sum":
        raise RcvlabError(
            f"Layer '{spec.name}' is a residual sum read from two branches, not one module's "
            f"output; use the block itself ('{spec.module}') for a CAM."
        )
    return spec


def _to_nchw(t: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """The layer's output (or its gradient) as an ``(n, C, h, w)`` map."""
    shape = tuple(t.shape)
    if spec.reshape is not None:
        t = spec.reshape(t)
    elif t.ndim == 4 and spec.layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    elif t.ndim == 3 and spec.layout == "NLC":
        tokens = t[:, spec.prefix_tokens :]
        side = math.isqrt(tokens.shape[1])
        if side * side != tokens.shape[1]:
            raise RcvlabError(
                f"Layer '{spec.name}' has {tokens.shape[1]} patch tokens, not a square grid; "
                "pass reshape= to load_model to make it a map."
            )
        t = tokens.reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)
    if t.ndim != 4 or spec.layout == "NC":
        raise RcvlabError(
            f"Layer '{spec.name}' gives shape {shape}, not a spatial map (n, C, h, w); choose a "
            "convolutional layer before the global pooling."
        )
    return t


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A resolved target: ``top`` (each image's top class) or a fixed class index.

    ``binary``: the network has a single logit, class 1 is the logit, 0 its negative.
    """

    spec: str
    index: int | None
    binary: bool
    names: tuple[str, ...]

    def classes(self, logits: torch.Tensor) -> torch.Tensor:
        """The class explained for each image of a batch of logits."""
        if self.index is not None:
            return torch.full((logits.shape[0],), self.index, dtype=torch.long)
        if self.binary:
            return (logits[:, 0] > 0).long().cpu()
        return logits.argmax(dim=1).cpu()

    def probs(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Probability of each image's target class."""
        logits = logits.detach().float().cpu()
        if self.binary:
            sign = classes.float() * 2 - 1
            return torch.sigmoid(sign * logits[:, 0])
        return torch.softmax(logits, dim=1).gather(1, classes[:, None])[:, 0]

    def name(self, k: int) -> str:
        if self.binary:
            positive = self.names[0] if self.names else "positive"
            return positive if k == 1 else f"non-{positive}"
        return self.names[k] if k < len(self.names) else ""


def resolve_target(model: Model, target: int | str, n_logits: int | None = None) -> Target:
    """Check ``target`` against the network's classes.

    Parameters
    ----------
    model : Model
    target : int or str
        A class index, a category name, or ``"top"``. For a single-logit network: 1 or its
        positive name (``"tumour"``), 0 or ``"non-<positive>"``.
    n_logits : int, optional
        The network's number of outputs (from a forward pass); by default the number of
        its categories (1 means a single logit).

    Raises
    ------
    RcvlabError
        An index out of range, or not an int / str.
    UnknownNameError
        A name the network does not know.
    """
    cats = tuple(model.categories)
    n = n_logits if n_logits is not None else (len(cats) or None)
    binary = n == 1
    names = cats if (n is None or len(cats) == n) else ()
    if isinstance(target, bool) or not isinstance(target, int | np.integer | str):
        raise RcvlabError(
            f"target must be a class index, a category name or 'top', got {target!r}."
        )
    spec = str(target).strip()
    if spec.lower() == "top":
        return Target("top", None, binary, names)
    if spec.lstrip("-").isdigit():
        k = int(spec)
        hi = 1 if binary else (n - 1 if n is not None else None)
        if k < 0 or (hi is not None and k > hi):
            what = (
                "a single logit: use 1 (the logit) or 0 (its negative)"
                if binary
                else f"{n} classes: use 0-{hi}, a category name or 'top'"
            )
            raise RcvlabError(f"Target class {k} is out of range: the network has {what}.")
        return Target(spec, k, binary, names)
    if binary:
        positive = names[0] if names else "positive"
        choices = {positive.lower(): 1, f"non-{positive}".lower(): 0}
        if spec.lower() in choices:
            return Target(spec, choices[spec.lower()], True, names)
        raise UnknownNameError(
            f"Unknown target '{spec}' for a single-logit network.{did_you_mean(spec, choices)} "
            f"Use '{positive}' (1), 'non-{positive}' (0) or 'top'."
        )
    lower = [c.lower() for c in names]
    if spec.lower() in lower:
        return Target(spec, lower.index(spec.lower()), False, names)
    if not names:
        raise UnknownNameError(
            f"Target '{spec}': this network has no class names; give a class index or 'top'."
        )
    raise UnknownNameError(
        f"Unknown target class '{spec}'.{did_you_mean(spec, names)} Give an index "
        f"(0-{len(names) - 1}), one of the network's category names, or 'top'."
    )


def fallback_target(model: Model, target: int | str) -> int | str:
    """``target`` when ``model`` has that class, else ``"top"`` (its own top class per image).

    For comparing a finetuned tumour network with its ImageNet original, which has no
    tumour class: the original's map then explains what it sees in the image.
    """
    try:
        resolve_target(model, target)
    except RcvlabError:
        return "top"
    return target


# -- the pass ---------------------------------------------------------------------------------


class _Cut:
    """Forward hook on the CAM layer: hands the rest of the network a copy of the output that
    starts a new graph, so that the backward pass stops at the layer."""

    def __init__(self, spec: LayerSpec) -> None:
        self.spec = spec
        self.leaf: torch.Tensor | None = None
        self.calls = 0
        self.grad = False

    def __call__(self, _m: nn.Module, _inp: object, out: Any) -> torch.Tensor | None:
        if not isinstance(out, torch.Tensor):
            raise RcvlabError(
                f"Layer '{self.spec.name}' returns {type(out).__name__}, not a tensor; choose "
                "another layer."
            )
        self.calls += 1
        if self.calls > 1:
            raise RcvlabError(
                f"The module of layer '{self.spec.name}' runs more than once per forward pass "
                "(a shared module); its CAM is ambiguous: choose another layer."
            )
        self.leaf = out.detach().requires_grad_(self.grad)
        # a clone, so that in-place operations after the layer do not touch the leaf
        return self.leaf.clone() if self.grad else self.leaf

    def reset(self, grad: bool) -> None:
        self.leaf, self.calls, self.grad = None, 0, grad


@contextmanager
def _hooked(module: nn.Module, spec: LayerSpec) -> Iterator[_Cut]:
    """The cut hook on the layer and no parameter gradients, both undone on exit."""
    cut = _Cut(spec)
    flags = [(p, p.requires_grad) for p in module.parameters()]
    handle = module.get_submodule(spec.module).register_forward_hook(cut)
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield cut
    finally:
        handle.remove()
        for p, f in flags:
            p.requires_grad_(f)


def _logits(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RcvlabError(f"The network must return (n, classes) logits for a CAM; got {got}.")
    return out


def _probe(model: Model, spec: LayerSpec, dev: torch.device) -> tuple[tuple[int, ...], int]:
    """``(layer map shape, number of logits)`` from one blank image (checks the layer)."""
    module = model.module
    s = model.input_size
    with borrowed(module, dev) as m, _hooked(m, spec) as cut, torch.inference_mode():
        cut.reset(grad=False)
        logits = _logits(m(torch.zeros(1, 3, s, s, device=dev)))
        if cut.leaf is None:
            raise RcvlabError(f"Layer '{spec.name}' was not reached in the forward pass.")
        shape = tuple(_to_nchw(cut.leaf, spec).shape)
    return shape, int(logits.shape[1])


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for i0 in range(0, n, size):
        yield i0, min(n, i0 + size)


@dataclass
class _Batch:
    rows: list[int]
    pixels: np.ndarray
    classes: np.ndarray
    probs: np.ndarray
    low: np.ndarray


def _cam_batch(
    module: nn.Module,
    model: Model,
    cut: _Cut,
    engines: Mapping[str, Any],
    target: Target,
    pixels: torch.Tensor,
    dev: torch.device,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward + backward pass: per image the class, its probability and the
    ReLU'd layer maps of every method ``(k, methods, h, w)``."""
    from pytorch_grad_cam.utils.model_targets import (
        BinaryClassifierOutputTarget,
        ClassifierOutputTarget,
    )

    x = model.preprocessing.normalise(pixels.to(dev))
    cut.reset(grad=True)
    with torch.enable_grad():
        logits = _logits(module(x))
        if cut.leaf is None:
            raise RcvlabError(f"Layer '{cut.spec.name}' was not reached in the forward pass.")
        classes = target.classes(logits.detach())
        make = BinaryClassifierOutputTarget if target.binary else ClassifierOutputTarget
        targets = [make(int(k)) for k in classes]
        # the library's loss: the sum over the images of each one's target output
        loss = sum(t(o).sum() for t, o in zip(targets, logits, strict=True))
        (grad,) = torch.autograd.grad(loss, cut.leaf)
    acts = _to_nchw(cut.leaf, cut.spec).detach().float().cpu().numpy()
    grads = _to_nchw(grad, cut.spec).detach().float().cpu().numpy()
    layer = module.get_submodule(cut.spec.module)
    low = np.stack(
        [
            np.maximum(e.get_cam_image(x, layer, targets, acts, grads), 0).astype(np.float32)
            for e in engines.values()
        ],
        axis=1,
    )
    return classes.numpy(), target.probs(logits, classes).numpy().astype(np.float64), low


def _scores(
    module: nn.Module,
    model: Model,
    data: ImageSet,
    cut: _Cut,
    target: Target,
    dev: torch.device,
    batch_size: int,
    resize: str,
    strict: bool,
) -> np.ndarray:
    """Target probability of every image (NaN for unreadable ones), forward passes only."""
    probs = np.full(len(data), np.nan)
    for i0, i1 in _batches(len(data), batch_size):
        pixels, ok, _ = load_batch(model, data, i0, i1, resize=resize, strict=strict, raw=True)
        if pixels is None:
            continue
        cut.reset(grad=False)
        with torch.inference_mode():
            logits = _logits(module(model.preprocessing.normalise(pixels.to(dev))))
        classes = target.classes(logits)
        probs[[i0 + j for j in ok]] = target.probs(logits, classes).numpy()
    return probs


def _select(probs: np.ndarray, top: int | None, min_prob: float | None, what: str) -> np.ndarray:
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable")
    order = order[np.isfinite(probs[order])]
    if min_prob is not None:
        order = order[probs[order] >= min_prob]
        if len(order) == 0:
            best = np.nanmax(probs) if np.isfinite(probs).any() else math.nan
            raise DataError(
                f"No image has {what} >= {min_prob:g} (the highest is {best:.4g}); lower "
                "min_prob (--min-prob) or use top (--top) alone."
            )
    if top is not None:
        order = order[:top]
    return order


def _mask_at(mask: np.ndarray, model: Model, resize: str) -> np.ndarray:
    """A nuclei mask through the images' own geometry (resize, or resize and centre crop),
    by nearest neighbour."""
    from rcvlab.measures import binarise_mask

    m = binarise_mask(mask)
    im = Image.fromarray(m.astype(np.uint8) * 255).convert("RGB")
    nearest = replace(model.preprocessing, interpolation="nearest")
    return nearest.pixels([im], mode=resize)[0, :, :, 0] > 127


def _segmenter() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from rcvlab.measures import segment_nuclei  # type: ignore[attr-defined]
    except ImportError:
        return None
    return segment_nuclei  # type: ignore[no-any-return]


def cam(
    model: Model,
    images: ImageSet | np.ndarray | Sequence[np.ndarray],
    *,
    layer: str | None = None,
    method: str | Sequence[str] = "gradcam++",
    target: int | str = 1,
    top: int | None = None,
    min_prob: float | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    masks: Sequence[np.ndarray] | np.ndarray | None = None,
    nuclei: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resize: str = "resize",
    strict: bool = False,
    device: str | torch.device | None = None,
    command: str = "",
) -> CamResult:
    """grad-CAM / grad-CAM++ maps of a target class at a layer, and their mass on nuclei.

    Parameters
    ----------
    model : Model
        From :func:`rcvlab.load_model` (or a binary head). Comes back as it was: device,
        ``training`` flags, ``requires_grad`` flags and ``.grad`` unchanged, no hook left.
    images : ImageSet or uint8 array (n, H, W, 3) or list of images
        Preprocessed as the features pipeline does (the model's resize and normalisation).
    layer : str, optional
        An rcvlab layer name or a dotted module path; default: the last convolutional
        block (:func:`last_conv_layer`).
    method : str or sequence of str
        ``gradcam``, ``gradcam++`` or both (a list or ``"gradcam,gradcam++"``); all from
        the same forward + backward pass.
    target : int or str
        A class index, a category name or ``"top"`` (each image's top class). A single-logit
        network: 1 / its positive name (``"tumour"``) or 0 / ``"non-tumour"``.
    top : int, optional
        Keep the ``top`` images with the highest target probability.
    min_prob : float, optional
        Keep only images with target probability >= ``min_prob`` (the paper: 0.99).
    indices : sequence of int, optional
        Use these images of ``images`` only (in this order; e.g. another result's
        ``indices``, to compare two networks on the same images). Selection by ``top`` /
        ``min_prob`` then picks among them.
    masks : sequence of arrays, optional
        A nuclei mask per image of ``images``, of the image's size (resized, or resized and
        cropped, as the image, by nearest neighbour); default: the data's own masks, else
        :func:`rcvlab.measures.segment_nuclei` of each image.
    nuclei : bool
        Compute the nuclei fraction and CAM mass (False: NaN, no segmentation).
    batch_size : int
    resize : {"resize", "crop"}
        As :func:`rcvlab.extract_features`.
    strict : bool
        Raise at the first unreadable image instead of skipping it.
    device : str, optional
        Default: ``cuda`` when available.
    command : str
        Recorded in ``meta``.

    Returns
    -------
    CamResult

    Raises
    ------
    UnknownNameError
        An unknown layer, method or target name.
    RcvlabError
        A target index out of range, bad options, a layer without a spatial map.
    DataError
        Preprocessed tensors instead of images, no image over ``min_prob``, masks that do
        not match the images.
    """
    methods = check_methods(method)
    batch_size = check_int("batch_size", batch_size, 1)
    if top is not None:
        top = check_int("top", top, 1, "the number of images to keep")
    if min_prob is not None:
        if isinstance(min_prob, bool) or not isinstance(min_prob, int | float):
            raise RcvlabError(f"min_prob must be a number in [0, 1], got {min_prob!r}.")
        if not 0.0 <= float(min_prob) <= 1.0:
            raise RcvlabError(f"min_prob must be in [0, 1], got {min_prob!r}.")
        min_prob = float(min_prob)
    if resize not in ("resize", "crop"):
        raise RcvlabError(f"Unknown resize mode '{resize}'; use 'resize' or 'crop'.")
    if not isinstance(model, Model):
        raise RcvlabError(
            "cam needs a Model: rcvlab.load_model(name, weights) or "
            "rcvlab.load_model(module, input_size=...)."
        )
    resolve_target(model, target)  # names and known ranges, before anything runs
    data = as_image_set(images)
    if isinstance(data, TensorImageSet):
        raise DataError(
            "cam needs the images (uint8 pixels), not preprocessed float tensors: the overlays "
            "and nuclei masks are on the pixels; pass the uint8 images."
        )
    n_all = len(data)
    if indices is None:
        candidates = np.arange(n_all)
    else:
        candidates = np.asarray(indices)
        if candidates.ndim != 1 or (candidates.size and candidates.dtype.kind not in "iu"):
            raise RcvlabError("indices must be a 1-D sequence of image indices.")
        bad = candidates[(candidates < 0) | (candidates >= n_all)]
        if bad.size:
            raise RcvlabError(
                f"Image index {int(bad[0])} is out of range: the data has {n_all} images."
            )
        candidates = candidates.astype(np.intp)
    if masks is not None and len(masks) != n_all:
        raise DataError(f"{len(masks)} nuclei masks for {n_all} images; give one per image.")
    if len(candidates) == 0:
        raise DataError("No images to compute CAMs for.")
    dev = choose_device(device)
    spec = _layer(model, layer)
    layer_shape, n_logits = _probe(model, spec, dev)
    tgt = resolve_target(model, target, n_logits)

    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    pool = data.subset(candidates) if indices is not None else data
    module = model.module
    rows: list[_Batch] = []
    skipped: list[Skip] = []
    with borrowed(module, dev) as m, _hooked(m, spec) as cut:
        if top is not None or min_prob is not None:
            probs = _scores(m, model, pool, cut, tgt, dev, batch_size, resize, strict)
            k = tgt.index
            what = "P(top class)" if k is None else f"P({tgt.name(k) or f'class {k}'})"
            chosen = _select(probs, top, min_prob, what)
        else:
            chosen = np.arange(len(pool))
        sub = pool.subset(chosen)
        # The engines compute weights and maps from this pass's activations and gradients;
        # given no target layers they register no hooks (theirs would copy every activation
        # to the CPU again). Used in `with` blocks as the library requires.
        with GradCAM(m, target_layers=[]) as e0, GradCAMPlusPlus(m, target_layers=[]) as e1:
            built = {"gradcam": e0, "gradcam++": e1}
            engines = {k: built[k] for k in methods}
            for i0, i1 in _batches(len(sub), batch_size):
                pixels, ok, skip = load_batch(
                    model, sub, i0, i1, resize=resize, strict=strict, raw=True
                )
                skipped.extend(skip.values())
                if pixels is None:
                    continue
                k, p, low = _cam_batch(m, model, cut, engines, tgt, pixels, dev)
                nhwc = pixels.permute(0, 2, 3, 1).contiguous().numpy()
                rows.append(_Batch([i0 + j for j in ok], nhwc, k, p, low))
    if not rows:
        raise DataError("None of the images could be read; see the skipped list.")
    local = np.concatenate([np.asarray(b.rows, dtype=np.intp) for b in rows])
    in_pool = chosen[local]
    idx = candidates[in_pool]
    pixels_all = np.concatenate([b.pixels for b in rows])
    low_all = np.concatenate([b.low for b in rows])
    size = (int(pixels_all.shape[1]), int(pixels_all.shape[2]))
    normalised = normalise_like_gradcam(low_all.reshape(-1, *low_all.shape[2:]), size).reshape(
        len(idx), len(methods), *size
    )

    # nuclei: the data's masks, the given ones, or segmentation of the image
    seg = None
    if not nuclei:
        source = "not computed (nuclei=False)"
    elif masks is not None:
        source = "given (masks=)"
    elif data.has_masks:
        source = "the data's nuclei masks"
    else:
        seg = _segmenter()
        source = (
            "rcvlab.measures.segment_nuclei (colour deconvolution)"
            if seg is not None
            else "none (rcvlab.measures.segment_nuclei is not available)"
        )
    fraction = np.full(len(idx), np.nan)
    mass = np.full((len(idx), len(methods)), np.nan)
    mask_all = np.zeros((len(idx), *size), dtype=bool)
    mask_errors: list[dict[str, str]] = []
    if nuclei and (masks is not None or data.has_masks or seg is not None):
        for r, i in enumerate(idx):
            try:
                if masks is not None:
                    raw_mask = np.asarray(masks[int(i)])
                elif data.has_masks:
                    raw_mask = data.load_mask(int(i))
                else:
                    raw_mask = seg(np.asarray(data.load(int(i))))  # type: ignore[misc]
                mk = _mask_at(raw_mask, model, resize)
            except DataError as e:
                mask_errors.append({"path": data.ids[int(i)], "reason": f"nuclei mask: {e}"})
                continue
            mask_all[r] = mk
            fraction[r] = float(mk.mean())
            for j in range(len(methods)):
                mass[r, j] = nuclei_mass(normalised[r, j], mk)

    classes = data.classes
    meta = provenance(
        command=command,
        data=data,
        weights_id=model.weights_id,
        layer_shape=list(layer_shape),
        input_size=list(size),
        preprocessing=model.preprocessing.key(),
        resize=resize,
        top=top,
        min_prob=min_prob,
        n_candidates=len(candidates),
        n_logits=n_logits,
        device=str(dev),
        nuclei_source=source,
        definition=DEFINITION,
        skipped=[{"path": s.path, "reason": s.reason} for s in skipped] + mask_errors,
    )
    result = CamResult(
        model=model.name,
        weights=model.weights,
        layer=spec.name,
        module=spec.module,
        methods=methods,
        target=str(target),
        indices=frozen_array(idx, np.intp),
        ids=tuple(data.ids[int(i)] for i in idx),
        classes=tuple("" if classes is None else str(classes[int(i)]) for i in idx),
        target_classes=frozen_array(np.concatenate([b.classes for b in rows]), np.intp),
        target_names=tuple(tgt.name(int(k)) for b in rows for k in b.classes),
        probs=frozen_array(np.concatenate([b.probs for b in rows]), np.float64),
        images=frozen_array(pixels_all, np.uint8),
        low=frozen_array(low_all, np.float32),
        nuclei_masks=frozen_array(mask_all, bool),
        nuclei_fraction=frozen_array(fraction, np.float64),
        nuclei_mass=frozen_array(mass, np.float64),
        meta=meta,
    )
    # the normalised maps were needed for the masses already: keep them
    result.__dict__["all_normalised"] = frozen_array(normalised, np.float32)
    return result


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFINITION",
    "METHODS",
    "CamComparison",
    "CamResult",
    "Target",
    "cam",
    "check_methods",
    "compare_cams",
    "decode_array",
    "encode_array",
    "fallback_target",
    "last_conv_layer",
    "normalise_like_gradcam",
    "nuclei_mass",
    "paired_test",
    "resolve_target",
    "upsample",
]
