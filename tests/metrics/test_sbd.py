"""SBD semantic boundaries: per-class max F / AP, classes absent from the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.sbd import SemanticBoundaryMetric


def test_per_class_and_means() -> None:
    h, w = 20, 30
    gt = np.zeros((3, h, w), bool)
    gt[0, 2:8, 3] = True
    gt[0, 2:8, 10] = True
    gt[1, 12, 5:20] = True  # class 2 perfect; class 3 absent everywhere
    pred = np.zeros((3, h, w))
    pred[0, 2:8, 3] = 0.9
    pred[0, 2:8, 10] = 0.3
    pred[0, 15, 10:22] = 0.3  # class 1: the designed curve of test_bsds (ODS ≈ 0.75, AP 0.3825)
    pred[1, 12, 5:20] = 0.9
    pred[1, 12, 10] = 0.3  # recall 14/15 at t = 0.5, 1 at t = 0.25
    pred[2, 0, 0:5] = 0.9
    m = SemanticBoundaryMetric(3, thresholds=3, max_dist=0.04, class_names=["a", "b", "c"])
    m.update(pred, gt)
    r = m.compute()
    d = 49 / 99
    assert r["per_class_maxf"][0] == pytest.approx(4 / 3 * (1 - d / 2) * (0.5 + d / 2), abs=1e-12)
    assert r["per_class_ap"][0] == pytest.approx(0.3825)
    assert r["per_class_maxf"][1] == pytest.approx(1.0)
    # class 2: R = 1 (t=.25), 14/15 (t=.5, .75), P = 1: interp1 over recall [14/15, 1] -> P = 1 on the 7 grid
    # points 0.94 .. 1.00 -> AP = 0.07
    assert r["per_class_ap"][1] == pytest.approx(0.07)
    assert r["per_class_maxf"][2] is None and r["per_class_ap"][2] is None
    assert r["maxf"] == pytest.approx((r["per_class_maxf"][0] + 1.0) / 2)
    assert r["ap"] == pytest.approx((0.3825 + 0.07) / 2)
    assert r["per_class"]["c"] == {"maxf": None, "ap": None}


def test_default_tolerance_is_sbd() -> None:
    assert SemanticBoundaryMetric(2).max_dist == 0.02
