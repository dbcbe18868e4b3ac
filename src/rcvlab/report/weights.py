"""Writing a weights comparison's run folder, and its section of an HTML report."""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path

import pandas as pd

from rcvlab.analyses.weights import PAPER004_FIGURE3, WeightsComparison, weights_kind
from rcvlab.runio import write_figure, write_text

WEIGHTS_FILES = (
    "weights_comparison.json",
    "weights_comparison.csv",
    "weights_comparison.png",
    "summary.md",
)
"""The files :func:`write_weights_run` writes, in that order."""

# paper 004's row for each kind of weights
_PAPER_ROW = {"random": "random (Xavier)", "pretrained": "pretrained", "finetuned": "finetuned"}


def _num(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _held_out(mean: float, se: float) -> str:
    return _num(mean) if not math.isfinite(se) else f"{_num(mean)} ± {se:.3f}"


def _insample(r2: float, saturated: bool) -> str:
    return f"{_num(r2)} (saturated)" if saturated else _num(r2)


def measure_table(result: WeightsComparison, measure: str) -> pd.DataFrame:
    """One concept's table: a row per layer; per network its held-out R² (mean ± SE), the
    paper's in-sample R² (when computed) and, for InceptionV3 at paper 004's six layers,
    the value of the paper's Figure 3 for that kind of network.

    Parameters
    ----------
    result : WeightsComparison
    measure : str

    Returns
    -------
    DataFrame of str
    """
    frame = result.to_frame()
    sub = frame[frame.measure == measure]
    layers = list(dict.fromkeys(sub.layer))
    paper = PAPER004_FIGURE3 if result.paper_layers else {}
    table: dict[str, list[str]] = {"layer": layers}
    for label, source in zip(result.labels, result.weights, strict=True):
        s = sub[sub.weights == label].set_index("layer")
        table[f"{label}: held-out"] = [
            _held_out(s.r2_mean.get(k, math.nan), s.r2_se.get(k, math.nan)) for k in layers
        ]
        if result.insample:
            table[f"{label}: in-sample"] = [
                _insample(s.r2_insample.get(k, math.nan), bool(s.insample_saturated.get(k, False)))
                for k in layers
            ]
        row = paper.get(_PAPER_ROW.get(weights_kind(source), ""), {}).get(measure)
        if row is not None:
            table[f"{label}: paper 004"] = [_num(v) for v in row[: len(layers)]]
    return pd.DataFrame(table)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the frame's cells as text (``|`` escaped)."""

    def row(cells: list[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [row(list(frame.columns)), row(["---"] * frame.shape[1])]
    lines += [row(list(r)) for r in frame.itertuples(index=False)]
    return "\n".join(lines)


def _protocol(result: WeightsComparison) -> str:
    n = result.data.get("n_used") or result.data.get("n_images")
    return (
        f"{result.model}; networks: "
        + ", ".join(
            f"{lab} ({src})" for lab, src in zip(result.labels, result.weights, strict=True)
        )
        + f". Held-out R²: {result.regressor} RCVs, {result.reps} random {result.split} splits "
        f"(test fraction {result.test_fraction:g}, seed {result.seed}), mean ± standard error "
        f"over the splits; the same splits for every network. Images used: {n}."
    )


_INSAMPLE_NOTE = (
    "In-sample R² (the paper's, from its code): statsmodels OLS with intercept on all images, "
    "no split. It measures fit, not prediction: it is 1 ('saturated') whenever the features "
    "and the intercept span the images (rank + 1 ≥ images), whatever the layer encodes."
)
_PAPER_NOTE = (
    "Paper 004 (Figure 3): InceptionV3 on Camelyon17 patches, in-sample R², at Keras layers "
    "conv2d_3, conv2d_5, mixed0, mixed3, mixed6, mixed7; compare it with the in-sample column."
)


def summary_markdown(result: WeightsComparison) -> str:
    """``summary.md``: the protocol, then one table per concept (:func:`measure_table`)."""
    lines = [f"# Concept RCVs across weights: {result.model}", "", _protocol(result), ""]
    if result.insample:
        lines += [_INSAMPLE_NOTE, ""]
    if result.paper_layers:
        lines += [_PAPER_NOTE, ""]
    for m in result.measures:
        lines += [f"## {m}", "", markdown_table(measure_table(result, m)), ""]
    command = result.meta.get("command")
    if command:
        lines += ["```", str(command), "```", ""]
    return "\n".join(lines)


def write_weights_run(out: str | os.PathLike[str], result: WeightsComparison) -> dict[str, Path]:
    """Write a weights comparison's files into the folder ``out``, each atomically.

    ``weights_comparison.json`` (the result, :meth:`WeightsComparison.to_json`),
    ``weights_comparison.csv`` (:meth:`WeightsComparison.to_frame`: one row per weights,
    measure and layer), ``weights_comparison.png`` (:func:`rcvlab.viz.weights.
    plot_weights_comparison`) and ``summary.md`` (:func:`summary_markdown`, with the
    paper's Figure-3 values beside ours for InceptionV3 at its six layers).

    Returns
    -------
    dict of str to Path
        Every file written, by name.
    """
    from rcvlab.viz.weights import plot_weights_comparison

    out = Path(out)
    files = {name: out / name for name in WEIGHTS_FILES}
    result.to_json(files["weights_comparison.json"])
    write_text(files["weights_comparison.csv"], result.to_frame().to_csv(index=False))
    write_figure(files["weights_comparison.png"], plot_weights_comparison(result))
    write_text(files["summary.md"], summary_markdown(result))
    return files


def weights_section(result: WeightsComparison) -> str:
    """An HTML section: the figure (inline), the protocol and one table per concept, all
    text escaped."""
    from rcvlab.report.html import figure_data_uri, html_table
    from rcvlab.viz.weights import plot_weights_comparison

    uri = figure_data_uri(plot_weights_comparison(result))
    parts = [
        f"<h2>Concept RCVs across weights: {escape(result.model)}</h2>",
        f"<p>{escape(_protocol(result))}</p>",
        f'<img src="{uri}" alt="R² per layer for each network">',
    ]
    if result.insample:
        parts.append(f'<p class="note">{escape(_INSAMPLE_NOTE)}</p>')
    if result.paper_layers:
        parts.append(f'<p class="note">{escape(_PAPER_NOTE)}</p>')
    for m in result.measures:
        parts += [f"<h3>{escape(m)}</h3>", html_table(measure_table(result, m), css_class="num")]
    command = result.meta.get("command")
    if command:
        parts.append(f"<pre><code>{escape(str(command))}</code></pre>")
    return "\n".join(parts)


__all__ = [
    "WEIGHTS_FILES",
    "markdown_table",
    "measure_table",
    "summary_markdown",
    "weights_section",
    "write_weights_run",
]
