"""Writing a noise-input run's folder."""

from __future__ import annotations

import os
from pathlib import Path

from rcvlab.analyses.noise import NoiseSizeResult
from rcvlab.runio import write_figure, write_text


def noise_markdown(result: NoiseSizeResult) -> str:
    """A table of mean test R² (95 % CI) per layer for regular and corrected GAP."""

    def cell(s: dict) -> str:
        if s["r2_mean"] is None:
            return "no positions"
        return (
            f"{s['r2_mean']:.3f} [{s['r2_ci95_low']:.3f}, {s['r2_ci95_high']:.3f}]; "
            f"median {s['r2_median']:.3f}"
        )

    lines = [
        f"# Image width from white noise: {result.model} ({result.weights})",
        "",
        f"Sizes {', '.join(map(str, result.sizes))} px; {result.n_train} training and "
        f"{result.n_test} test images per repetition, {result.reps} repetitions, "
        f"{result.regressor} probe. R² mean [95 % CI]; median over repetitions; corrected "
        "GAP averages only positions whose receptive field lies inside the image "
        "(positions: fewest over the sizes).",
        "",
        "| layer | regular GAP | corrected GAP | positions |",
        "|---|---|---|---|",
    ]
    for e in result.layers:
        lines.append(
            f"| {e.layer} | {cell(e.summary('gap'))} | {cell(e.summary('corrected-gap'))} "
            f"| {e.min_positions} |"
        )
    command = result.meta.get("command", "")
    lines += ["", f"Seed {result.seed}."]
    if command:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def write_noise_run(out: str | os.PathLike[str], result: NoiseSizeResult) -> dict[str, Path]:
    """``noise.json``, ``noise.csv``, ``noise.png`` and ``summary.md`` in ``out``, each
    written atomically (:mod:`rcvlab.runio`); the folder must exist.

    ``noise.json`` holds every repetition's R² and every image's width (read back with
    :meth:`NoiseSizeResult.from_json`); ``noise.csv`` is :meth:`NoiseSizeResult.to_frame`.

    Returns
    -------
    dict of str to Path
        The files written, by name.
    """
    from rcvlab.viz.noise import plot_noise

    out = Path(out)
    files = {k: out / k for k in ("noise.json", "noise.csv", "noise.png", "summary.md")}
    result.to_json(files["noise.json"])
    write_text(files["noise.csv"], result.to_frame().to_csv(index=False))
    write_text(files["summary.md"], noise_markdown(result))
    write_figure(files["noise.png"], plot_noise(result))
    return files


__all__ = ["noise_markdown", "write_noise_run"]
