"""Small stand-ins for the papers' data, in the real layouts (built by the tests).

* :func:`imagenet_standin` — ``ROOT/train/<synset>/<synset>_<k>.JPEG`` with the bounding-box
  tarball's ``ROOT/Annotation/<synset>/<synset>_<k>.xml`` (PASCAL-VOC XML); every fifth image
  has two boxes, which rcvlab's reader must skip.
* :func:`janowczyk_standin` — ``ROOT/<mag>/<source>_<k>_f0000<j>_original.tif`` with
  ``..._mask.png`` beside it, in ``5X … 40X`` folders; nuclei discs whose area grows with the
  square of the magnification.
* :func:`camelyon_standin` — ``ROOT/patches/*.png`` and ``ROOT/patches.csv`` with the columns
  ``path,label,group`` (tumour / non-tumour, grouped by patient).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SYNSETS = ("n02058221", "n01608432", "n04037443")
MAGNIFICATIONS = ("5X", "8X", "10X", "15X", "20X", "30X", "40X")
_COLOURS = {"n02058221": (230, 230, 240), "n01608432": (120, 70, 40), "n04037443": (200, 30, 30)}


def _voc_xml(name: str, w: int, h: int, synset: str, boxes: list[tuple[int, int, int, int]]) -> str:
    objects = "".join(
        f"<object><name>{synset}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><folder>{synset}</folder><filename>{name}</filename>"
        "<source><database>ImageNet database</database></source>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objects}</annotation>"
    )


def imagenet_standin(root: Path, n_per_class: int = 12, size: int = 64, seed: int = 0) -> Path:
    """An ImageNet train folder with bounding-box XML for the papers' three synsets.

    Returns ``root``; ``n_per_class`` images per synset, of which every fifth has two boxes.
    """
    rng = np.random.default_rng(seed)
    for syn in SYNSETS:
        img_dir, ann_dir = root / "train" / syn, root / "Annotation" / syn
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            w, h = size + int(rng.integers(0, 16)), size
            img = rng.integers(60, 160, (h, w, 3)).astype(np.uint8)
            side = int(rng.integers(h // 6, h - 2))
            x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            boxes = [(x0, y0, x0 + side, y0 + side)]
            img[y0 : y0 + side, x0 : x0 + side] = _COLOURS[syn]
            if k % 5 == 4:
                boxes.append((0, 0, 4, 4))
            name = f"{syn}_{k}"
            Image.fromarray(img).save(img_dir / f"{name}.JPEG", quality=90)
            (ann_dir / f"{name}.xml").write_text(_voc_xml(name, w, h, syn, boxes))
    return root


def janowczyk_standin(
    root: Path, n_sources: int = 4, per_source: int = 2, size: int = 48, seed: int = 0
) -> Path:
    """Janowczyk-style nuclei patches in ``5X … 40X`` folders (see the module docstring)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for mag in MAGNIFICATIONS:
        m = int(mag[:-1])
        radius = max(1.0, 0.35 * m / 5 * 1.2)
        d = root / mag
        d.mkdir(parents=True, exist_ok=True)
        for s in range(n_sources):
            for j in range(per_source):
                img = np.full((size, size, 3), (235, 200, 220), dtype=np.uint8)
                mask = np.zeros((size, size), dtype=np.uint8)
                for _ in range(3):
                    cy, cx = rng.integers(int(radius) + 2, size - int(radius) - 2, 2)
                    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                    img[disc] = (90, 40, 130)
                    mask[disc] = 255
                img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
                stem = f"{1000 + s}_{j}_f0000{j}"
                Image.fromarray(img).save(d / f"{stem}_original.tif")
                Image.fromarray(mask).save(d / f"{stem}_mask.png")
    return root


def camelyon_standin(root: Path, n_per_class: int = 12, size: int = 48, seed: int = 0) -> Path:
    """Camelyon-style patches and their CSV ``path,label,group``; returns the CSV's path."""
    rng = np.random.default_rng(seed)
    d = root / "patches"
    d.mkdir(parents=True, exist_ok=True)
    lines = ["path,label,group"]
    for label, tone, n_nuc in (("tumour", (120, 50, 150), 14), ("non-tumour", (225, 170, 205), 4)):
        for k in range(n_per_class):
            img = np.full((size, size, 3), (235, 205, 225), dtype=np.int16)
            for _ in range(n_nuc):
                cy, cx = rng.integers(3, size - 3, 2)
                r = int(rng.integers(1, 4))
                img[cy - r : cy + r, cx - r : cx + r] = tone
            img = np.clip(img + rng.integers(-15, 15, img.shape), 0, 255).astype(np.uint8)
            name = f"{label}_{k}.png"
            Image.fromarray(img).save(d / name)
            lines.append(f"patches/{name},{label},patient{k % 4}")
    csv = root / "patches.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv
