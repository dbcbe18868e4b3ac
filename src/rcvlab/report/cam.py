"""Writing a CAM run's folder, and its HTML report section."""

from __future__ import annotations

import io
import math
import os
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from rcvlab.analyses.cam import CamComparison, CamResult, compare_cams
from rcvlab.runio import write_bytes, write_figure, write_skipped, write_text

CAM_FILES: tuple[str, ...] = (
    "cams.png",
    "cams.npz",
    "cams.csv",
    "summary.md",
    "cam.json",
    "skipped.csv",
)
"""Files of every CAM run; with a comparison also ``cam_reference.json`` and
``comparison.json``."""


def _key(method: str) -> str:
    return method.replace("++", "pp")


def cams_npz(result: CamResult, compare: CamResult | None = None) -> bytes:
    """The bytes of ``cams.npz``: ``ids``, ``indices``, ``probs``, ``images`` (uint8),
    ``nuclei_masks``, and per method ``maps_<m>`` (raw) and ``normalised_<m>`` (float32,
    ``(n, H, W)``; ``m`` is ``gradcam`` or ``gradcampp``); with ``compare`` the same maps as
    ``reference_maps_<m>`` / ``reference_normalised_<m>`` and ``reference_probs``."""
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(result.ids, dtype=str),
        "indices": np.asarray(result.indices),
        "probs": np.asarray(result.probs),
        "images": np.asarray(result.images),
        "nuclei_masks": np.asarray(result.nuclei_masks),
    }
    for prefix, r in (("", result), ("reference_", compare)):
        if r is None:
            continue
        for m in r.methods:
            arrays[f"{prefix}maps_{_key(m)}"] = np.asarray(r.maps_for(m), dtype=np.float32)
            arrays[f"{prefix}normalised_{_key(m)}"] = np.asarray(
                r.normalised_for(m), dtype=np.float32
            )
        if prefix:
            arrays["reference_probs"] = np.asarray(r.probs)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def cams_frame(result: CamResult, compare: CamResult | None = None) -> pd.DataFrame:
    """``cams.csv``: :meth:`CamResult.to_frame`, and with ``compare`` its ``target_name``,
    ``prob``, ``nuclei_mass_<m>`` and ``excess_<m>`` prefixed ``reference_``."""
    frame = result.to_frame()
    if compare is None:
        return frame
    other = compare.to_frame()
    keep = ["target_name", "prob"] + [
        c for c in other.columns if c.startswith(("nuclei_mass_", "excess_"))
    ]
    for c in keep:
        frame[f"reference_{c}"] = other[c].to_numpy()
    return frame


def write_cam_run(
    out: str | os.PathLike[str], result: CamResult, compare: CamResult | None = None
) -> dict[str, Path]:
    """Write the run folder of a CAM result, every file atomically.

    ``cams.png`` (:func:`rcvlab.viz.cam.plot_cams`), ``cams.npz`` (:func:`cams_npz`: raw
    and normalised maps, float32, ids), ``cams.csv`` (:func:`cams_frame`: per image id,
    class, probability, nuclei fraction and CAM mass on nuclei per method),
    ``summary.md``, ``cam.json`` (:meth:`CamResult.from_json` reads it back) and
    ``skipped.csv``. With ``compare`` (the same images through another network, e.g. the
    ImageNet-pretrained one), the figure shows both, ``summary.md`` adds the paired test
    (:func:`rcvlab.analyses.cam.compare_cams`, ``compare`` as the reference), and
    ``cam_reference.json`` and ``comparison.json`` are written too.

    Parameters
    ----------
    out : path
        An existing folder (see :func:`rcvlab.runio.prepare_out`).
    result : CamResult
    compare : CamResult, optional

    Returns
    -------
    dict of str to Path
        The files written, by name.
    """
    from rcvlab.viz.cam import plot_cams

    out = Path(out)
    comparison = compare_cams(compare, result) if compare is not None else None
    names = list(CAM_FILES)
    if compare is not None:
        names += ["cam_reference.json", "comparison.json"]
    files = {name: out / name for name in names}
    write_figure(files["cams.png"], plot_cams(result, compare))
    write_bytes(files["cams.npz"], cams_npz(result, compare))
    write_text(files["cams.csv"], cams_frame(result, compare).to_csv(index=False))
    summary = result.to_markdown()
    if compare is not None and comparison is not None:
        summary += "\n" + compare.to_markdown().replace("# CAM:", "## Reference CAM:", 1)
        summary += "\n" + comparison.to_markdown()
        compare.to_json(files["cam_reference.json"])
        comparison.to_json(files["comparison.json"])
    write_text(files["summary.md"], summary)
    result.to_json(files["cam.json"])
    skipped = [(s["path"], s["reason"]) for s in result.meta.get("skipped", [])]
    write_skipped(files["skipped.csv"], skipped)
    return files


