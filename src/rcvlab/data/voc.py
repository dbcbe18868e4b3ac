"""VOC-style XML bounding-box annotations (PASCAL VOC and ImageNet) as an :class:`ImageSet`.

Both PASCAL VOC and ImageNet's bounding-box annotations use the same XML schema::

    <annotation>
      <filename>2008_000008.jpg</filename>      (ImageNet: "n02058221_123", no extension)
      <size><width>500</width><height>442</height><depth>3</depth></size>
      <object><name>horse</name>                  (ImageNet: the synset, "n02058221")
        <bndbox><xmin>53</xmin><ymin>87</ymin><xmax>471</xmax><ymax>420</ymax></bndbox>
      </object>
    </annotation>

Coordinate convention
---------------------
The box width and height are taken as ``w_b = xmax - xmin`` and ``h_b = ymax - ymin``, straight
from the XML values, without the ``+ 1`` that PASCAL's 1-based *inclusive* pixel indices would
strictly call for. This is the papers' formula ``r = (h_b * w_b) / (h_o * w_o)`` applied to the
annotation as written (as the authors' code did), and it reads ImageNet's annotations (0-based)
and PASCAL's (1-based) the same way; the difference is at most one pixel per side, i.e. a
relative error of about ``1 / w_b`` on each side. Coordinates may be fractional.

A box may overhang the image by at most one pixel (``-1 <= xmin`` and ``xmax <= width + 1``),
which covers both conventions' edge cases; it is then clipped to ``[0, width] x [0, height]``,
so ``0 < r <= 1`` always. Boxes further outside are skipped as "box outside the image".

EXIF orientation
----------------
Images are loaded upright (:func:`rcvlab.data.base.read_rgb` applies the EXIF orientation
tag), but a box is read in the grid of the XML's ``<size>``, or, when that is missing, of the
*stored* pixel grid (the file header, tag not applied). PASCAL VOC and ImageNet were
annotated in tools that showed the stored grid (browsers and Qt ignored the tag then), and
the ratio does not depend on the choice: a rotation or flip of the whole grid moves the box
with it and keeps both areas, and a 90-degree turn swaps width and height of image and box
alike. Only the bounds check depends on the grid, and it uses the XML's own ``<size>``.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rcvlab.errors import DataError, UnknownNameError, did_you_mean

from .base import FileImageSet, Skip

#: Image extensions tried for ImageNet's extension-less ``<filename>`` (in this order).
IMAGE_EXTENSIONS: tuple[str, ...] = (".JPEG", ".jpg", ".jpeg", ".png", ".JPG", ".PNG")

#: Measures :func:`read_voc` can compute, from the scale ratio ``r``.
VOC_MEASURES: dict[str, Callable[[float], float]] = {
    "scale_ratio": lambda r: r,
    "scale_ratio_sqrt": math.sqrt,
}

#: English names of the papers' ImageNet classes, accepted as ``cls`` for their synsets.
SYNSET_ALIASES: dict[str, str] = {
    "albatross": "n02058221",
    "kite": "n01608432",
    "racing car": "n04037443",
    "racing_car": "n04037443",
    "race car": "n04037443",
    "race_car": "n04037443",
    "racer": "n04037443",
}

_PASCAL_ANN = "Annotations"
_PASCAL_IMG = "JPEGImages"
_BOX_TOLERANCE = 1.0  # pixels a box may overhang the image (see the module docstring)


class _Skipped(Exception):
    """Raised while reading one annotation; ``defect`` is False for mere selection."""

    def __init__(
        self, reason: str, kind: str, *, defect: bool = True, found_class: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.defect = defect
        self.found_class = found_class


@dataclass(frozen=True)
class _Item:
    """One usable annotation: the image, its single box's class and the scale ratio."""

    image: str
    annotation: str
    cls: str
    ratio: float


def detect_layout(root: str | os.PathLike[str]) -> str:
    """Return ``"pascal"`` or ``"imagenet"`` for an annotation folder.

    Parameters
    ----------
    root : path
        The data folder.

    Returns
    -------
    str
        ``"pascal"`` when ``root/Annotations`` and ``root/JPEGImages`` both exist (XML files
        are read from ``root/Annotations`` only), else ``"imagenet"`` (every ``*.xml`` under
        ``root``, recursively; images beside them or anywhere under ``root``).
    """
    r = Path(root)
    if (r / _PASCAL_ANN).is_dir() and (r / _PASCAL_IMG).is_dir():
        return "pascal"
    return "imagenet"


