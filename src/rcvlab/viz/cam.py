"""Figure of a CAM run: per image the input and its grad-CAM / grad-CAM++ overlays."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rcvlab.analyses.cam import CamResult
from rcvlab.errors import DataError

_LABEL = {"gradcam": "grad-CAM", "gradcam++": "grad-CAM++"}


def _who(r: CamResult) -> str:
    return f"{r.model} ({r.weights})"


def plot_cams(
    result: CamResult, compare: CamResult | None = None, *, max_images: int = 16
) -> Figure:
    """One row per image: the input, then the normalised map of every method overlaid on it
    (jet, alpha 0.5), with ``compare``'s maps beside (e.g. pretrained beside finetuned).

    Each overlay's title gives the target probability and, where the image has a nuclei
    mask, the CAM mass on nuclei against the nuclei fraction. The nuclei outlines are drawn
    in white on the input.

    Parameters
    ----------
    result : CamResult
    compare : CamResult, optional
        The same images through another network (same ids, in the same order).
    max_images : int
        At most this many rows (the first ones).

    Raises
    ------
    DataError
        ``compare`` on other images.
    """
    if compare is not None and compare.ids != result.ids:
        raise DataError(
            "The comparison CAMs are on other images; compute them with "
            "cam(model, data, indices=result.indices, ...)."
        )
    sides = [result] if compare is None else [compare, result]
    n = min(len(result), max_images)
    cols = 1 + sum(len(r.methods) for r in sides)
    fig = Figure(figsize=(2.1 * cols, 2.3 * max(n, 1) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(max(n, 1), cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        image = result.images[i]
        ax = axes[i, 0]
        ax.imshow(image)
        if result.nuclei_masks[i].any():
            ax.contour(result.nuclei_masks[i], levels=[0.5], colors="white", linewidths=0.4)
        cls = f" [{result.classes[i]}]" if result.classes[i] else ""
        ax.set_title(f"{result.ids[i][-24:]}{cls}", fontsize=6)
        c = 1
        for r in sides:
            for j, m in enumerate(r.methods):
                ax = axes[i, c]
                ax.imshow(image)
                ax.imshow(r.all_normalised[i, j], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
                lines = [f"P({r.target_names[i] or r.target_classes[i]})={r.probs[i]:.3f}"]
                mass, frac = r.nuclei_mass[i, j], r.nuclei_fraction[i]
                if math.isfinite(mass) and math.isfinite(frac):
                    lines.append(f"nuclei: mass {mass:.2f} / area {frac:.2f}")
                if i == 0:
                    lines.insert(0, f"{_LABEL[m]}, {_who(r)}")
                ax.set_title("\n".join(lines), fontsize=6)
                c += 1
    what = f"{result.layer}"
    if compare is not None and compare.layer != result.layer:
        what = f"{compare.layer} / {result.layer}"
    fig.suptitle(f"Class activation maps at {what} (normalised per image)", fontsize=9)
    return fig


__all__ = ["plot_cams"]
