"""Score folders of saved predictions against ground-truth folders (the library side of ``ubernet score``).

Files are paired by stem. Policy for stems present on one side only:

* ground truth without a prediction: for ``boundaries``, ``saliency``, ``semantic_boundaries`` and
  ``detection`` the image counts with an *empty* prediction (all its true pixels/objects are misses; an empty
  saliency map enters MAE only, as the protocol prescribes); for ``semseg``, ``parts`` and ``normals``, where an
  empty prediction has no meaning, it is an error. The stems are listed in ``missing_predictions``.
* a prediction without ground truth is ignored and listed in ``unmatched_predictions``.
* ``strict=True`` turns both cases into errors; ``imageset`` restricts the evaluation to the listed stems.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.data.readers.voc import VOC_CLASSES as _VOC_WITH_BACKGROUND
from ubernet.errors import DataError
from ubernet.metrics import files

__all__ = ["SCORE_TASKS", "VOC_CLASSES", "score_folders"]

#: PASCAL VOC object classes (without background), the default class list of ``detection``
VOC_CLASSES: tuple[str, ...] = _VOC_WITH_BACKGROUND[1:]

# task -> (prediction extensions, ground-truth extensions, an empty prediction stands for a missing one)
SCORE_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "boundaries": ((".png", ".npy"), (".mat", ".png"), True),
    "saliency": ((".png", ".npy"), (".png",), True),
    "semseg": ((".png",), (".png",), False),
    "parts": ((".png",), (".png",), False),
    "normals": ((".npy", ".png"), (".npy", ".png"), False),
    "detection": ((".txt",), (".xml",), True),
    "semantic_boundaries": ((".npz",), (".npz", ".mat"), True),
}


def _read_imageset(path: Path) -> list[str]:
    try:
        return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read image set ({e})") from None


def _check_same(pred_path: Path | None, gt_path: Path, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    if a != b:
        raise DataError(f"{pred_path}: size {a} differs from the ground truth {gt_path} ({b})")


def _pair(
    task: str, pred_dir: Path, gt_dir: Path, imageset: Path | None, strict: bool
) -> tuple[list[tuple[str, Path | None, Path]], list[str], list[str]]:
    pexts, gexts, empty_ok = SCORE_TASKS[task]
    preds = files.find_files(pred_dir, pexts)
    gts = files.find_files(gt_dir, gexts, task=task)
    if imageset is not None:
        wanted = _read_imageset(imageset)
        absent = [s for s in wanted if s not in gts]
        if absent:
            raise DataError(
                f"{imageset}: {len(absent)} listed images have no ground truth in {gt_dir}: "
                f"{', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}"
            )
        gts = {s: gts[s] for s in wanted}
    if not gts:
        raise DataError(f"{gt_dir}: no ground-truth files ({', '.join(gexts)}) for task {task}")
    missing = sorted(s for s in gts if s not in preds)
    unmatched = sorted(s for s in preds if s not in gts) if imageset is None else []
    if missing and (strict or not empty_ok):
        why = "--strict" if strict else f"an empty {task} prediction is not defined"
        raise DataError(
            f"{pred_dir}: no prediction for {len(missing)} ground-truth images ({why}): "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    if unmatched and strict:
        raise DataError(
            f"{pred_dir}: {len(unmatched)} predictions have no ground truth in {gt_dir} (--strict): "
            f"{', '.join(unmatched[:10])}{' ...' if len(unmatched) > 10 else ''}"
        )
    return [(s, preds.get(s), gts[s]) for s in sorted(gts)], missing, unmatched


def _class_names(gt_dir: Path, given: Sequence[str] | None) -> list[str]:
    if given:
        return list(given)
    synth = files.synth_class_names(gt_dir)
    return synth[1:] if synth else list(VOC_CLASSES)


def score_folders(
    task: str,
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    thresholds: int = 99,
    max_dist: float | None = None,
    nms: bool = False,
    fast: bool = False,
    thin: bool = True,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    imageset: str | Path | None = None,
    strict: bool = False,
    coco: bool = False,
    progress: Callable[[list], Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``pred_dir`` against ``gt_dir`` for ``task``; returns the metric's results plus bookkeeping.

    Args:
        task: one of :data:`SCORE_TASKS`.
        thresholds, max_dist, nms, fast, thin: boundary options (``max_dist`` defaults to 0.0075 for BSDS,
            0.02 for SBD semantic boundaries).
        num_classes: classes of ``semseg`` (default: the synth class list, else 21) / ``parts`` (default 7).
        class_names: detection classes without background (default: synth ``classes.json``, else VOC's 20).
        coco: detection only: add COCO AP@[.5:.95] and AP50 through pycocotools (a cross-check).
        progress: optional wrapper of the image list (e.g. ``tqdm``).
    """
    if task not in SCORE_TASKS:
        raise DataError(f"unknown task {task!r}; valid: {', '.join(SCORE_TASKS)}")
    if coco and task == "detection":
        import importlib.util

        if importlib.util.find_spec("pycocotools") is None:
            raise DataError("the COCO cross-check needs pycocotools: pip install 'ubernet[coco]'")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    pairs, missing, unmatched = _pair(task, pred_dir, gt_dir, Path(imageset) if imageset else None, strict)
    items = progress(pairs) if progress is not None else pairs
    names: list[str] | None = None

    if task == "boundaries":
        from ubernet.metrics.bsds import BoundaryMetric
        from ubernet.metrics.edge_nms import edge_nms

        metric: Any = BoundaryMetric(
            thresholds=thresholds, max_dist=0.0075 if max_dist is None else max_dist, thin=thin, fast=fast
        )
        for _, pp, gp in items:
            gt = files.read_bsds_gt(gp)
            pred = files.read_soft_map(pp) if pp is not None else np.zeros(gt.shape[1:])
            _check_same(pp, gp, pred.shape, gt.shape[1:])
            metric.update(edge_nms(pred) if nms and pp is not None else pred, gt)
    elif task == "saliency":
        from ubernet.metrics.saliency import SaliencyMetric

        metric = SaliencyMetric()
        for _, pp, gp in items:
            gt = files.read_png(gp)
            if gt.ndim != 2:
                raise DataError(f"{gp}: expected a single-channel mask, got shape {gt.shape}")
            pred = files.read_soft_map(pp) if pp is not None else np.zeros(gt.shape)
            _check_same(pp, gp, pred.shape, gt.shape)
            metric.update(pred, gt)
    elif task in ("semseg", "parts"):
        from ubernet.metrics.segmentation import IoUMetric

        synth = files.synth_class_names(gt_dir) if task == "semseg" else None
        n = num_classes or (len(synth) if synth else (21 if task == "semseg" else 7))
        if task == "semseg" and synth and len(synth) == n:
            names = synth
        elif task == "parts" and n == 7:
            from ubernet.data.sample import PART_NAMES

            names = list(PART_NAMES)
        metric = IoUMetric(n, skip_images_without_foreground=task == "parts", class_names=names)
        for _, pp, gp in items:
            gt, pred = files.read_label_map(gp), files.read_label_map(pp)
            _check_same(pp, gp, pred.shape, gt.shape)
            try:
                metric.update(pred, gt)
            except ValueError as e:
                raise DataError(f"{pp} / {gp}: {e} (set --classes)") from None
    elif task == "normals":
        from ubernet.metrics.normals import NormalsMetric

        metric = NormalsMetric()
        for _, pp, gp in items:
            gt, pred = files.read_normals(gp), files.read_normals(pp)
            _check_same(pp, gp, pred.shape, gt.shape)
            metric.update(pred, gt)
    elif task == "detection":
        from ubernet.io.voc_xml import read_voc_xml
        from ubernet.metrics.voc import VOCDetectionMetric, from_continuous

        names = _class_names(gt_dir, class_names)
        metric = VOCDetectionMetric(names)
        for stem, pp, gp in items:
            ann = read_voc_xml(gp, ["__background__", *names])
            if pp is not None:
                boxes, scores, labels = files.read_detections(pp, names)
            else:
                boxes, scores, labels = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
            metric.update(stem, boxes, scores, labels, from_continuous(ann.boxes), ann.labels, ann.difficult)
    else:  # semantic_boundaries
        from ubernet.metrics.edge_nms import edge_nms
        from ubernet.metrics.sbd import SemanticBoundaryMetric

        metric = None
        for _, pp, gp in items:
            gt = files.read_semantic_gt(gp)
            if metric is None:
                synth = files.synth_class_names(gt_dir)
                names = synth[1:] if synth and len(synth) == len(gt) + 1 else None
                metric = SemanticBoundaryMetric(
                    len(gt),
                    thresholds=thresholds,
                    thin=thin,
                    class_names=names,
                    max_dist=0.02 if max_dist is None else max_dist,
                )
            pred = files.read_semantic_pred(pp) if pp is not None else np.zeros(gt.shape)
            _check_same(pp, gp, pred.shape, gt.shape)
            if nms and pp is not None:
                pred = np.stack([edge_nms(p) for p in pred])
            metric.update(pred, gt)
    result = dict(metric.compute())
    if coco and task == "detection":
        from ubernet.metrics.coco import coco_box_ap

        result.update(coco_box_ap(metric))
    result.update(
        task=task,
        pred=str(pred_dir),
        gt=str(gt_dir),
        num_scored=len(pairs),
        missing_predictions=missing,
        unmatched_predictions=unmatched,
    )
    if task in ("boundaries", "semantic_boundaries"):
        result["nms"] = bool(nms)
    return result


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by ``None`` and numpy scalars by Python numbers, recursively (for strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