def _visible_walk(root: Path) -> Iterable[tuple[str, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, dirnames, sorted(f for f in filenames if not f.startswith("."))


def _xml_files(root: Path, layout: str) -> list[Path]:
    if layout == "pascal":
        ann = root / _PASCAL_ANN
        return sorted(p for p in ann.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    return sorted(
        Path(d) / f
        for d, _, files in _visible_walk(root)
        for f in files
        if f.lower().endswith(".xml")
    )


class _ImageIndex:
    """All image files under ``root`` by stem, built on first use (big trees are slow)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_stem: dict[str, list[Path]] | None = None

    def find(self, stem: str, near: Path) -> Path | list[Path] | None:
        if self._by_stem is None:
            exts = {e.lower() for e in IMAGE_EXTENSIONS}
            by_stem: dict[str, list[Path]] = {}
            for d, _, files in _visible_walk(self.root):
                for f in files:
                    stem_f, ext = os.path.splitext(f)
                    if ext.lower() in exts:
                        by_stem.setdefault(stem_f, []).append(Path(d) / f)
            self._by_stem = by_stem
        hits = self._by_stem.get(stem, [])
        if len(hits) <= 1:
            return hits[0] if hits else None
        # Same-named images in several folders: prefer the one in a folder named like the
        # XML's (Annotation/n0205/x.xml <-> images/n0205/x.JPEG); otherwise it is ambiguous.
        same = [h for h in hits if h.parent.name == near.parent.name]
        return same[0] if len(same) == 1 else hits


def _text(el: ET.Element | None, tag: str) -> str | None:
    child = None if el is None else el.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _number(el: ET.Element, tag: str, what: str) -> float:
    raw = _text(el, tag)
    if raw is None:
        raise _Skipped(f"invalid box (no <{tag}> in {what})", "invalid box")
    try:
        v = float(raw)
    except ValueError:
        raise _Skipped(f"invalid box ({tag}={raw!r} is not a number)", "invalid box") from None
    if not math.isfinite(v):
        raise _Skipped(f"invalid box ({tag}={raw!r} is not finite)", "invalid box")
    return v


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _image_size(size_el: ET.Element | None, image: Path) -> tuple[float, float]:
    w = h = 0.0
    if size_el is not None:
        try:
            w = float(_text(size_el, "width") or 0)
            h = float(_text(size_el, "height") or 0)
        except ValueError:
            w = h = 0.0
    if w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h):
        return w, h
    # <size> missing or zero (happens in ImageNet): the header gives it without decoding.
    try:
        with Image.open(image) as im:
            return float(im.width), float(im.height)
    except Exception as e:  # PIL raises many types for broken files
        raise _Skipped(
            f"no <size> in the XML and cannot read the image size of {image.name}: {e}",
            "unreadable image size",
        ) from None


def _resolve_image(
    xml_path: Path, filename: str, root: Path, layout: str, index: _ImageIndex
) -> Path:
    name = os.path.basename(filename.replace("\\", "/"))
    has_ext = os.path.splitext(name)[1].lower() in {e.lower() for e in IMAGE_EXTENSIONS}
    names = [name] if has_ext else [name + e for e in IMAGE_EXTENSIONS]
    if layout == "pascal" and not has_ext:
        names = [name + ".jpg", *names]  # PASCAL's convention, tried first
    folders = [root / _PASCAL_IMG] if layout == "pascal" else []
    folders.append(xml_path.parent)
    for folder in folders:
        for n in names:
            p = folder / n
            if p.is_file():
                return p
    hit = index.find(os.path.splitext(name)[0] if has_ext else name, xml_path)
    if isinstance(hit, Path):
        return hit
    if isinstance(hit, list):
        raise _Skipped(
            f"image file ambiguous for {filename}: {len(hit)} files named so under {root}",
            "image file ambiguous",
        )
    raise _Skipped(f"image file not found for {filename}", "image file not found")


@dataclass(frozen=True)
class _ClassFilter:
    """The classes asked for (as the user wrote them) and the lower-case names accepted."""

    asked: tuple[str, ...]
    accepted: frozenset[str]

    @classmethod
    def of(cls, wanted: str | Sequence[str] | None) -> _ClassFilter | None:
        if wanted is None:
            return None
        names = [wanted] if isinstance(wanted, str) else [str(c) for c in wanted]
        names = [n.strip() for n in names]
        if not names or not all(names):
            raise DataError(
                f"Empty class name in cls={wanted!r}; pass a class such as 'n02058221'."
            )
        accepted = {n.lower() for n in names}
        accepted |= {SYNSET_ALIASES[n.lower()] for n in names if n.lower() in SYNSET_ALIASES}
        return cls(tuple(names), frozenset(accepted))

    def __str__(self) -> str:
        return ", ".join(self.asked)


def _read_one(
    xml_path: Path,
    root: Path,
    layout: str,
    index: _ImageIndex,
    wanted: _ClassFilter | None,
) -> _Item:
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, UnicodeDecodeError, ValueError) as e:
        raise _Skipped(f"malformed XML: {e}", "malformed XML") from None
    except OSError as e:
        raise _Skipped(f"unreadable XML file: {e.strerror or e}", "unreadable XML file") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise _Skipped(
            f"malformed XML: root element <{ann.tag}>, expected <annotation>", "malformed XML"
        )

    objects = ann.findall("object")
    if not objects:
        raise _Skipped("no box", "no box", defect=False)
    if len(objects) > 1:
        raise _Skipped(f"{len(objects)} boxes (need exactly 1)", "several boxes", defect=False)
    obj = objects[0]
    cls = _text(obj, "name") or ""
    if wanted is not None and cls.lower() not in wanted.accepted:
        raise _Skipped(
            f"box of class {cls!r}, not {str(wanted)!r}",
            f"class {cls!r}",
            defect=False,
            found_class=cls,
        )

    box = obj.find("bndbox")
    if box is None:
        raise _Skipped("invalid box (no <bndbox> in <object>)", "invalid box")
    x0, y0 = _number(box, "xmin", "<bndbox>"), _number(box, "ymin", "<bndbox>")
    x1, y1 = _number(box, "xmax", "<bndbox>"), _number(box, "ymax", "<bndbox>")
    for a, b, lo, hi in ((x0, x1, "xmin", "xmax"), (y0, y1, "ymin", "ymax")):
        if a >= b:
            raise _Skipped(f"invalid box ({lo}={_fmt(a)} >= {hi}={_fmt(b)})", "invalid box")

    filename = _text(ann, "filename")
    if not filename or filename == "%s":  # some ImageNet XMLs carry a literal "%s"
        filename = xml_path.stem
    image = _resolve_image(xml_path, filename, root, layout, index)
    w, h = _image_size(ann.find("size"), image)

    t = _BOX_TOLERANCE
    for name, v, ok, bound in (
        ("xmin", x0, x0 >= -t, "< 0"),
        ("ymin", y0, y0 >= -t, "< 0"),
        ("xmax", x1, x1 <= w + t, f"> width={_fmt(w)}"),
        ("ymax", y1, y1 <= h + t, f"> height={_fmt(h)}"),
    ):
        if not ok:
            raise _Skipped(
                f"box outside the image ({name}={_fmt(v)} {bound})", "box outside the image"
            )
    bw = min(x1, w) - max(x0, 0.0)
    bh = min(y1, h) - max(y0, 0.0)
    if bw <= 0 or bh <= 0:
        raise _Skipped("box outside the image (no overlap after clipping)", "box outside the image")
    return _Item(str(image), str(xml_path), cls, (bw * bh) / (w * h))


def _top_reasons(kinds: Counter[str], n: int = 3) -> str:
    return "; ".join(f"{k} ({c}x)" for k, c in kinds.most_common(n))


def read_voc(
    root: str | os.PathLike[str],
    *,
    cls: str | Sequence[str] | None = None,
    measure_names: Sequence[str] = ("scale_ratio", "scale_ratio_sqrt"),
    strict: bool = False,
) -> FileImageSet:
    """Read single-box images from VOC-style XML annotations (PASCAL VOC or ImageNet).

    The layout is detected (see :func:`detect_layout`). For each XML file the image is looked
    up by ``<filename>`` (extensions ``.JPEG``, ``.jpg``, ``.jpeg``, ``.png`` are tried when it
    has none): in ``root/JPEGImages`` (PASCAL), then in the XML's own folder, then anywhere
    under ``root`` by file stem. Only images with exactly one ``<object>`` are kept. Images are
    not decoded here: an unreadable image file raises :class:`DataError` when it is loaded.

    Parameters
    ----------
    root : path
        The data folder (``VOC2012`` with ``Annotations/`` and ``JPEGImages/``, or an ImageNet
        tree such as ``DIR/Annotation/n02058221/*.xml`` with images under ``DIR``).
    cls : str or sequence of str, optional
        Keep only images whose single box is of this class: the ``<name>`` in the XML (a
        PASCAL class such as ``"aeroplane"`` or an ImageNet synset such as ``"n02058221"``;
        case-insensitive). The papers' classes may also be given by name (``"albatross"``,
        ``"kite"``, ``"racing car"``). Images of other classes are skipped with a reason.
    measure_names : sequence of str
        Measures to compute: ``"scale_ratio"`` (``r = h_b w_b / (h_o w_o)``) and/or
        ``"scale_ratio_sqrt"`` (``sqrt(r)``). See the module docstring for the coordinate
        convention.
    strict : bool
        Raise :class:`DataError` at the first defective annotation (malformed XML, invalid box,
        box outside the image, image file not found) instead of skipping it. Images left out by
        the selection rule (not exactly one box, another class) never raise.

    Returns
    -------
    FileImageSet
        Images sorted by path, with the measures, ``classes`` = the box's class name,
        ``groups = None`` and every dropped annotation in ``.skipped``.

    Raises
    ------
    DataError
        If ``root`` does not exist or holds no XML files, if no image is usable, or (with
        ``strict``) at the first defective annotation.
    UnknownNameError
        For an unknown measure name.
    """
    for m in measure_names:
        if m not in VOC_MEASURES:
            raise UnknownNameError(
                f"Unknown measure '{m}' for VOC annotations.{did_you_mean(m, VOC_MEASURES)} "
                f"Available: {', '.join(VOC_MEASURES)}."
            )
    if not measure_names:
        raise DataError("measure_names is empty; pass e.g. ('scale_ratio',).")
    rootp = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not rootp.exists():
        raise DataError(f"Data folder {rootp} does not exist; check the path given to voc:DIR.")
    if not rootp.is_dir():
        raise DataError(f"{rootp} is not a folder; voc:DIR needs the folder of the XML files.")
    layout = detect_layout(rootp)
    xmls = _xml_files(rootp, layout)
    if not xmls:
        where = rootp / _PASCAL_ANN if layout == "pascal" else rootp
        raise DataError(
            f"No .xml annotation files under {where}; expected DIR/Annotations/*.xml with "
            "DIR/JPEGImages (PASCAL VOC) or XML files in or beside the image folders (ImageNet)."
        )
    wanted = _ClassFilter.of(cls)
    index = _ImageIndex(rootp)

    items: list[_Item] = []
    skipped: list[Skip] = []
    kinds: Counter[str] = Counter()
    seen_classes: Counter[str] = Counter()
    by_image: dict[str, str] = {}
    for xml_path in xmls:
        try:
            item = _read_one(xml_path, rootp, layout, index, wanted)
            if item.image in by_image:
                raise _Skipped(
                    f"duplicate annotation of {item.image} (already read from "
                    f"{by_image[item.image]})",
                    "duplicate annotation",
                )
        except _Skipped as s:
            if strict and s.defect:
                raise DataError(
                    f"{s.reason} in {xml_path}; fix or remove that annotation file, or drop "
                    "strict (--strict) to skip such files."
                ) from None
            skipped.append(Skip(str(xml_path), s.reason))
            kinds[s.kind] += 1
            if s.found_class is not None:
                seen_classes[s.found_class] += 1
            continue
        by_image[item.image] = item.annotation
        items.append(item)

    if not items:
        hint = ""
        if wanted is not None and seen_classes:
            top = ", ".join(c for c, _ in seen_classes.most_common(5))
            hint = f"{did_you_mean(wanted.asked[0], seen_classes)} Single-box classes found: {top}."
        raise DataError(
            f"No usable image in {rootp} ({layout} layout): all {len(skipped)} annotation files "
            f"were skipped. Top reasons: {_top_reasons(kinds)}.{hint}"
        )

    items.sort(key=lambda it: it.image)
    measures = {m: [VOC_MEASURES[m](it.ratio) for it in items] for m in measure_names}
    skipped.sort(key=lambda s: s.path)
    return FileImageSet(
        [it.image for it in items],
        measures,
        classes=[it.cls for it in items],
        groups=None,
        skipped=skipped,
        source=f"voc:{rootp}",
        strict=strict,
    )


__all__ = ["IMAGE_EXTENSIONS", "SYNSET_ALIASES", "VOC_MEASURES", "detect_layout", "read_voc"]
