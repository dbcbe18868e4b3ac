"""Writing an activation-maximisation run's folder, and its section of an HTML report."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path

import pandas as pd
from PIL import Image

from rcvlab.analyses.visualize import VisualizeResult
from rcvlab.report.html import figure_data_uri, html_table
from rcvlab.runio import write_bytes, write_figure, write_text


def slug(text: str) -> str:
    """``text`` as a file-name part: runs of anything but letters, digits, ``.`` and ``-``
    become ``-``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"


def weights_slug(weights: str) -> str:
    """File-name part of a weights name: ``imagenet``, or a file's ``parent-stem``."""
    if "/" in weights or "\\" in weights or weights.endswith((".pt", ".pth")):
        p = Path(weights)
        return slug(f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem)
    return slug(weights)


def target_slug(target: str) -> str:
    """File-name part of a target: the channel index, ``rcv-plus`` or ``rcv-minus``."""
    return {"+rcv": "rcv-plus", "-rcv": "rcv-minus"}.get(target, slug(target))


def _unique_slugs(results: Sequence[VisualizeResult]) -> list[str]:
    slugs = [weights_slug(r.weights) for r in results]
    return [s if slugs.count(s) == 1 else f"{s}-{i}" for i, s in enumerate(slugs)]


def _png(image: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


def visualize_frame(results: Sequence[VisualizeResult]) -> pd.DataFrame:
    """Every result's :meth:`~VisualizeResult.to_frame`, one below the other."""
    return pd.concat([r.to_frame() for r in results], ignore_index=True)


def summary_markdown(results: Sequence[VisualizeResult]) -> str:
    """``summary.md``: what was optimised, how, and the objective per image and weights."""
    first = results[0]
    stages = "; ".join(
        f"{s} steps lr {lr:g}" + (f" TV {tv:g}" if tv else "") for s, lr, tv in first.stages
    )
    lines = [
        f"# Activation maximisation: {first.model} {first.layer}",
        "",
        f"- layer module: `{first.layer_module}` ({first.n_channels} channels)",
        f"- image: {first.size} px, Fourier parametrisation, decorrelated colour, sigmoid; "
        + (
            "random pad 12 / jitter 8 / scale 1 ± 0.1 / rotate ± 10° / jitter 4 every step"
            if first.transforms
            else "no random transforms"
        ),
        f"- schedule: {stages} ({first.steps} steps)",
        f"- seed: {first.seed}",
    ]
    if first.rcv_measure:
        lines.append(
            f"- objective: projection of the layer's GAP features on the RCV of "
            f"{first.rcv_measure} (+rcv: maximised, -rcv: minimised)"
        )
    else:
        lines.append("- objective: mean activation of the channel (its GAP feature)")
    lines += ["", "| weights | target | objective start | objective end |", "|---|---|---|---|"]
    for r in results:
        for t, a, b in zip(r.targets, r.objective_start, r.objective_end, strict=True):
            lines.append(f"| {r.weights} | {t} | {a:.4g} | {b:.4g} |")
    for r in results:
        sec = r.meta.get("seconds")
        if sec is not None:
            lines.append(
                f"\n{r.weights}: {sec:.1f} s on {r.meta.get('device', '?')} "
                f"({r.meta.get('steps_per_second', float('nan')):.1f} steps/s per batch)."
            )
    cmd = first.meta.get("command", "")
    if cmd:
        lines += ["", "```", cmd, "```"]
    return "\n".join(lines) + "\n"


def write_visualize_run(
    out: str | os.PathLike[str], results: VisualizeResult | Sequence[VisualizeResult]
) -> dict[str, Path]:
    """Write an activation-maximisation run's files into the folder ``out`` (atomically).

    ``visualize.png`` (the grid, :func:`rcvlab.viz.visualize.plot_visualize`),
    ``images/<weights>_<layer>_<target>.png`` (every image at full resolution),
    ``visualize.csv`` (:func:`visualize_frame`), ``summary.md``, and the result JSON:
    ``visualize.json`` for one result, ``visualize_<weights>.json`` for each of several
    (each readable by :func:`rcvlab.load_result`).

    Parameters
    ----------
    out : path
        An existing folder.
    results : VisualizeResult or sequence of VisualizeResult
        Several: one per weights, same layer and targets.

    Returns
    -------
    dict of str to Path
        Every file written, by its path relative to ``out``.
    """
    from rcvlab.viz.visualize import as_results, plot_visualize

    rs = as_results(results)
    out = Path(out)
    files: dict[str, Path] = {}
    slugs = _unique_slugs(rs)
    if len(rs) == 1:
        files["visualize.json"] = out / "visualize.json"
        rs[0].to_json(files["visualize.json"])
    else:
        for s, r in zip(slugs, rs, strict=True):
            name = f"visualize_{s}.json"
            files[name] = out / name
            r.to_json(files[name])
    files["visualize.csv"] = out / "visualize.csv"
    write_text(files["visualize.csv"], visualize_frame(rs).to_csv(index=False))
    files["summary.md"] = out / "summary.md"
    write_text(files["summary.md"], summary_markdown(rs))
    files["visualize.png"] = out / "visualize.png"
    write_figure(files["visualize.png"], plot_visualize(rs))
    (out / "images").mkdir(exist_ok=True)
    for s, r in zip(slugs, rs, strict=True):
        for t, image in zip(r.targets, r.images, strict=True):
            name = f"images/{s}_{slug(r.layer)}_{target_slug(t)}.png"
            files[name] = out / name
            write_bytes(files[name], _png(image))
    return files


def visualize_section(
    results: VisualizeResult | Sequence[VisualizeResult], notes: tuple[str, ...] = ()
) -> str:
    """An HTML section: the image grid (inline) and the objective at start and end of every
    image (all text escaped)."""
    from rcvlab.viz.visualize import as_results, plot_visualize

    rs = as_results(results)
    first = rs[0]
    frame = visualize_frame(rs)
    table = pd.DataFrame(
        {
            "weights": frame["weights"],
            "target": frame["target"],
            "objective start": [f"{x:.4g}" for x in frame["objective_start"]],
            "objective end": [f"{x:.4g}" for x in frame["objective_end"]],
        }
    )
    what = (
        f"the projection of the GAP features on the RCV of {first.rcv_measure}"
        if first.rcv_measure
        else "the mean activation of single channels"
    )
    stages = "; ".join(
        f"{s} steps lr {lr:g}" + (f" TV {tv:g}" if tv else "") for s, lr, tv in first.stages
    )
    command = first.meta.get("command", "")
    return "\n".join(
        [
            f"<h2>Activation maximisation: {escape(first.model)} {escape(first.layer)}</h2>",
            *(f'<p class="note">{escape(n)}</p>' for n in notes),
            f"<p>Images of {first.size} px that maximise {escape(what)} (Fourier "
            f"parametrisation, decorrelated colour, random jitter / scale / rotation), "
            f"seed {first.seed}; schedule: {escape(stages)}. Rows: "
            f"{escape(', '.join(r.weights for r in rs))}.</p>",
            f'<img src="{figure_data_uri(plot_visualize(rs))}" alt="activation maximisation">',
            html_table(table, css_class="num"),
            f"<pre><code>{escape(command)}</code></pre>" if command else "",
        ]
    )


__all__ = [
    "slug",
    "summary_markdown",
    "target_slug",
    "visualize_frame",
    "visualize_section",
    "weights_slug",
    "write_visualize_run",
]
