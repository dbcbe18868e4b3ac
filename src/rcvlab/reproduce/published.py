"""The papers' published numbers, and ours beside them.

``published.csv`` (package data) holds every number the four papers publish that a
reproduction can be compared with, one row each, with its source: columns ``key`` (e.g.
``000/tableA1/mixed8/imagenet``), ``paper`` (``000``, ``001``, ``004``), ``source`` (paper
and table, figure or section), ``row``, ``column`` (as the paper labels them), ``value``,
``std`` (empty where the paper gives none: read as NaN), ``unit`` and ``note``.

Keys, by family (``NET`` is ``inception_v3`` or ``resnet50``):

* ``000/tableA1/<layer>/<imagenet|random|shuffled>`` — Table A1 (albatross, 25 runs);
* ``000/peak/NET/<imagenet|random|shuffled>`` — layer-wise peaks over 3 classes x 10 reps;
* ``000/table2/NET/<pretrained|scratch|pruned>/<mae|kappa>``,
  ``000/sec4.4/inception_v3/pruned/mae_<mag>``, ``000/sec5/NET/param_reduction``,
  ``000/sec3.2/n_images/<synset>``, ``000/notebook/class_mean_area/<mag>``;
* ``001/fig3/<plain|lasso>/<r2|nonzero>``, ``001/table1/<kite|racing_car>/r2``,
  ``001/sec5.1/cross/nonzero``, ``001/table2/albatross-<class>/<plain|lasso>/<angle|cos>``,
  ``001/sec5.2/shuffled/<angle|cos>``;
* ``004/fig3/<random-xavier|pretrained|finetuned>/<asm|contrast|correlation>/<layer>``,
  ``004/sec2/<val_accuracy|val_auc>``.

Ours come from the step results of a reproduction (:func:`ours_for`). Each key family looks
first for the step id the packaged configs give it (:data:`STEP_IDS`, e.g. Table A1 reads
step ``profile_albatross``), then for the one result of the right type (and, where the key
names a network, of that network): a user's own config therefore works when it has one
step of each kind, and names its steps as the packaged configs do when it has several.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from rcvlab.errors import UnknownNameError, did_you_mean

PUBLISHED_COLUMNS: tuple[str, ...] = (
    "key",
    "paper",
    "source",
    "row",
    "column",
    "value",
    "std",
    "unit",
    "note",
)
"""Columns of :func:`published_numbers` (``published.csv``)."""

COMPARE_COLUMNS: tuple[str, ...] = (
    "key",
    "source",
    "row",
    "column",
    "unit",
    "published",
    "published_std",
    "ours",
    "ours_std",
    "diff",
    "diff_in_std",
    "verdict",
    "step",
)
"""Columns of :func:`compare`: the published number (``published``, ``published_std``:
NaN where the paper gives none), ours (``ours``, ``ours_std``: NaN where the run has no
such number or no spread), ``diff`` (ours - published), ``diff_in_std`` (``diff`` in units
of the published std), ``verdict`` (``within``: ``|diff| <= 2 x published_std``;
``outside``; ``n/a``: ours missing or the published std unknown — then read ``diff``) and
``step`` (the step id ours came from; empty when none)."""

#: Within when |ours - published| <= WITHIN_STDS x published std.
WITHIN_STDS = 2.0

#: The papers' ImageNet synsets by the names keys use.
SYNSETS: dict[str, str] = {
    "albatross": "n02058221",
    "kite": "n01608432",
    "racing_car": "n04037443",
}

#: Step ids each key family reads first (the packaged configs' names); ``{net}`` is the
#: key's network.
STEP_IDS: dict[str, tuple[str, ...]] = {
    "tableA1": ("profile_albatross",),
    "peak": ("profile_{net}",),
    "table2": ("transfer_{net}",),
    "param_reduction": ("prune_{net}",),
    "n_images": ("profile_inception_v3", "profile_albatross"),
    "class_mean_area": ("transfer_inception_v3", "transfer_resnet50", "transfer"),
    "sparsity": ("sparsity",),
    "consistency": ("consistency",),
    "texture": ("texture",),
    "finetune": ("finetune",),
}

_PROFILE_KIND = {"imagenet": "model", "random": "random", "shuffled": "shuffled"}
_NAN = math.nan


class Ours(NamedTuple):
    """Our number for one key: ``value``, ``std`` (NaN when none) and the ``step`` id."""

    value: float
    std: float
    step: str


_MISSING = Ours(_NAN, _NAN, "")


@functools.lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    text = resources.files("rcvlab.reproduce").joinpath("published.csv")
    with resources.as_file(text) as path:
        df = pd.read_csv(
            path,
            dtype={c: str for c in PUBLISHED_COLUMNS if c not in ("value", "std")},
            keep_default_na=False,
            na_values={"value": [""], "std": [""]},
        )
    df["value"] = df["value"].astype(np.float64)
    df["std"] = df["std"].astype(np.float64)
    return df[list(PUBLISHED_COLUMNS)]


def published_numbers() -> pd.DataFrame:
    """Every published number with its source (a copy of ``published.csv``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PUBLISHED_COLUMNS`, one row per key, in the papers' order; ``std``
        is NaN where the paper gives none.
    """
    return _table().copy()


def expand_keys(patterns: Iterable[str]) -> list[str]:
    """Published keys matching ``patterns`` (exact keys or ``fnmatch`` globs), in table order.

    Parameters
    ----------
    patterns : iterable of str
        Keys such as ``"000/table2/inception_v3/pruned/mae"`` or globs such as
        ``"000/tableA1/*"``.

    Returns
    -------
    list of str
        The matching keys, each once, in the order of ``published.csv``.

    Raises
    ------
    UnknownNameError
        A pattern that matches no key (with a did-you-mean).
    """
    keys = list(_table()["key"])
    chosen: set[str] = set()
    for p in patterns:
        hit = [k for k in keys if fnmatch.fnmatchcase(k, p)]
        if not hit:
            raise UnknownNameError(
                f"Unknown published number {p!r}: no key matches it. "
                f"{did_you_mean(p, keys)} `rcvlab.reproduce.published.published_numbers()` "
                "lists them."
            )
        chosen.update(hit)
    return [k for k in keys if k in chosen]


# -- finding our numbers ------------------------------------------------------------------


def _candidates(
    results: Mapping[str, Any], kind: str, ids: Sequence[str], net: str | None = None
) -> list[tuple[str, Any]]:
    """Results of result kind ``kind``: the preferred step ids first, then the others."""
    typed = [(s, r) for s, r in results.items() if getattr(r, "kind", None) == kind]
    preferred = [(s, r) for s, r in typed if s in ids]
    if preferred:
        return preferred
    if net is not None:
        named = [(s, r) for s, r in typed if _model_of(r) == net]
        return named
    return typed if len(typed) == 1 else []


def _model_of(r: Any) -> str:
    name = getattr(r, "model", None)
    if isinstance(name, str):
        return name
    return str(getattr(r, "meta", {}).get("model", ""))


def _ids(family: str, net: str | None = None) -> tuple[str, ...]:
    return tuple(s.format(net=net or "") for s in STEP_IDS[family])


def _canon(name: str) -> str:
    """A class name as its synset (``"kite"``, ``"racing car"`` -> synsets), lower case."""
    n = str(name).strip().lower()
    return SYNSETS.get(n.replace(" ", "_"), n)


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    a = np.asarray(list(values), dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return (_NAN, _NAN)
    return (float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else _NAN)


def _table_a1(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    layer, col = m.group(1), m.group(2)
    cands = _candidates(results, "profile", _ids("tableA1"), net="inception_v3")
    for step, r in cands:
        kind = _PROFILE_KIND[col]
        if kind not in r.profiles:
            continue
        try:
            s = r.score(layer, kind)
        except KeyError:
            continue
        by_class = {_canon(c): v for c, v in s.r2_by_class.items()}
        if SYNSETS["albatross"] in by_class:
            mean, std = _mean_std(by_class[SYNSETS["albatross"]])
            return Ours(mean, std, step)
        return Ours(float(s.r2_mean), float(s.r2_std), step)
    return _MISSING


def _peak(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    net, col = m.group(1), m.group(2)
    for step, r in _candidates(results, "profile", _ids("peak", net), net=net):
        kind = _PROFILE_KIND[col]
        scores = [s for s in r.profiles.get(kind, ()) if math.isfinite(s.r2_mean)]
        if scores:
            best = max(scores, key=lambda s: s.r2_mean)
            return Ours(float(best.r2_mean), float(best.r2_std), step)
    return _MISSING


def _variant_row(summary: pd.DataFrame, variant: str) -> pd.Series | None:
    names = [v for v in summary.index if v == variant or v.startswith(f"{variant}:")]
    return summary.loc[names[0]] if names else None


def _table2(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    net, variant, metric = m.group(1), m.group(2), m.group(3)
    for step, r in _candidates(results, "transfer", _ids("table2", net), net=net):
        row = _variant_row(r.summary_frame(), variant)
        col = f"{metric}_mean"
        if row is not None and col in row.index:
            return Ours(float(row[col]), float(row[f"{metric}_std"]), step)
    return _MISSING


def _reduction(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    net = m.group(1)
    ids = _ids("param_reduction", net)
    for step, r in results.items():
        if step not in ids and _model_of(r) != net:
            continue
        value = _reduction_of(r)
        if value is not None:
            return Ours(100.0 * value, _NAN, step)
    return _MISSING


def _reduction_of(r: Any) -> float | None:
    """The fraction of parameters removed, from a prune step's result (any layout)."""
    for name in ("reduction", "param_reduction"):
        v = getattr(r, name, None)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    frame = getattr(r, "to_frame", None)
    if callable(frame):
        f = frame()
        if "reduction" in f.columns and len(f):
            return float(f["reduction"].iloc[0])
    return None


def _n_images(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    syn = m.group(1)
    ids = _ids("n_images")
    steps = [(s, r) for s, r in results.items() if getattr(r, "kind", None) == "profile"]
    steps.sort(key=lambda sr: (sr[0] not in ids, ids.index(sr[0]) if sr[0] in ids else 0))
    for step, r in steps:
        counts = {_canon(c): n for c, n in dict(r.data.get("n_by_class", {})).items()}
        if syn in counts:
            return Ours(float(counts[syn]), _NAN, step)
    return _MISSING


def _class_mean_area(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    mag = m.group(1)
    ids = _ids("class_mean_area")
    steps = [(s, r) for s, r in results.items() if getattr(r, "kind", None) == "transfer"]
    steps.sort(key=lambda sr: sr[0] not in ids)
    for step, r in steps:
        if mag in r.class_mean_area:
            return Ours(float(r.class_mean_area[mag]), _NAN, step)
    return _MISSING


def _sparsity_rows(results: Mapping[str, Any]) -> tuple[str, pd.DataFrame] | None:
    for step, r in _candidates(results, "sparsity", _ids("sparsity")):
        return step, r.to_frame()
    return None


def _at_alpha(f: pd.DataFrame, alpha: float) -> pd.DataFrame:
    alphas = f["alpha"].to_numpy(dtype=np.float64)
    if alpha == 0:
        return f[alphas == 0]
    pos = alphas[alphas > 0]
    if pos.size == 0:
        return f.iloc[:0]
    nearest = pos[np.argmin(np.abs(np.log(pos) - math.log(alpha)))]
    return f[alphas == nearest]


def _sparsity(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    key = m.group(0)
    found = _sparsity_rows(results)
    if found is None:
        return _MISSING
    step, f = found
    if key.startswith("001/sec5.1/"):
        cross = f[f["test_set"] != "same"]
        if cross.empty:
            return _MISSING
        by_alpha = cross.groupby("alpha")["r2_test_mean"].mean()
        best = by_alpha.idxmax()
        row = f[(f["alpha"] == best) & (f["test_set"] == "same")]
        if row.empty:
            row = cross[cross["alpha"] == best]
        return Ours(float(row["n_nonzero_mean"].iloc[0]), float(row["n_nonzero_std"].iloc[0]), step)
    if key.startswith("001/table1/"):
        target, alpha, what = SYNSETS[m.group(1)], 0.001, "r2"
        rows = _at_alpha(f, alpha)
        rows = rows[[_canon(t) == target for t in rows["test_set"]]]
    else:
        reg, what = m.group(2), m.group(3)
        rows = _at_alpha(f, 0.0 if reg == "plain" else 0.001)
        rows = rows[rows["test_set"] == "same"]
    if rows.empty:
        return _MISSING
    row = rows.iloc[0]
    if what == "nonzero":
        return Ours(float(row["n_nonzero_mean"]), float(row["n_nonzero_std"]), step)
    return Ours(float(row["r2_test_mean"]), float(row["r2_test_std"]), step)


def _consistency(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    key = m.group(0)
    for step, r in _candidates(results, "consistency", _ids("consistency")):
        f = r.to_frame()
        if f.empty:
            continue
        plain = f["regressor"] != "lasso"
        a_ok = np.array([_canon(a) == SYNSETS["albatross"] for a in f["a"]], dtype=bool)
        if key.startswith("001/sec5.2/"):
            what = m.group(1)
            rows = f[a_ok & plain.to_numpy() & (f["kind"] == "shuffled").to_numpy()]
        else:
            other, reg, what = SYNSETS[m.group(1)], m.group(2), m.group(3)
            b_ok = np.array([_canon(b) == other for b in f["b"]], dtype=bool)
            kind = "same" if other == SYNSETS["albatross"] else "cross"
            reg_ok = plain.to_numpy() if reg == "plain" else ~plain.to_numpy()
            rows = f[a_ok & b_ok & reg_ok & (f["kind"] == kind).to_numpy()]
        if rows.empty:
            continue
        row = rows.iloc[0]
        col = "angle" if what == "angle" else "cos"
        return Ours(float(row[f"{col}_mean"]), float(row[f"{col}_std"]), step)
    return _MISSING


def _weights_role(source: str, label: str) -> str:
    if source == "random-xavier":
        return "random-xavier"
    if source == "imagenet":
        return "pretrained"
    if label.startswith("finetuned") or source not in ("random", "custom", ""):
        return "finetuned"
    return source


def _texture(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    role, measure, layer = m.group(1), m.group(2), m.group(3)
    for step, r in _candidates(results, "weights_comparison", _ids("texture")):
        f = r.to_frame()
        roles = [
            _weights_role(s, lab) for s, lab in zip(f["weights_source"], f["weights"], strict=True)
        ]
        ok = (
            (np.asarray(roles, dtype=object) == role)
            & (f["measure"].isin([measure, f"glcm_{measure}"])).to_numpy()
            & (f["layer"] == layer).to_numpy()
        )
        rows = f[ok]
        if not rows.empty:
            return Ours(float(rows["r2_insample"].iloc[0]), _NAN, step)
    return _MISSING


def _finetune(m: re.Match[str], results: Mapping[str, Any]) -> Ours:
    what = m.group(1)
    for step, r in _candidates(results, "finetune", _ids("finetune")):
        return Ours(float(getattr(r, what)), _NAN, step)
    return _MISSING


_NETS = "(inception_v3|resnet50)"
_CLASS = "(albatross|kite|racing_car)"
EXTRACTORS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], Mapping[str, Any]], Ours]], ...]
EXTRACTORS = (
    (re.compile(r"000/tableA1/([^/]+)/(imagenet|random|shuffled)"), _table_a1),
    (re.compile(rf"000/peak/{_NETS}/(imagenet|random|shuffled)"), _peak),
    (re.compile(rf"000/table2/{_NETS}/(pretrained|scratch|pruned)/(mae|kappa)"), _table2),
    (re.compile(rf"000/sec4\.4/{_NETS}/(pruned)/(mae_[0-9]+X)"), _table2),
    (re.compile(rf"000/sec5/{_NETS}/param_reduction"), _reduction),
    (re.compile(r"000/sec3\.2/n_images/(n[0-9]{8})"), _n_images),
    (re.compile(r"000/notebook/class_mean_area/([0-9]+X)"), _class_mean_area),
    (re.compile(r"001/fig3/()(plain|lasso)/(r2|nonzero)"), _sparsity),
    (re.compile(rf"001/table1/{_CLASS}/r2"), _sparsity),
    (re.compile(r"001/sec5\.1/cross/nonzero"), _sparsity),
    (re.compile(rf"001/table2/albatross-{_CLASS}/(plain|lasso)/(angle|cos)"), _consistency),
    (re.compile(r"001/sec5\.2/shuffled/(angle|cos)"), _consistency),
    (
        re.compile(
            r"004/fig3/(random-xavier|pretrained|finetuned)/(asm|contrast|correlation)/(.+)"
        ),
        _texture,
    ),
    (re.compile(r"004/sec2/(val_accuracy|val_auc)"), _finetune),
)
"""How each key family finds ours: (pattern matched against the whole key, extractor)."""


def find_ours(key: str, results: Mapping[str, Any]) -> Ours:
    """Our number for a published ``key`` from a reproduction's step results.

    Parameters
    ----------
    key : str
        A key of :func:`published_numbers`.
    results : mapping of str to Result
        Step id -> the step's result (``ProfileResult``, ``TransferResult``,
        ``SparsityResult``, ``ConsistencyResult``, ``WeightsComparison``,
        ``FinetuneResult``, a prune step's result with ``reduction``).

    Returns
    -------
    Ours
        ``(value, std, step)``; ``(nan, nan, "")`` when no result holds the number (the step
        did not run, the layer or variant is not in it).

    Raises
    ------
    UnknownNameError
        ``key`` is not a published key.
    """
    if key not in set(_table()["key"]):
        expand_keys([key])  # raises with a did-you-mean
    for pattern, extract in EXTRACTORS:
        m = pattern.fullmatch(key)
        if m is not None:
            return extract(m, results)
    return _MISSING


def ours_for(key: str, results: Mapping[str, Any]) -> tuple[float, float]:
    """``(value, std)`` of our number for ``key`` (NaN where missing); see :func:`find_ours`."""
    o = find_ours(key, results)
    return (o.value, o.std)


def verdict(ours: float, published: float, published_std: float) -> str:
    """``within`` when ``|ours - published| <= 2 x published_std``, else ``outside``;
    ``n/a`` when ours is missing or the published std is unknown (NaN or 0)."""
    if not math.isfinite(ours) or not (math.isfinite(published_std) and published_std > 0):
        return "n/a"
    # the papers round to 2-3 decimals: a difference of exactly 2 std must not fall outside
    # by a float rounding error
    bound = WITHIN_STDS * published_std * (1 + 1e-9)
    return "within" if abs(ours - published) <= bound else "outside"


def _config_keys(config: Any) -> list[str]:
    keys = list(getattr(config, "published", None) or ())
    if keys:
        return expand_keys(keys)
    paper = str(getattr(config, "paper", "") or "")
    table = _table()
    return list(table.loc[table["paper"] == paper, "key"])


def compare(config: Any, results: Mapping[str, Any]) -> pd.DataFrame:
    """The published numbers a config reports, with ours beside them and a verdict.

    Parameters
    ----------
    config : ReproConfig
        Its ``published`` keys (exact or globs); when it lists none, every key of its
        ``paper``.
    results : mapping of str to Result
        Step id -> result of the run (:func:`find_ours`).

    Returns
    -------
    pandas.DataFrame
        One row per key, columns :data:`COMPARE_COLUMNS`.
    """
    table = _table().set_index("key")
    rows = []
    for key in _config_keys(config):
        p = table.loc[key]
        o = find_ours(key, results)
        pub, pub_std = float(p["value"]), float(p["std"])
        diff = o.value - pub if math.isfinite(o.value) else _NAN
        in_std = diff / pub_std if math.isfinite(pub_std) and pub_std > 0 else _NAN
        rows.append(
            {
                "key": key,
                "source": p["source"],
                "row": p["row"],
                "column": p["column"],
                "unit": p["unit"],
                "published": pub,
                "published_std": pub_std,
                "ours": o.value,
                "ours_std": o.std,
                "diff": diff,
                "diff_in_std": in_std,
                "verdict": verdict(o.value, pub, pub_std),
                "step": o.step,
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))


__all__ = [
    "COMPARE_COLUMNS",
    "PUBLISHED_COLUMNS",
    "Ours",
    "compare",
    "expand_keys",
    "find_ours",
    "ours_for",
    "published_numbers",
    "verdict",
]
