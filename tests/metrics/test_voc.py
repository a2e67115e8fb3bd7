"""VOC detection AP: difficult boxes, duplicates, missing classes, inclusive boxes, 11-point vs area AP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ubernet.metrics.voc import VOCDetectionMetric, box_iou_voc, from_continuous, voc07_ap, voc10_ap


def _box(x: float, y: float) -> list[float]:
    return [x, y, x + 9, y + 9]  # 10×10 inclusive


def test_designed_curve_11_point_vs_area() -> None:
    # four positives; detections by score: TP, FP, TP, FP, TP
    gts = [_box(1, 1), _box(21, 1), _box(41, 1), _box(61, 1)]
    dets = [_box(1, 1), _box(100, 100), _box(21, 1), _box(120, 120), _box(41, 1)]
    m = VOCDetectionMetric(["a"])
    m.update(
        "im",
        np.array(dets),
        np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
        np.ones(5, int),
        np.array(gts),
        np.ones(4, int),
        np.zeros(4, bool),
    )
    r = m.compute()
    # rec = .25 .25 .5 .5 .75; prec = 1 .5 2/3 .5 .6
    # area: .25·1 + .25·(2/3) + .25·0.6 = 17/30
    assert r["ap_voc10"]["a"] == pytest.approx(17 / 30)
    # 11-point: t = 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> .6; .8, .9, 1 -> 0
    assert r["ap_voc07"]["a"] == pytest.approx((3 + 2 + 1.2) / 11)
    assert r["map_voc07"] == pytest.approx((3 + 2 + 1.2) / 11)


def test_ap_functions_directly() -> None:
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc10_ap(rec, prec) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert voc07_ap(rec, prec) == pytest.approx((6 * 1 + 5 * 0.5) / 11)


def test_difficult_duplicate_and_missing_classes() -> None:
    m = VOCDetectionMetric(["a", "b", "c"])
    gt_boxes = np.array([_box(1, 1), _box(31, 1), _box(61, 1)])
    gt_labels = np.array([1, 1, 2])
    difficult = np.array([False, True, False])
    dets = np.array([_box(1, 1), _box(1, 1), _box(31, 1)])  # TP, duplicate (FP), on the difficult box (ignored)
    m.update("x", dets, np.array([0.9, 0.8, 0.95]), np.array([1, 1, 1]), gt_boxes, gt_labels, difficult)
    r = m.compute()
    # class a: 1 positive; sorted: difficult (skipped), TP, FP -> rec 1 1, prec 1 .5 -> AP 1
    assert r["ap_voc10"]["a"] == pytest.approx(1.0) and r["ap_voc07"]["a"] == pytest.approx(1.0)
    assert r["num_positives"]["a"] == 1
    assert r["ap_voc10"]["b"] == 0.0  # positives but no detections
    assert r["ap_voc10"]["c"] is None  # no positives at all: left out
    assert r["map_voc10"] == pytest.approx(0.5)


def test_duplicate_before_true_positive_costs_precision() -> None:
    m = VOCDetectionMetric(["a"])
    m.update(
        "x",
        np.array([_box(1, 1), _box(2, 1)]),
        np.array([0.9, 0.8]),
        np.array([1, 1]),
        np.array([_box(1, 1)]),
        np.array([1]),
    )
    r = m.compute()
    assert r["ap_voc10"]["a"] == pytest.approx(1.0)  # TP first, then the duplicate
    m.reset()
    m.update(
        "x",
        np.array([_box(1, 1), _box(2, 1)]),
        np.array([0.8, 0.9]),
        np.array([1, 1]),
        np.array([_box(1, 1)]),
        np.array([1]),
    )
    # the shifted box (IoU 90/110 > .5) comes first and claims the object; the exact box is a duplicate
    assert m.compute()["ap_voc10"]["a"] == pytest.approx(1.0)


def test_inclusive_pixel_convention_and_strict_threshold() -> None:
    gt = np.array([[1, 1, 2, 2]], float)  # 2×2 pixels inclusive
    # inclusive: det 3×2, inter 2×2 = 4, union 4 + 6 - 4 = 6 -> 2/3 (exclusive widths would give 1/2)
    assert box_iou_voc(np.array([1, 1, 3, 2.0]), gt)[0] == pytest.approx(2 / 3)
    # exactly 0.5 is not enough
    assert box_iou_voc(np.array([1, 1, 2, 1.0]), gt)[0] == pytest.approx(0.5)
    m = VOCDetectionMetric(["a"])
    m.update("x", np.array([[1, 1, 2, 1.0]]), np.array([1.0]), np.array([1]), gt, np.array([1]))
    assert m.compute()["ap_voc10"]["a"] == 0.0
    assert from_continuous(np.array([[3, 4, 8, 9]])).tolist() == [[4, 5, 8, 9]]


def test_detection_in_image_without_ground_truth_is_false_positive() -> None:
    m = VOCDetectionMetric(["a"])
    m.update("gt", np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), np.array([_box(1, 1)]), np.array([1]))
    m.update("other", np.array([_box(1, 1)]), np.array([0.9]), np.array([1]), np.zeros((0, 4)), np.zeros(0, int))
    r = m.compute()
    assert r["ap_voc10"]["a"] == 0.0 and not math.isnan(r["map_voc07"])
