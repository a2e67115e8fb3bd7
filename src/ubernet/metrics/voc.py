"""PASCAL VOC detection: per-class AP at IoU > 0.5 (VOC07 11-point and VOC10+ area), mean over classes.

Protocol (VOC devkit ``VOCevaldet`` / ``voc_eval.py``), boxes in VOC's inclusive 1-based pixel convention
(``xmin ymin xmax ymax`` as written in the XML, width ``xmax - xmin + 1``):

* per class, detections of all images sorted by decreasing score (a stable sort, as MATLAB's ``sort``: equal
  scores keep their input order);
* each detection takes the ground-truth box of its class in its image with the largest IoU (first one on ties),
  ``IoU = inter / (area_det + area_gt - inter)`` with inclusive widths and an empty intersection when
  ``iw <= 0`` or ``ih <= 0``; if that IoU is strictly above 0.5: a *difficult* box makes the detection neither
  TP nor FP; an unclaimed box makes it a TP and claims the box; a claimed box makes it a FP (duplicate);
  otherwise (IoU <= 0.5 or no box) it is a FP;
* positives = non-difficult boxes of the class; ``rec = cumTP / positives``, ``prec = cumTP / (cumTP + cumFP)``;
* VOC07: mean over ``t = 0, 0.1, ..., 1`` of ``max(prec[rec >= t])`` (0 when none);
  VOC10+: area under the monotone envelope of precision over the recall steps;
* a class with positives but no detections has AP 0; a class with no positive box at all has no AP (``None``)
  and is left out of the mean (the devkit would divide by zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ubernet.metrics.base import mean_defined

__all__ = ["VOCDetectionMetric", "box_iou_voc", "from_continuous", "voc07_ap", "voc10_ap"]


def from_continuous(boxes: np.ndarray) -> np.ndarray:
    """Project boxes (0-based, exclusive ``x2``/``y2``) -> VOC inclusive 1-based: ``xmin = x1 + 1, xmax = x2``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    b[:, :2] += 1.0
    return b


def box_iou_voc(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one box ``(4,)`` with ``M×4`` boxes, inclusive pixel convention (``+1`` on widths)."""
    ixmin = np.maximum(gts[:, 0], box[0])
    iymin = np.maximum(gts[:, 1], box[1])
    ixmax = np.minimum(gts[:, 2], box[2])
    iymax = np.minimum(gts[:, 3], box[3])
    iw = ixmax - ixmin + 1.0
    ih = iymax - iymin + 1.0
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_b = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    area_g = (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0)
    return np.where(inter > 0, inter / (area_b + area_g - inter), 0.0)


def voc07_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """11-point interpolated AP: mean over ``t = 0, 0.1, ..., 1`` of the best precision at recall >= t."""
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        m = rec >= t
        ap += (float(prec[m].max()) if m.any() else 0.0) / 11.0
    return ap


def voc10_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+): sum of recall steps times the envelope after each step."""
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(((mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum())


class VOCDetectionMetric:
    """VOC mAP@0.5 over a dataset.

    Args:
        class_names: the ``C`` object classes *without* background; label ``l`` (1..C) is ``class_names[l-1]``.
        iou_threshold: a detection needs IoU strictly above this (0.5).
    """

    def __init__(self, class_names: Sequence[str], *, iou_threshold: float = 0.5) -> None:
        self.class_names = list(class_names)
        if not self.class_names:
            raise ValueError("VOCDetectionMetric needs at least one class name")
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self) -> None:
        c = len(self.class_names)
        self.gt: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.dets: list[list[tuple[str, float, np.ndarray]]] = [[] for _ in range(c)]
        self.order = 0

    def update(
        self,
        image_id: str,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_labels: np.ndarray,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        gt_difficult: np.ndarray | None = None,
    ) -> None:
        """Add one image. Boxes ``N×4``/``M×4`` in VOC inclusive 1-based pixels (see :func:`from_continuous`);
        labels 1..C; ``gt_difficult`` bool ``M`` (all False when omitted)."""
        if image_id in self.gt:
            raise ValueError(f"image {image_id!r} was already added")
        c = len(self.class_names)
        db = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        ds = np.asarray(det_scores, np.float64).reshape(-1)
        dl = np.asarray(det_labels, np.int64).reshape(-1)
        gb = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gl = np.asarray(gt_labels, np.int64).reshape(-1)
        gd = np.zeros(len(gb), bool) if gt_difficult is None else np.asarray(gt_difficult, bool).reshape(-1)
        if not (len(db) == len(ds) == len(dl)) or not (len(gb) == len(gl) == len(gd)):
            raise ValueError(f"image {image_id!r}: boxes, scores/labels and difficult flags differ in length")
        for name, lab in (("detection", dl), ("ground-truth", gl)):
            if len(lab) and (lab.min() < 1 or lab.max() > c):
                raise ValueError(f"image {image_id!r}: {name} label outside 1..{c}: {sorted(set(lab.tolist()))}")
        self.gt[image_id] = (gb, gl, gd)
        for b, s, lab in zip(db, ds, dl):
            self.dets[lab - 1].append((image_id, float(s), b))

    def _class_ap(self, k: int) -> tuple[float | None, float | None, int, int]:
        label = k + 1
        gts = {i: (b[lab == label], d[lab == label]) for i, (b, lab, d) in self.gt.items()}
        npos = int(sum((~d).sum() for _, d in gts.values()))
        dets = self.dets[k]
        if npos == 0:
            return None, None, 0, len(dets)
        if not dets:
            return 0.0, 0.0, npos, 0
        scores = np.array([s for _, s, _ in dets])
        order = np.argsort(-scores, kind="stable")
        claimed = {i: np.zeros(len(b), bool) for i, (b, _) in gts.items()}
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for n, j in enumerate(order):
            img, _, box = dets[j]
            gb, gd = gts.get(img, (np.zeros((0, 4)), np.zeros(0, bool)))
            if len(gb):
                ov = box_iou_voc(box, gb)
                m = int(np.argmax(ov))
                if ov[m] > self.iou_threshold:
                    if gd[m]:
                        continue
                    if not claimed[img][m]:
                        tp[n] = 1
                        claimed[img][m] = True
                    else:
                        fp[n] = 1
                    continue
            fp[n] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / npos
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        return voc07_ap(rec, prec), voc10_ap(rec, prec), npos, len(dets)

    def compute(self) -> dict[str, float | dict | int]:
        ap07: dict[str, float | None] = {}
        ap10: dict[str, float | None] = {}
        npos: dict[str, int] = {}
        for k, name in enumerate(self.class_names):
            a07, a10, n, _ = self._class_ap(k)
            ap07[name], ap10[name], npos[name] = a07, a10, n
        return {
            "map_voc07": mean_defined(ap07.values()),
            "map_voc10": mean_defined(ap10.values()),
            "ap_voc07": ap07,
            "ap_voc10": ap10,
            "num_positives": npos,
            "num_images": len(self.gt),
        }
