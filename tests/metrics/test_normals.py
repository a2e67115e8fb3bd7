"""Pooled angular errors with invalid pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ubernet.metrics.normals import NormalsMetric


def test_pooled_statistics_by_hand() -> None:
    m = NormalsMetric()
    gt = np.array([[[0, 0, 1], [0, 0, 1], [0, 0, 0]]], float)  # third pixel invalid
    pred = np.array([[[0, 0, 1], [1, 0, 1], [1, 0, 0]]], float)  # 0°, 45°, (ignored)
    m.update(pred, gt)
    r = m.compute()
    assert r["num_pixels"] == 2
    assert r["mean"] == pytest.approx(22.5) and r["median"] == pytest.approx(22.5)
    assert r["rmse"] == pytest.approx(math.sqrt(45**2 / 2))
    assert r["within_11.25"] == pytest.approx(50) and r["within_22.5"] == pytest.approx(50)
    assert r["within_30"] == pytest.approx(50)
    # second image: 90° against an unnormalised ground truth
    m.update(np.array([[[1.0, 0, 0]]]), np.array([[[0, 0, 2.0]]]))
    r = m.compute()
    # pooled over [0, 45, 90]: the median is 45 (per-image medians 22.5 and 90 would average 56.25)
    assert r["mean"] == pytest.approx(45) and r["median"] == pytest.approx(45, abs=1e-5)
    assert r["rmse"] == pytest.approx(math.sqrt((45**2 + 90**2) / 3))
    assert r["within_30"] == pytest.approx(100 / 3)


def test_explicit_valid_mask_and_empty() -> None:
    m = NormalsMetric()
    assert math.isnan(m.compute()["mean"])
    gt = np.array([[[0, 0, 1], [0, 0, 1]]], float)
    pred = np.array([[[0, 0, -1], [0, 0, 1]]], float)
    m.update(pred, gt, valid=np.array([[False, True]]))
    assert m.compute()["mean"] == 0.0
    m.update(pred, gt)
    assert m.compute()["median"] == pytest.approx(0.0) and m.compute()["mean"] == pytest.approx(60.0)
