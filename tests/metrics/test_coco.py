"""Optional COCO cross-check (skipped without pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.voc import VOCDetectionMetric


def test_half_the_objects_found() -> None:
    pytest.importorskip("pycocotools")
    from ubernet.metrics.coco import coco_box_ap

    m = VOCDetectionMetric(["a"])
    gt = np.array([[1, 1, 20, 20], [41, 41, 60, 60]], float)
    m.update("x", gt[:1], np.array([0.9]), np.array([1]), gt, np.array([1, 1]))
    r = coco_box_ap(m)
    # recall 0.5 at precision 1 at every IoU threshold: COCO's 101 recall points 0, 0.01, ..., 0.5 -> 51/101
    assert r["coco_ap"] == pytest.approx(51 / 101) and r["coco_ap50"] == pytest.approx(51 / 101)
    assert m.compute()["ap_voc10"]["a"] == pytest.approx(0.5)
