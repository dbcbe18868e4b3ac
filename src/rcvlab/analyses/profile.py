"""The layer-wise concept profile of a network (paper 000 §4.3): features, RCVs, baselines."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from rcvlab.data.base import ImageSet
from rcvlab.errors import RcvlabError
from rcvlab.features.extract import FeatureSet, as_image_set, extract_features
from rcvlab.models.registry import Model, as_model
from rcvlab.probe.fit import check_min_std, check_regressor
from rcvlab.probe.profile import (
    check_fit_device,
    check_measure,
    check_split,
    check_split_options,
    probe_layers,
)
from rcvlab.probe.result import ProfileResult
from rcvlab.result import provenance

BASELINES = ("random", "shuffled")


def layer_profile(
    model: str | Model | nn.Module,
    data: ImageSet,
    *,
    weights: str = "imagenet",
    measure: str = "scale_ratio",
    layers: Sequence[str] | str | None = None,
    baselines: Sequence[str] = BASELINES,
    regressor: str = "ols",
    alpha: float | None = None,
    reps: int = 10,
    test_fraction: float = 0.3,
    seed: int = 0,
    per_class: bool | None = None,
    split: str | None = None,
    batch_size: int = 32,
    pooling: str = "gap",
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    strict: bool = False,
    progress: bool = False,
    command: str = "",
    min_std: float | None = None,
    min_images: int = 10,
    precision: str = "fp32",
    client: Any = None,
    fit_device: str | None = None,
) -> ProfileResult:
    """Profile how linearly ``measure`` is encoded in every layer of ``model``.

    Extracts pooled features of the model (and of its random-weights twin, seeded with
    ``seed``), then fits RCVs and scores them by held-out R²
    (:func:`rcvlab.probe.probe_layers`): by default on repeated train/test splits within
    each object class, pooling the test R² over classes and repetitions (the papers'
    protocol); with ``split="leave-one-class-out"`` fitted on all classes but one and
    scored on the held-out class, for every class. With ``cache_dir`` the features are
    extracted once and read back by later calls (e.g. a second call with another
    ``split`` costs only the regressions).

    Parameters
    ----------
    model : str, Model or torch.nn.Module
        A registry name (loaded with ``weights`` and ``seed``) or a loaded model.
    data : ImageSet
        Images with the measure (``rcvlab.data.open_data``).
    baselines : sequence of {"random", "shuffled"}
        Which baselines to run in the same call.
    split : {"per-class", "pooled", "leave-one-class-out"}, optional
        How images are split into training and test sides (see
        :func:`rcvlab.probe.probe_layers`). Default: ``"per-class"`` when the data has
        classes (as the papers do), else ``"pooled"``. ``"per-class"`` and
        ``"leave-one-class-out"`` need classes; the latter at least two.
    per_class : bool, optional
        The older spelling: True is the default above, False is ``split="pooled"``. Give
        ``split`` or ``per_class``, not two that disagree.
    min_std : float, optional
        Standardisation guard of the RCV fits (:func:`rcvlab.probe.probe_layers`): None or
        0 (the default) is the papers' plain standardisation.
    min_images : int
        Minimum number of images with a measure value (per class unless pooled).
    command : str
        The command line recorded in ``meta``.
    precision : {"fp32", "bf16", "fp16"}
        Precision of the model's forward passes (:func:`rcvlab.features.extract_features`);
        the random-weights baseline always runs in fp32. Recorded in ``meta``.
    fit_device : str, optional
        Run the ridge fits on this torch device (``"cuda"``: the batched kernel of
        :func:`rcvlab.probe.probe_layers`); default NumPy on the CPU. Recorded in ``meta``.
    client : distributed.Client, optional
        Run the extractions (with ``cache_dir``) and the fits on this Dask cluster
        (:func:`rcvlab.open_client`); the profile equals the one-process profile.

    Other parameters are those of :func:`rcvlab.features.extract_features` and
    :func:`rcvlab.probe.probe_layers`.

    Returns
    -------
    ProfileResult
        With ``data`` holding the source, counts and the list of skipped images, and
        ``meta`` the provenance (:func:`rcvlab.result.provenance`).

    Raises
    ------
    RcvlabError
        Bad options, checked before any image is read (an unknown split, a split that needs
        classes on data without classes, ``split`` and ``per_class`` that disagree).
    DataError
        A measure that is constant, has no value, an infinite value or too few values
        (per class unless pooled), or fewer than two classes for leave-one-class-out, found
        before any feature is extracted.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise RcvlabError(
            f"Unknown baseline(s) {sorted(unknown)}; choose from {', '.join(BASELINES)}."
        )
    check_regressor(regressor, alpha)
    check_split_options(reps, test_fraction, seed)
    check_min_std(min_std)
    check_fit_device(fit_device)
    split = _resolve_split(split, per_class)
    if split is not None:
        check_split(split, True)  # the name; whether the data has classes is checked below
    model = as_model(model, weights, seed)
    model.resolve(layers)  # unknown layer names fail here, before the data is read
    data = as_image_set(data)
    y = data.measure(measure)
    has_classes = data.classes is not None
    if split is None:
        split = "per-class" if has_classes else "pooled"
    split = check_split(split, has_classes)
    classes = data.classes if split != "pooled" else None
    # Everything about the measure alone is checked before the (long) extraction.
    check_measure(y, classes, min_images=min_images, name=f"measure {measure!r}", split=split)
    kw = dict(
        layers=layers,
        batch_size=batch_size,
        pooling=pooling,
        cache_dir=cache_dir,
        device=device,
        strict=strict,
        progress=progress,
        precision=precision,
        client=client,
    )
    feats = extract_features(model, data, **kw)
    random_feats = None
    if "random" in baselines:
        # always float32: a random network's features vary so little between images that
        # 16-bit rounding is of the order of their spread
        random_feats = extract_features(
            model.twin("random", seed), data, **{**kw, "precision": "fp32"}
        )
    kept, no_positions = _layers_with_positions(feats, model)
    res = probe_layers(
        dict(feats),
        y,
        reps=reps,
        test_fraction=test_fraction,
        regressor=regressor,
        alpha=alpha,
        seed=seed,
        classes=classes,
        shuffled="shuffled" in baselines,
        random_features=None if random_feats is None else dict(random_feats),
        layers=kept,
        min_std=min_std,
        min_images=min_images,
        split=split,
        client=client,
        device=fit_device,
    )
    skipped = skipped_items(data, feats)
    info = {
        **res.data,
        "source": data.source,
        "fingerprint": data.fingerprint(),
        "n_images": len(data),
        "n_skipped": len(skipped),
        "classes": sorted(set(data.classes.tolist())) if classes is not None else [],
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    return res.with_meta(
        model=model.name,
        weights=model.weights,
        measure=measure,
        data=info,
        meta=provenance(
            command=command, seed=seed, data=data, precision=precision, fit_device=fit_device
        ),
        extra={
            **res.extra,
            "weights_id": model.weights_id,
            "pooling": pooling,
            **({"positions": feats.positions} if feats.positions else {}),
            **({"no_positions": no_positions} if no_positions else {}),
            "preprocessing": model.preprocessing.key(),
            "feature_cache_key": feats.key,
        },
    )


def _resolve_split(split: str | None, per_class: bool | None) -> str | None:
    """``split`` from the two spellings (None: the data decides), or a one-line error."""
    if per_class is None:
        return split
    if not isinstance(per_class, bool):
        raise RcvlabError(f"per_class must be True or False, got {per_class!r}")
    if split is None:
        return None if per_class else "pooled"
    if per_class != (split != "pooled"):
        raise RcvlabError(f"per_class={per_class} contradicts split={split!r}; give only split=")
    return split


def _layers_with_positions(feats: FeatureSet, model: Model) -> tuple[list[str], list[str]]:
    """Layers to probe, and those corrected GAP left without any position."""
    empty = [k for k in feats if feats.positions.get(k, -1) == 0]
    if empty and len(empty) == len(feats):
        raise RcvlabError(
            f"No probed layer of {model.name} has a position free of padding at "
            f"{model.input_size} px, so corrected GAP has nothing to average. Probe earlier "
            "layers, a larger --input-size, or --pooling gap."
        )
    return [k for k in feats if k not in empty], empty


def skipped_items(data: ImageSet, feats: FeatureSet | None = None) -> list[tuple[str, str]]:
    """Everything left out: items dropped while indexing plus images that failed to load."""
    out = [(s.path, s.reason) for s in data.skipped]
    if feats is not None:
        out += [(s.path, s.reason) for _, s in sorted(feats.skipped.items())]
    return out


__all__ = ["BASELINES", "layer_profile", "skipped_items"]
