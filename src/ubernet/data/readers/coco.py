"""COCO instances JSON: boxes for detection, instance masks painted into semantic segmentation.

Layout (``root`` holds)::

    annotations/instances_<split>.json     (or annotations=FILE)
    <split>/<file_name> | images/<split>/<file_name>   (or images=DIR)

Conversions:

* categories, sorted by COCO id, become contiguous ids 1..C (``meta["class_names"][id]``, 0 = background);
  ``meta["coco_category_ids"][id]`` gives the original id back;
* box ``[x, y, w, h]`` -> ``x1, y1, x2, y2 = x, y, x + w, y + h`` (COCO boxes are already continuous 0-based);
  boxes sticking out of the image by at most 1 pixel are clipped, further out is an error; boxes with
  ``w <= 0`` or ``h <= 0`` are dropped (counted in ``meta["degenerate_boxes"]``);
* ``iscrowd = 1`` -> ``difficult = True`` (neither rewarded nor penalised, as VOC's difficult);
* ``semseg``: instance masks (polygons or RLE) painted in annotation order (later over earlier) with their
  class id, crowd regions painted 255 (ignore); pixels of no instance are background 0.

No pycocotools needed: masks are decoded by :mod:`ubernet.io.coco_mask`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.data.readers.base import ReaderReport, Record, finish_sample, guarded_records, unknown_split
from ubernet.data.sample import IGNORE, Sample
from ubernet.errors import DataError
from ubernet.io.coco_mask import segmentation_to_mask
from ubernet.io.images import read_image


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or key not in data:
            raise DataError(f"{path}: not a COCO instances file (no {key!r} list)")
    return data


def load_coco(
    root: str | Path | None,
    split: str = "val2017",
    *,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    tasks: Sequence[str] = ("detection", "semseg"),
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "coco",
) -> list[Record]:
    """Records of a COCO split (every image of the JSON, with or without objects).

    Record fields: ``boxes`` float32 N×4, ``labels`` int64 N (1..C), ``difficult`` bool N (crowd),
    ``size_hw``, ``instances`` (list of ``(label, iscrowd, segmentation)`` for semseg), ``annotation_file``.
    """
    root_p = Path(root) if root is not None else None
    if annotations is not None:
        ann_file = Path(annotations)
    else:
        if root_p is None:
            raise DataError("coco: give a root folder or annotations=FILE")
        ann_file = root_p / "annotations" / f"instances_{split}.json"
        if not ann_file.is_file():
            found = [p.stem.removeprefix("instances_") for p in (root_p / "annotations").glob("instances_*.json")]
            raise unknown_split(root_p, split, found, "annotations/instances_*.json")
    if images is not None:
        img_dir = Path(images)
    else:
        base = root_p if root_p is not None else ann_file.parent.parent
        img_dir = next(
            (d for d in (base / split, base / "images" / split, base / "images") if d.is_dir()), base / split
        )
    data = _read_json(ann_file)
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    if "semseg" in tasks and len(cats) > 254:  # ids 1..C and 255 = ignore must fit in uint8
        raise DataError(f"{ann_file}: {len(cats)} categories do not fit a uint8 semseg map (at most 254)")
    cat_to_label = {int(c["id"]): i + 1 for i, c in enumerate(cats)}
    class_names = ("background", *(str(c["name"]) for c in cats))
    meta = {"class_names": class_names, "coco_category_ids": (0, *(int(c["id"]) for c in cats))}
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(int(a["image_id"]), []).append(a)
    want_seg = "semseg" in tasks

    def make(im: dict) -> Record:
        return _record(
            im, by_image.get(int(im["id"]), []), cat_to_label, ann_file, img_dir, meta, tasks, want_seg, source
        )

    def image_of(im: dict) -> Path:
        return img_dir / str(im.get("file_name", im.get("id")))

    return guarded_records(data["images"], make, image_of, skip_bad=skip_bad, report=report)


def _record(
    im: dict,
    anns: list[dict],
    cat_to_label: dict[int, int],
    ann_file: Path,
    img_dir: Path,
    meta: dict,
    tasks: Sequence[str],
    want_seg: bool,
    source: str,
) -> Record:
    h, w = int(im["height"]), int(im["width"])
    boxes, labels, crowd, instances = [], [], [], []
    degenerate = 0
    for a in anns:
        cid = int(a["category_id"])
        if cid not in cat_to_label:
            raise DataError(
                f"{ann_file}: annotation {a.get('id')} of image {im['id']} has category id {cid}, "
                f"not in 'categories' (valid: {sorted(cat_to_label)[:10]}...)"
            )
        label = cat_to_label[cid]
        is_crowd = bool(a.get("iscrowd", 0))
        if want_seg and "segmentation" in a:
            instances.append((label, is_crowd, a["segmentation"]))
        x, y, bw, bh = (float(v) for v in a["bbox"])
        if bw <= 0 or bh <= 0:
            degenerate += 1
            continue
        x1, y1, x2, y2 = x, y, x + bw, y + bh
        if x1 < -1 or y1 < -1 or x2 > w + 1 or y2 > h + 1:
            raise DataError(
                f"{ann_file}: annotation {a.get('id')} box [{x}, {y}, {bw}, {bh}] lies outside the "
                f"{w}×{h} image {im['id']}"
            )
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
        if x2 <= x1 or y2 <= y1:
            degenerate += 1
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(label)
        crowd.append(is_crowd)
    fields: dict[str, Any] = {"annotation_file": ann_file, "size_hw": (h, w), "coco_image_id": int(im["id"])}
    labelled = []
    if want_seg:
        fields["instances"] = instances
        labelled.append("semseg")
    if "detection" in tasks:
        fields.update(
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64),
            difficult=np.asarray(crowd, np.bool_),
        )
        labelled.append("detection")
    return Record(
        id=str(im["id"]),
        source=source,
        image_path=img_dir / str(im["file_name"]),
        tasks=tuple(labelled),
        fields=fields,
        meta=dict(meta, degenerate_boxes=degenerate),
        format="coco",
    )


def instances_to_semseg(instances: Sequence[tuple[int, bool, Any]], h: int, w: int) -> np.ndarray:
    """uint8 ``H×W`` semantic labels from ``(label, iscrowd, segmentation)`` triples (see module docstring)."""
    seg = np.zeros((h, w), np.uint8)
    for label, is_crowd, segm in instances:
        seg[segmentation_to_mask(segm, h, w)] = IGNORE if is_crowd else label
    return seg


def read_coco_sample(record: Record) -> Sample:
    """Pixels, boxes and semseg of a COCO record."""
    f = record.fields
    image = read_image(record.image_path)
    hw = image.shape[:2]
    if tuple(f["size_hw"]) != hw:
        raise DataError(
            f"{f['annotation_file']}: image {f['coco_image_id']} is {f['size_hw'][0]}×"
            f"{f['size_hw'][1]} (H×W) in the JSON but {record.image_path} is {hw[0]}×{hw[1]}"
        )
    t: dict[str, np.ndarray] = {}
    if "boxes" in f:
        t.update(boxes=f["boxes"], labels=f["labels"], difficult=f["difficult"])
    if "instances" in f:
        try:
            t["semseg"] = instances_to_semseg(f["instances"], *hw)
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{f['annotation_file']}: image {f['coco_image_id']}: bad segmentation ({e})") from None
    return finish_sample(record, image, t)
