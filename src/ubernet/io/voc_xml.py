"""PASCAL VOC annotation XML: write and read object boxes.

On disk VOC stores 1-based, inclusive integer pixel coordinates (``xmin..xmax`` both inside the box). The
sample contract uses continuous 0-based coordinates with exclusive ``x2``/``y2``; the two are related by
``x1 = xmin - 1, x2 = xmax`` (and the same for y). A box covering pixel columns 3..7 (0-based) is
``x1=3, x2=8`` in the contract and ``xmin=4, xmax=8`` in XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ubernet.errors import DataError


@dataclass
class VocAnnotation:
    """The content of one VOC annotation file.

    Attributes:
        filename: the ``<filename>`` entry (image file name, e.g. ``2007_000027.jpg``).
        size_hw: ``(H, W)`` from ``<size>``.
        boxes: float32 ``N×4`` ``x1, y1, x2, y2`` in the contract's 0-based exclusive convention.
        labels: int64 ``N`` class ids 1..C (index into ``class_names``); all 0 when read without class names.
        difficult: bool ``N``.
        truncated: bool ``N``.
        names: the ``N`` object names as written in the file.
    """

    filename: str
    size_hw: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray
    names: list[str]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def write_voc_xml(
    path: str | Path,
    *,
    filename: str,
    size_hw: tuple[int, int],
    boxes: np.ndarray,
    labels: np.ndarray,
    difficult: np.ndarray,
    class_names: Sequence[str],
    truncated: np.ndarray | None = None,
) -> None:
    """Write boxes as a standard PASCAL VOC annotation file.

    Args:
        path: output ``.xml`` file (parent folders are created).
        filename: image file name stored in ``<filename>``.
        size_hw: image ``(H, W)``; ``<depth>`` is always 3.
        boxes: ``N×4`` ``x1, y1, x2, y2`` (0-based, exclusive ``x2``/``y2``); written as
            ``xmin = round(x1) + 1, ymin = round(y1) + 1, xmax = round(x2), ymax = round(y2)``.
        labels: ``N`` class ids 1..C, names looked up in ``class_names`` (index 0 = background).
        difficult: ``N`` bools.
        class_names: class names, index 0 = background.
        truncated: optional ``N`` bools (0 when omitted).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    difficult = np.asarray(difficult, dtype=bool).reshape(-1)
    n = len(boxes)
    trunc = np.zeros(n, bool) if truncated is None else np.asarray(truncated, dtype=bool).reshape(-1)
    if not (len(labels) == len(difficult) == len(trunc) == n):
        raise ValueError(f"{path}: boxes, labels, difficult and truncated must have the same length")
    h, w = int(size_hw[0]), int(size_hw[1])
    root = ET.Element("annotation")
    _sub(root, "folder", "ubernet")
    _sub(root, "filename", filename)
    size = _sub(root, "size")
    _sub(size, "width", str(w))
    _sub(size, "height", str(h))
    _sub(size, "depth", "3")
    _sub(root, "segmented", "0")
    for b, lab, dif, tr in zip(boxes, labels, difficult, trunc):
        if not 1 <= int(lab) < len(class_names):
            raise ValueError(f"{path}: label {int(lab)} is outside 1..{len(class_names) - 1}")
        obj = _sub(root, "object")
        _sub(obj, "name", class_names[int(lab)])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", str(int(tr)))
        _sub(obj, "difficult", str(int(dif)))
        bb = _sub(obj, "bndbox")
        # rint first so a box stored at sub-pixel precision maps to the nearest pixel edges
        r = np.rint(b).astype(int)
        xmin, ymin, xmax, ymax = int(r[0]) + 1, int(r[1]) + 1, int(r[2]), int(r[3])
        for tag, v in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            _sub(bb, tag, str(v))
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)


def _int_text(el: ET.Element | None, tag: str, path: Path, default: int | None = None) -> int:
    child = el.find(tag) if el is not None else None
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise DataError(f"{path}: missing <{tag}>")
    try:
        # some VOC files store coordinates like "273.5"; VOC's devkit truncates them to integers
        return int(float(child.text.strip()))
    except ValueError:
        raise DataError(f"{path}: <{tag}> is not a number: {child.text.strip()!r}") from None


def read_voc_xml(path: str | Path, class_names: Sequence[str] | None = None) -> VocAnnotation:
    """Read a VOC annotation file into the contract's box convention.

    Args:
        path: the ``.xml`` file.
        class_names: class names (index 0 = background) used to turn ``<name>`` into labels 1..C; an unknown
            name is a :class:`DataError`. With ``None`` the labels are all 0 and only ``names`` is meaningful.

    Raises:
        DataError naming the file: unreadable or malformed XML, missing ``<size>``, unknown class name, a box
        with ``xmax < xmin``/``ymax < ymin`` or outside the image.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: no <size> element (image width/height unknown)")
    w, h = _int_text(size, "width", path), _int_text(size, "height", path)
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: <size> is {w}×{h}, expected positive width and height")
    fn_el = root.find("filename")
    filename = (fn_el.text or "").strip() if fn_el is not None else ""
    index = {n: i for i, n in enumerate(class_names)} if class_names is not None else None
    boxes, labels, diff, trunc, names = [], [], [], [], []
    for k, obj in enumerate(root.findall("object")):
        name_el = obj.find("name")
        name = (name_el.text or "").strip() if name_el is not None else ""
        if not name:
            raise DataError(f"{path}: object {k} has no <name>")
        if index is not None:
            if name not in index or index[name] == 0:
                valid = ", ".join(class_names[1:])  # type: ignore[index]
                raise DataError(f"{path}: object {k} has unknown class {name!r}; valid: {valid}")
            labels.append(index[name])
        else:
            labels.append(0)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{path}: object {k} ({name}) has no <bndbox>")
        xmin, ymin = _int_text(bb, "xmin", path), _int_text(bb, "ymin", path)
        xmax, ymax = _int_text(bb, "xmax", path), _int_text(bb, "ymax", path)
        if xmax < xmin or ymax < ymin:
            raise DataError(
                f"{path}: object {k} ({name}) has xmax < xmin or ymax < ymin: ({xmin}, {ymin}, {xmax}, {ymax})"
            )
        if xmin < 1 or ymin < 1 or xmax > w or ymax > h:
            raise DataError(
                f"{path}: object {k} ({name}) box ({xmin}, {ymin}, {xmax}, {ymax}) lies outside "
                f"the {w}×{h} image (VOC coordinates are 1..{w} × 1..{h})"
            )
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        diff.append(bool(_int_text(obj, "difficult", path, default=0)))
        trunc.append(bool(_int_text(obj, "truncated", path, default=0)))
        names.append(name)
    return VocAnnotation(
        filename=filename,
        size_hw=(h, w),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        difficult=np.asarray(diff, bool),
        truncated=np.asarray(trunc, bool),
        names=names,
    )