def _num(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "n/a"


def _mass_table(result: CamResult) -> str:
    def avg(x: np.ndarray) -> str:
        return _num(float(np.mean(x))) if len(x) else "n/a"

    rows = []
    for j, m in enumerate(result.methods):
        ok = np.isfinite(result.excess[:, j])
        rows.append(
            {
                "network": f"{result.model} ({result.weights})",
                "method": m,
                "images": int(ok.sum()),
                "nuclei fraction": avg(result.nuclei_fraction[ok]),
                "CAM mass on nuclei": avg(result.nuclei_mass[ok, j]),
                "excess": avg(result.excess[ok, j]),
            }
        )
    return pd.DataFrame(rows).to_html(index=False, escape=True, border=0)


def _comparison_table(c: CamComparison) -> str:
    rows = [
        {
            "method": m,
            "n": int(c.stats[m]["n"]),
            "mean excess reference": _num(c.stats[m]["mean_excess_reference"]),
            "mean excess other": _num(c.stats[m]["mean_excess_other"]),
            "median difference": _num(c.stats[m]["median_difference"]),
            "rank-biserial": _num(c.stats[m]["rank_biserial"]),
            "W": _num(c.stats[m]["statistic"]),
            "p": f"{c.stats[m]['p_value']:.3g}",
        }
        for m in c.methods
    ]
    return pd.DataFrame(rows).to_html(index=False, escape=True, border=0)


def cam_section(result: CamResult, compare: CamResult | None = None) -> str:
    """An HTML section: the overlays (inline PNG), the nuclei mass per method and network,
    and with ``compare`` the paired Wilcoxon test (all text escaped)."""
    from rcvlab.report.html import figure_data_uri
    from rcvlab.viz.cam import plot_cams

    uri = figure_data_uri(plot_cams(result, compare))
    meta = result.meta
    parts = [
        f"<h2>Class activation maps: {escape(result.model)} ({escape(result.weights)}) at "
        f"{escape(result.layer)}</h2>",
        f"<p>{escape(', '.join(result.methods))} of target {escape(result.target)} for "
        f"{len(result)} images (top={escape(str(meta.get('top')))}, "
        f"min_prob={escape(str(meta.get('min_prob')))}, out of "
        f"{escape(str(meta.get('n_candidates')))}). Nuclei masks: "
        f"{escape(str(meta.get('nuclei_source', '')))}. CAM mass on nuclei = share of the "
        "normalised map on nuclei pixels; excess = mass - nuclei fraction of the patch.</p>",
        f'<img alt="class activation maps" src="{uri}">',
        _mass_table(result) if compare is None else _mass_table(compare) + _mass_table(result),
    ]
    if compare is not None:
        c = compare_cams(compare, result)
        parts += [
            f"<p>Paired test, {escape(c.label('other'))} against {escape(c.label('reference'))}"
            " (Wilcoxon signed-rank of the per-image difference in excess, two-sided; effect "
            "size: matched-pairs rank-biserial correlation):</p>",
            _comparison_table(c),
        ]
    command = meta.get("command", "")
    if command:
        parts.append(f"<pre><code>{escape(str(command))}</code></pre>")
    return "\n".join(parts)


__all__ = ["CAM_FILES", "cam_section", "cams_frame", "cams_npz", "write_cam_run"]
