"""Dataset-pooled IoU with ignored pixels, absent classes and skipped images."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.segmentation import IoUMetric

GT = np.array([[0, 0, 1], [1, 255, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])


def test_iou_by_hand() -> None:
    m = IoUMetric(3)
    m.update(PRED, GT)
    r = m.compute()
    # valid pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is ignored
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: FN 1 -> 0
    assert r["per_class"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert r["miou"] == pytest.approx(1 / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)


def test_absent_class_is_none_and_left_out() -> None:
    m = IoUMetric(4)
    m.update(PRED, GT)
    r = m.compute()
    assert r["per_class"][3] is None
    assert r["miou"] == pytest.approx(1 / 3)


def test_pooled_not_averaged_per_image() -> None:
    m = IoUMetric(2)
    m.update(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 0]]))  # class 1: 3/4, class 0: 0/1
    m.update(np.array([[0]]), np.array([[0]]))  # class 0: 1/1
    r = m.compute()
    # pooled: class 0 TP 1, FP 0, FN 1 -> 1/2; class 1 TP 3, FP 1 -> 3/4
    assert r["per_class"] == pytest.approx([0.5, 0.75])


def test_skip_images_without_foreground() -> None:
    m = IoUMetric(3, skip_images_without_foreground=True)
    m.update(np.ones((2, 2), int), np.zeros((2, 2), int))  # no person: skipped
    m.update(PRED, GT)
    r = m.compute()
    assert r["num_skipped"] == 1 and r["num_images"] == 1
    assert r["miou"] == pytest.approx(1 / 3)


def test_bad_ids_raise() -> None:
    m = IoUMetric(3)
    with pytest.raises(ValueError, match="prediction"):
        m.update(np.array([[5]]), np.array([[0]]))
    with pytest.raises(ValueError, match="ground truth"):
        m.update(np.array([[0]]), np.array([[7]]))
