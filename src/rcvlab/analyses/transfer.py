"""Transfer to a regression task with a single-unit head (paper 000 §3.3, §4.4, Table 2).

For every variant — the pretrained backbone, the same architecture with random weights
(``scratch``) and the network pruned after a probed layer (``pruned:LAYER``) — and every seed,
a single-unit dense head is trained on GAP features with MSE and Adam to regress a measure
(the patch's average nuclei area). Each predicted area is mapped to the magnification whose
*training-set* mean area is nearest; MAE, accuracy and Cohen's kappa are reported on the test
split, and the pruned variant is compared with every other by a Wilcoxon signed-rank test
paired by seed.

``mode="linear"`` freezes the backbone: features are extracted once (one forward pass for the
pretrained network's layers, one for its random twin, cached) and only heads are trained, so a
``scratch`` variant is a *frozen random* backbone — a lower bound, not a network trained from
scratch. Features and target are standardised on the training split before the head sees them
(features centred per column and divided by one common scale, the target z-scored; the
head maps back to pixels), so that Adam's fixed step suits any feature scale.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from rcvlab import __version__
from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError, RcvlabError
from rcvlab.features.extract import extract_features
from rcvlab.models.registry import Model, load_model
from rcvlab.probe.result import _jsonable
from rcvlab.probe.splits import group_split


@dataclass(frozen=True)
class Variant:
    """A transfer variant: ``pretrained``, ``scratch`` or ``pruned`` at ``layer``."""

    name: str
    kind: str
    layer: str


def parse_variants(variants: Sequence[str], model: Model) -> list[Variant]:
    """``["pretrained", "scratch", "pruned:mixed8"]`` -> variants with their feature layer.

    ``pretrained`` and ``scratch`` read the last layer before the classifier (the full
    backbone: ``mixed10``, ``add16``, ``head`` ...).
    """
    names = model.layers
    last = names[names.index("pre-softmax") - 1] if "pre-softmax" in names else names[-1]
    out = []
    for v in variants:
        v = v.strip()
        if v in ("pretrained", "scratch"):
            out.append(Variant(v, v, last))
        elif v.startswith("pruned:"):
            (spec,) = model.resolve([v.split(":", 1)[1]])
            out.append(Variant(f"pruned:{spec.name}", "pruned", spec.name))
        else:
            raise RcvlabError(
                f"Unknown transfer variant '{v}'; use pretrained, scratch or pruned:LAYER "
                f"(a layer of `rcvlab layers {model.name}`)."
            )
    if len({v.name for v in out}) != len(out):
        raise RcvlabError(f"Duplicate transfer variants in {list(variants)}.")
    return out


def nearest_class(values: np.ndarray, class_means: Mapping[str, float]) -> np.ndarray:
    """Label of the class whose mean is nearest to each value (ties: the smaller mean)."""
    labels = sorted(class_means, key=lambda k: class_means[k])
    means = np.array([class_means[k] for k in labels])
    idx = np.abs(np.asarray(values, dtype=np.float64)[:, None] - means[None, :]).argmin(axis=1)
    return np.asarray(labels, dtype=object)[idx]


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int,
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 32,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a single-unit linear head with MSE and Adam; keep the epoch with the best val MAE.

    Returns the head (it takes raw features and predicts in the target's units) and a log
    with the per-epoch validation MAE and the chosen epoch.
    """
    g = torch.Generator().manual_seed(int(seed))
    # Centre per column but scale by one number (the RMS of the columns' std): per-column
    # scaling would blow up nearly dead units (std ~1e-5 on the training patches) whenever a
    # test patch activates them.
    xm = x_train.mean(0)
    xs = np.full(x_train.shape[1], float(np.sqrt((x_train.std(0) ** 2).mean())) or 1.0)
    ym, ys = float(y_train.mean()), float(y_train.std()) or 1.0
    xt = torch.tensor((x_train - xm) / xs, dtype=torch.float32)
    yt = torch.tensor((y_train - ym) / ys, dtype=torch.float32)[:, None]
    xv = torch.tensor((x_val - xm) / xs, dtype=torch.float32)
    lin = torch.nn.Linear(xt.shape[1], 1)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(xt.shape[1])
        lin.weight.uniform_(-bound, bound, generator=g)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    best, best_state, history = math.inf, None, []
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            b = order[i : i + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(lin(xt[b]), yt[b])
            loss.backward()
            opt.step()
        with torch.no_grad():
            mae = float(np.abs(lin(xv).numpy()[:, 0] * ys + ym - y_val).mean())
        history.append(mae)
        if mae < best:
            best, best_state = mae, {k: v.clone() for k, v in lin.state_dict().items()}
    lin.load_state_dict(best_state)
    head = _Head(lin, xm, xs, ym, ys)
    return head, {"val_mae": history, "best_epoch": int(np.argmin(history)) + 1}


class _Head(torch.nn.Module):
    """A linear head with the training standardisation folded in (raw features -> area)."""

    def __init__(self, lin: torch.nn.Linear, xm, xs, ym: float, ys: float) -> None:
        super().__init__()
        self.lin = lin
        self.register_buffer("x_mean", torch.tensor(xm, dtype=torch.float32))
        self.register_buffer("x_scale", torch.tensor(xs, dtype=torch.float32))
        self.register_buffer("y_mean", torch.tensor(ym, dtype=torch.float32))
        self.register_buffer("y_scale", torch.tensor(ys, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin((x - self.x_mean) / self.x_scale)[:, 0] * self.y_scale + self.y_mean


class FinetuneNet(torch.nn.Module):
    """A backbone that ends in GAP plus a single-unit head, trained end to end."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        dim: int,
        data: ImageSet,
        model: Model,
        y_mean: float,
        y_scale: float,
        device: torch.device,
        batch_size: int,
    ) -> None:
        super().__init__()
        self.backbone, self.dim = backbone, dim
        self.head = torch.nn.Linear(dim, 1)
        self.data, self.model, self.device, self.batch_size = data, model, device, batch_size
        self.y_mean, self.y_scale = y_mean, y_scale
        self.log: dict[str, Any] = {}
        self._unreadable: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))[:, 0]

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray]:
        """Preprocessed images of ``idx`` (unreadable ones dropped and remembered)."""
        images, ok = [], []
        for i in idx:
            if int(i) in self._unreadable:
                continue
            try:
                images.append(self.data.load(int(i)))
                ok.append(int(i))
            except DataError:
                self._unreadable.add(int(i))
        if not images:
            return None, np.asarray(ok, dtype=np.intp)
        x = self.model.preprocessing(images, mode="resize").to(self.device)
        return x, np.asarray(ok, dtype=np.intp)

    def readable(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray([i for i in idx if int(i) not in self._unreadable], dtype=np.intp)

    @torch.no_grad()
    def predict(self, idx: np.ndarray) -> np.ndarray:
        """Predicted measure (original units) for images ``idx``, in eval mode."""
        self.eval()
        out = []
        for k in range(0, len(idx), self.batch_size):
            x, _ = self.batch(idx[k : k + self.batch_size])
            if x is not None:
                out.append(self(x).cpu().numpy())
        pred = np.concatenate(out) if out else np.zeros(0)
        return pred.astype(np.float64) * self.y_scale + self.y_mean

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}


def finetune_network(
    model: Model,
    variant: Variant,
    data: ImageSet,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    *,
    seed: int,
    twin_seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: str | None = None,
) -> FinetuneNet:
    """Train backbone + head end to end (MSE, Adam) and keep the best epoch by val MAE.

    ``pretrained`` and ``pruned`` start from the model's weights (pruned after their layer),
    ``scratch`` from the architecture's random initialisation (seeded with ``twin_seed``).
    """
    from rcvlab.features.extract import choose_device
    from rcvlab.prune import prune

    dev = choose_device(device)
    source = model.twin("random", twin_seed) if variant.kind == "scratch" else model
    backbone = prune(source, at=variant.layer, copy=True)
    ym, ys = float(y[train].mean()), float(y[train].std()) or 1.0
    net = FinetuneNet(backbone, backbone.out_dim, data, model, ym, ys, dev, batch_size)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        bound = 1.0 / math.sqrt(net.dim)
        net.head.weight.uniform_(-bound, bound, generator=g)
        net.head.bias.zero_()
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best, best_state, history = math.inf, None, []
    for _ in range(epochs):
        net.train()
        order = train[torch.randperm(len(train), generator=g).numpy()]
        for k in range(0, len(order), batch_size):
            x, ok = net.batch(order[k : k + batch_size])
            if x is None or len(ok) < 2:  # BatchNorm needs two images in train mode
                continue
            t = torch.tensor((y[ok] - ym) / ys, dtype=torch.float32, device=dev)
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), t).backward()
            opt.step()
        v = net.readable(val)
        mae = float(np.abs(net.predict(v) - y[v]).mean())
        history.append(mae)
        if mae < best:
            best = mae
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.log = {"val_mae": history, "best_epoch": int(np.argmin(history)) + 1}
    return net


@dataclass(frozen=True)
class TransferRun:
    """One variant and seed: test-set errors and agreement."""

    variant: str
    seed: int
    layer: str
    dim: int
    mae: float
    mae_by_class: dict[str, float]
    accuracy: float
    kappa: float
    kappa_quadratic: float
    best_epoch: int


@dataclass(frozen=True)
class TransferResult:
    """Every run of a transfer experiment, the class means used for the mapping and the tests."""

    runs: tuple[TransferRun, ...]
    class_mean_area: dict[str, float]
    wilcoxon: dict[str, dict[str, float]]
    model: str = ""
    weights: str = ""
    mode: str = "linear"
    measure: str = "nuclei_area"
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    rcvlab_version: str = ""
    heads: dict[str, dict[str, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.runs))

    def to_frame(self) -> pd.DataFrame:
        """One row per (variant, seed) with MAE (overall, per class), accuracy and kappas."""
        rows = []
        for r in self.runs:
            d = {k: v for k, v in asdict(r).items() if k != "mae_by_class"}
            d.update({f"mae_{k}": v for k, v in r.mae_by_class.items()})
            rows.append(d)
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """Mean and standard deviation (ddof=1) over seeds per variant (the paper's Table 2)."""
        f = self.to_frame().drop(columns=["seed", "layer", "dim", "best_epoch"])
        g = f.groupby("variant", sort=False)
        out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
        return out[sorted(out.columns, key=lambda c: (c.rsplit("_", 1)[0], c))]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "heads"}
        d["runs"] = [asdict(r) for r in self.runs]
        d["best_variant"] = self.summary_frame()["mae_mean"].idxmin()
        return _jsonable(d)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The ``transfer.json`` text; written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            from rcvlab.runio import write_text

            write_text(path, text + "\n")
        return text

    def to_markdown(self) -> str:
        """``summary.md``: Table 2 style means (std), per-class MAE and the Wilcoxon tests."""
        s = self.summary_frame()
        lines = [f"# Transfer: {self.model} ({self.weights}), {self.mode} mode, {self.measure}", ""]
        lines += [
            "| variant | MAE | accuracy | kappa | kappa (quadratic) |",
            "|---|---|---|---|---|",
        ]
        for v, row in s.iterrows():
            cells = [
                f"{row[f'{m}_mean']:.3f} ({row[f'{m}_std']:.3f})"
                for m in ("mae", "accuracy", "kappa", "kappa_quadratic")
            ]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        classes = list(self.class_mean_area)
        lines += [
            "",
            "MAE per class (mean over seeds):",
            "",
            "| variant | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for v, row in s.iterrows():
            cells = [f"{row.get(f'mae_{c}_mean', float('nan')):.2f}" for c in classes]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Training-set mean area per class (used for the mapping): "
            + ", ".join(f"{k} {v:.2f}" for k, v in self.class_mean_area.items()),
            "",
        ]
        lines += ["Wilcoxon signed-rank tests of MAE, paired by seed (two-sided):", ""]
        for k, w in self.wilcoxon.items():
            lines.append(f"- {k}: statistic {w['statistic']:.3g}, p = {w['p']:.3g} (n = {w['n']})")
        lines += [
            "",
            f"Seeds: {len(set(r.seed for r in self.runs))}; epochs {self.epochs}, "
            f"lr {self.lr:g}, batch {self.batch_size}.",
            f"Command: `{self.command}`",
            "",
        ]
        return "\n".join(lines)


def transfer(
    data: ImageSet,
    model: str | Model = "inception_v3",
    variants: Sequence[str] = ("pretrained", "scratch", "pruned:mixed8"),
    *,
    weights: str = "imagenet",
    seeds: int = 10,
    mode: str = "linear",
    measure: str = "nuclei_area",
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 32,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    feature_batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    command: str = "",
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> TransferResult:
    """Train single-unit heads for every variant and seed and evaluate them (see module doc).

    Parameters
    ----------
    data : ImageSet
        Patches with the measure, ``classes`` (magnification labels, e.g. ``"10X"``) and
        ``groups`` (source image of each patch: splits never share a group).
    model : str or Model
    variants : sequence of str
        ``pretrained``, ``scratch``, ``pruned:LAYER`` (any number of pruned layers).
    seeds : int
        Heads per variant (seeds 0 … seeds-1: initialisation and batch order).
    mode : {"linear", "finetune"}
        ``linear`` freezes the backbone (features once, heads only); ``finetune`` trains the
        whole network (backbone ending in GAP + head) for every variant and seed, keeping the
        epoch with the best validation MAE (its checkpoint goes to ``checkpoint_dir``).
    fractions : (float, float, float)
        Train / validation / test shares, split by group with ``seed``.

    Returns
    -------
    TransferResult
    """
    if mode not in ("linear", "finetune"):
        raise RcvlabError(f"Unknown mode '{mode}'; use 'linear' or 'finetune'.")
    if seeds < 1:
        raise RcvlabError(f"seeds must be >= 1, got {seeds}.")
    if data.classes is None or data.groups is None:
        raise DataError(
            "Transfer needs a class (magnification) and a group (source image) per patch; "
            "give 'class' and 'group' columns in the CSV manifest."
        )
    m = load_model(model, weights, seed=seed) if isinstance(model, str) else model
    vs = parse_variants(variants, m)
    y_all = data.measure(measure)
    keep = np.isfinite(y_all)
    n_nan = int((~keep).sum())
    idx = np.flatnonzero(keep)
    tr, va, te = (idx[s] for s in group_split(data.groups[idx], fractions, seed))
    if min(len(tr), len(va), len(te)) < 2:
        raise DataError(f"Too few patches with a finite {measure} for a 3-way split ({len(idx)}).")

    kw = dict(batch_size=feature_batch_size, cache_dir=cache_dir, device=device, progress=progress)
    feats = {}
    if mode == "linear":
        pre_layers = sorted({v.layer for v in vs if v.kind != "scratch"}, key=m.layers.index)
        if pre_layers:
            feats["model"] = extract_features(m, data, pre_layers, **kw)
        if any(v.kind == "scratch" for v in vs):
            last = next(v.layer for v in vs if v.kind == "scratch")
            feats["scratch"] = extract_features(m.twin("random", seed), data, [last], **kw)
    classes = data.classes
    class_means = {c: float(y_all[tr][classes[tr] == c].mean()) for c in _ordered(classes[tr])}
    labels = list(class_means)
    runs, heads = [], {}
    for v in vs:
        if mode == "linear":
            X = feats["scratch" if v.kind == "scratch" else "model"][v.layer].astype(np.float64)
            ok = np.isfinite(X).all(1)
            a, b, c = tr[ok[tr]], va[ok[va]], te[ok[te]]
        else:
            a, b, c = tr, va, te
        for s in range(seeds):
            if mode == "linear":
                head, log = train_head(
                    X[a],
                    y_all[a],
                    X[b],
                    y_all[b],
                    seed=s,
                    epochs=epochs,
                    lr=lr,
                    batch_size=batch_size,
                )
                with torch.no_grad():
                    pred = head(torch.tensor(X[c], dtype=torch.float32)).numpy().astype(np.float64)
                dim = X.shape[1]
                heads[f"{v.name}/seed{s}"] = head.state_dict()
            else:
                net = finetune_network(
                    m,
                    v,
                    data,
                    y_all,
                    a,
                    b,
                    seed=s,
                    twin_seed=seed,
                    epochs=epochs,
                    lr=lr,
                    batch_size=batch_size,
                    device=device,
                )
                log = net.log
                c = c[np.isin(c, net.readable(c))]
                pred = net.predict(c)
                dim = net.dim
                heads[f"{v.name}/seed{s}"] = net.head_state()
                if checkpoint_dir is not None:
                    os.makedirs(checkpoint_dir, exist_ok=True)
                    name = f"{v.name.replace(':', '_')}_seed{s}.pt"
                    torch.save(net.state_dict(), os.path.join(checkpoint_dir, name))
            truth = y_all[c]
            mag_pred = nearest_class(pred, class_means)
            mag_true = classes[c]
            by_class = {
                k: float(np.abs(pred - truth)[mag_true == k].mean())
                for k in labels
                if (mag_true == k).any()
            }
            runs.append(
                TransferRun(
                    v.name,
                    s,
                    v.layer,
                    dim,
                    float(np.abs(pred - truth).mean()),
                    by_class,
                    float((mag_pred == mag_true).mean()),
                    _kappa(mag_true, mag_pred, labels, None),
                    _kappa(mag_true, mag_pred, labels, "quadratic"),
                    log["best_epoch"],
                )
            )
    result = TransferResult(
        tuple(runs),
        class_means,
        _wilcoxon(runs, vs),
        model=m.name,
        weights=m.weights,
        mode=mode,
        measure=measure,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        data={
            "source": data.source,
            "n_images": len(data),
            "n_excluded_nan": n_nan,
            "n_train": len(tr),
            "n_val": len(va),
            "n_test": len(te),
            "n_groups": {
                "train": len(set(data.groups[tr])),
                "val": len(set(data.groups[va])),
                "test": len(set(data.groups[te])),
            },
            "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
        },
        command=command,
        rcvlab_version=__version__,
        heads=heads,
    )
    return result


def _ordered(labels: np.ndarray) -> list[str]:
    """Class labels in natural order (``5X`` before ``10X``)."""

    def key(s: str) -> tuple[float, str]:
        num = "".join(ch for ch in s if ch.isdigit() or ch == ".")
        try:
            return (float(num), s)
        except ValueError:
            return (math.inf, s)

    return sorted(set(labels.tolist()), key=key)


def _kappa(true: np.ndarray, pred: np.ndarray, labels: list[str], weights: str | None) -> float:
    if len(set(true.tolist()) | set(pred.tolist())) < 2:
        return float("nan")
    return float(cohen_kappa_score(true, pred, labels=labels, weights=weights))


def _wilcoxon(runs: Sequence[TransferRun], vs: Sequence[Variant]) -> dict[str, dict[str, float]]:
    """Pruned vs every other variant: Wilcoxon signed-rank of the MAE, paired by seed."""
    mae = {v.name: {r.seed: r.mae for r in runs if r.variant == v.name} for v in vs}
    n_pruned = sum(v.kind == "pruned" for v in vs)
    out = {}
    for p in (v for v in vs if v.kind == "pruned"):
        for o in (v for v in vs if v.name != p.name):
            seeds = sorted(set(mae[p.name]) & set(mae[o.name]))
            a = np.array([mae[p.name][s] for s in seeds])
            b = np.array([mae[o.name][s] for s in seeds])
            # one pruned variant: the contract's plain "pruned_vs_pretrained"; several: by layer
            left = "pruned" if n_pruned == 1 else p.name.replace(":", "_")
            key = f"{left}_vs_{o.name.replace(':', '_')}"
            if len(seeds) < 2 or np.all(a == b):
                out[key] = {"statistic": float("nan"), "p": float("nan"), "n": len(seeds)}
                continue
            w = stats.wilcoxon(a, b)
            out[key] = {"statistic": float(w.statistic), "p": float(w.pvalue), "n": len(seeds)}
    return out


__all__ = [
    "TransferResult",
    "TransferRun",
    "Variant",
    "nearest_class",
    "parse_variants",
    "train_head",
    "transfer",
]
