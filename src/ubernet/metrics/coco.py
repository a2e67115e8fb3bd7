"""COCO-style box AP as a cross-check of the VOC numbers, through ``pycocotools`` (optional ``coco`` extra).

Converts what a :class:`~ubernet.metrics.voc.VOCDetectionMetric` accumulated (VOC inclusive 1-based boxes) to
COCO's continuous ``[x, y, w, h]`` (``x = xmin - 1``, ``w = xmax - xmin + 1``) and runs ``COCOeval`` for boxes:
AP averaged over IoU 0.50:0.05:0.95 (``coco_ap``) and at IoU 0.5 (``coco_ap50``), with COCO's conventions
(101-point interpolation, at most 100 detections per image, areas from the boxes). VOC *difficult* boxes are
passed as ``iscrowd`` (COCO's ignore mechanism; note COCO then measures overlap with them as intersection over the
detection's area).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from ubernet.errors import UbernetError
from ubernet.metrics.voc import VOCDetectionMetric

__all__ = ["coco_box_ap"]


def coco_box_ap(metric: VOCDetectionMetric) -> dict[str, float]:
    """``{"coco_ap": AP@[.5:.95], "coco_ap50": AP@.5}`` of the detections accumulated in ``metric``."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UbernetError("the COCO cross-check needs pycocotools: pip install 'ubernet[coco]'") from None
    ids = {name: i + 1 for i, name in enumerate(sorted(metric.gt))}
    annotations: list[dict[str, Any]] = []
    for name, (boxes, labels, difficult) in metric.gt.items():
        for b, lab, d in zip(boxes, labels, difficult):
            w, h = float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": ids[name],
                    "category_id": int(lab),
                    "bbox": [float(b[0] - 1), float(b[1] - 1), w, h],
                    "area": w * h,
                    "iscrowd": int(bool(d)),
                }
            )
    dataset = {
        "images": [{"id": i} for i in ids.values()],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(metric.class_names)],
        "annotations": annotations,
    }
    results = [
        {
            "image_id": ids[name],
            "category_id": k + 1,
            "score": float(s),
            "bbox": [float(b[0] - 1), float(b[1] - 1), float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)],
        }
        for k, dets in enumerate(metric.dets)
        for name, s, b in dets
        if name in ids
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if not results:
            return {"coco_ap": 0.0, "coco_ap50": 0.0}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"coco_ap": float(ev.stats[0]), "coco_ap50": float(ev.stats[1])}
