"""The histology chain: scale profile -> best layer -> prune -> transfer, on embedded data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from rcvlab.analyses.profile import layer_profile
from rcvlab.analyses.transfer import TransferResult, transfer
from rcvlab.errors import RcvlabError
from rcvlab.probe.result import ProfileResult
from rcvlab.result import Result, provenance
from rcvlab.runio import check_complete, finish_run, prepare_out

HISTO_NOTES = (
    "Chain: the scale profile of the ImageNet-pretrained network on the embedded scale set "
    "gives the best layer; the network is pruned there (pruned.pt) and transferred to the "
    "embedded histology set: single-unit heads regress the average nuclei area per patch, "
    "each prediction is mapped to the magnification with the nearest training-set mean area.",
    "Histology data: real tissue is one H&E image of carcinoma shipped with tiatoolbox "
    "(target_image.png), its nuclei from colour deconvolution, taken as 40X and resampled to "
    "5X-40X; most patches are synthetic H&E-like slides (ellipse nuclei of known area on "
    "stroma). Splits are by source slide. Linear mode: frozen backbones, so "
    "'scratch' is a frozen random-weights backbone (a lower bound), not a network trained "
    "from scratch. Heads use Adam with lr 1e-3 for 30 epochs (the paper's 1e-4 for 5 epochs "
    "suits its 45,000 training patches, not a few hundred).",
)


@dataclass(frozen=True)
class HistoChainResult(Result):
    """The chain for each network: its scale profile, where it was pruned, its transfer.

    Attributes
    ----------
    profiles : tuple of ProfileResult
        One scale profile per network (its best layer is the pruning layer).
    pruned : tuple of dict
        Per network, :meth:`rcvlab.prune.PrunedModel.describe` (layer, parameter counts).
    transfers : tuple of TransferResult
        Per network, the transfer of ``pretrained``, ``scratch`` and ``pruned:<best>``.
    meta : dict
        Provenance.

    ``to_frame()`` has one row per network, variant and seed: ``model``, ``pruned_at`` and
    the columns of :meth:`TransferResult.to_frame` (``variant``, ``seed``, ``layer``,
    ``dim``, ``best_epoch``, ``n_test``, ``mae``, ``accuracy``, ``kappa``,
    ``kappa_quadratic``).
    """

    kind: ClassVar[str] = "histo_chain"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "model",
        "pruned_at",
        *TransferResult.frame_columns,
    )

    profiles: tuple[ProfileResult, ...]
    pruned: tuple[dict[str, Any], ...]
    transfers: tuple[TransferResult, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Every transfer run, with the network and its pruning layer in front."""
        frames = []
        for prof, pm, tr in zip(self.profiles, self.pruned, self.transfers, strict=True):
            f = tr.to_frame()
            f.insert(0, "model", prof.model)
            f.insert(1, "pruned_at", pm["layer"])
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """Profiles, pruning summaries and transfers, each in its own JSON layout."""
        return {
            "profiles": [p.to_dict() for p in self.profiles],
            "pruned": [dict(p) for p in self.pruned],
            "transfers": [t.to_dict() for t in self.transfers],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoChainResult:
        """Rebuild from :meth:`to_dict` (the heads' weights are in each ``heads.pt``)."""
        return cls(
            profiles=tuple(ProfileResult.from_dict(p) for p in d["profiles"]),
            pruned=tuple(dict(p) for p in d["pruned"]),
            transfers=tuple(TransferResult.from_dict(t) for t in d["transfers"]),
            meta=dict(d.get("meta", {})),
        )


def run_histo_demo(
    out: str | os.PathLike[str] = "runs/demo-histo",
    *,
    models: Sequence[str] = ("efficientnet_lite0",),
    profile: str | os.PathLike[str] | None = None,
    seeds: int = 5,
    epochs: int = 30,
    lr: float = 1e-3,
    n_per_class: int = 300,
    reps: int = 10,
    regressor: str = "ridge",
    min_std: float | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    command: str = "",
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> HistoChainResult:
    """Profile -> best layer -> prune -> transfer (linear, ``seeds`` seeds), per network.

    For each of ``models`` (ImageNet weights): the scale profile on the embedded scale set
    (``n_per_class`` images per class, ``reps`` splits, ``regressor``, ``min_std``; features
    cached, so after ``rcvlab demo`` it costs only the regressions) gives the best layer; the
    network is pruned there and transferred to the embedded histology set. ``profile`` (a
    finished run's ``profile.json``) replaces the profile of the network it names.

    Files: ``<model>/`` per network (``profile.json``, ``pruned.pt`` and the transfer
    files), and ``report.html``, ``histo_chain.json`` and ``run.json`` at the top.

    Returns
    -------
    HistoChainResult
    """
    from rcvlab.data.histo import histoset
    from rcvlab.data.scaleset import scaleset
    from rcvlab.models import load_model
    from rcvlab.prune import check_prune_layer, prune, prune_summary
    from rcvlab.report.html import write_report
    from rcvlab.report.transfer import transfer_section, write_transfer_run
    from rcvlab.viz.profile import plot_profile
    from rcvlab.viz.transfer import plot_transfer

    models = list(models)
    if not models or len(set(models)) != len(models):
        raise RcvlabError(f"models must be distinct and at least one, got {models}.")
    given = None
    if profile is not None:
        check_complete(profile)
        given = ProfileResult.from_json(profile)
        if given.model not in models:
            raise RcvlabError(
                f"{profile} profiles {given.model}, which is not among the networks "
                f"{', '.join(models)}; add it to --models."
            )
    nets = {name: load_model(name, "imagenet", seed=seed) for name in models}
    if given is not None:
        check_prune_layer(nets[given.model], given.best_layer)
    out_dir = prepare_out(out, force=force, command=command)
    histo = histoset(seed=seed)
    echo(f"embedded histology set: {len(histo)} patches, {len(set(histo.groups.tolist()))} slides")
    scale = None
    profiles, pruned, transfers, figures, sections, lines = [], [], [], {}, [], []
    for name, net in nets.items():
        sub = out_dir / name
        sub.mkdir(exist_ok=True)
        if given is not None and given.model == name:
            prof = given
        else:
            scale = scale or scaleset(n_per_class=n_per_class, seed=seed)
            prof = layer_profile(
                net,
                scale,
                regressor=regressor,
                reps=reps,
                seed=seed,
                min_std=min_std,
                cache_dir=cache_dir,
                progress=progress,
                command=command,
            )
        best = prof.best_layer
        echo(f"{name}: scale is best encoded at {best} (R² {prof.score(best).r2_mean:.3f})")
        pm = prune(net, at=best)
        pm.save(sub / "pruned.pt")
        lines.append(prune_summary(pm))
        echo(lines[-1])
        res = transfer(
            net,
            histo,
            ["pretrained", "scratch", f"pruned:{best}"],
            seeds=seeds,
            epochs=epochs,
            lr=lr,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
            command=command,
        )
        write_transfer_run(sub, res)
        prof.to_json(sub / "profile.json")
        for v, row in res.summary_frame().iterrows():
            echo(
                f"  {v:22s} MAE {row['mae_mean']:7.2f} ({row['mae_std']:.2f})  kappa "
                f"{row['kappa_mean']:.3f} ({row['kappa_std']:.3f})"
            )
        profiles.append(prof)
        pruned.append(pm.describe())
        transfers.append(res)
        figures[f"{name}: scale profile"] = plot_profile(prof)
        figures[f"{name}: transfer"] = plot_transfer(res)
        sections.append(transfer_section(res, notes=(f"{name}, pruned at {best}.",)))
    write_report(
        out_dir / "report.html",
        profiles,
        title="rcvlab demo: profile, prune, transfer",
        figures=figures,
        notes=[*HISTO_NOTES, *lines],
        sections=sections,
        skipped=[(s.path, s.reason) for s in histo.skipped],
    )
    chain = HistoChainResult(
        profiles=tuple(profiles),
        pruned=tuple(pruned),
        transfers=tuple(transfers),
        meta=provenance(
            command=command,
            seed=seed,
            data=histo,
            models=models,
            seeds=seeds,
            epochs=epochs,
            lr=lr,
            reps=reps,
            regressor=regressor,
            min_std=min_std,
            n_per_class=n_per_class,
        ),
    )
    chain.to_json(out_dir / "histo_chain.json")
    finish_run(out_dir)
    return chain


__all__ = ["HISTO_NOTES", "HistoChainResult", "run_histo_demo"]
