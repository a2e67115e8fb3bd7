"""BSDS boundary benchmark: counts, ODS interpolation, OIS and AP on tiny hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.bsds import BoundaryMetric, average_precision, evaluate_boundaries, thresholds_for

H, W = 20, 30
FRAC = 0.04  # 0.04 × diagonal (36.06 px) = 1.44 px: a 1-px (or diagonal) shift matches, a 2-px shift does not


def _vline(col: int, rows: range = range(2, 8)) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[list(rows), col] = True
    return m


def test_thresholds() -> None:
    assert thresholds_for(3).tolist() == [0.25, 0.5, 0.75]
    assert len(thresholds_for(99)) == 99 and thresholds_for(99)[0] == pytest.approx(0.01)


def test_one_pixel_shift_inside_two_pixel_shift_outside() -> None:
    gt = _vline(4)[None]
    inside = evaluate_boundaries(_vline(5) * 0.8, gt, thresholds=3, max_dist=FRAC)
    assert inside.tolist() == [[6, 6, 6, 6]] * 3
    outside = evaluate_boundaries(_vline(6) * 0.8, gt, thresholds=3, max_dist=FRAC)
    assert outside.tolist() == [[0, 6, 0, 6]] * 3


def test_pred_at_threshold_is_on_and_below_is_off() -> None:
    pred = _vline(4) * 0.5
    c = evaluate_boundaries(pred, _vline(4)[None], thresholds=3, max_dist=FRAC)
    assert c[:, 3].tolist() == [6, 6, 0]  # >= 0.25, >= 0.5, not >= 0.75


def test_several_annotators_recall_over_all_precision_against_any() -> None:
    gts = np.stack([_vline(3), _vline(4), _vline(15)])  # A exact, B one px away, C far
    c = evaluate_boundaries(_vline(3) * 0.9, gts, thresholds=1, max_dist=FRAC)
    # recall: 6 (A) + 6 (B) + 0 (C) of 18; precision: all 6 predicted pixels match some annotator
    assert c.tolist() == [[12, 18, 6, 6]]


def test_one_to_one_matching_limits_counts() -> None:
    gt = np.zeros((H, W), bool)
    gt[5, 5] = True
    pred = np.zeros((H, W))
    pred[5, 4] = pred[5, 6] = 0.9  # two predictions, one true pixel between them
    c = evaluate_boundaries(pred, gt[None], thresholds=1, max_dist=FRAC)
    assert c.tolist() == [[1, 1, 1, 2]]


def test_thinning_applies_to_predictions() -> None:
    pred = np.zeros((H, W))
    pred[4:7, 4:7] = 0.9  # a 3×3 blob thins to its centre (6, 5)... (5, 5)
    gt = np.zeros((H, W), bool)
    gt[5, 5] = True
    assert evaluate_boundaries(pred, gt[None], thresholds=1, max_dist=FRAC).tolist() == [[1, 1, 1, 1]]
    assert evaluate_boundaries(pred, gt[None], thresholds=1, max_dist=FRAC, thin=False).tolist() == [[1, 1, 1, 9]]


def test_empty_prediction_and_empty_ground_truth() -> None:
    gt = _vline(4)[None]
    m = BoundaryMetric(thresholds=3, max_dist=FRAC)
    m.update(np.zeros((H, W)), gt)
    assert m.per_image[0].tolist() == [[0, 6, 0, 0]] * 3
    r = m.compute()
    assert r["ods"] == 0 and r["ois"] == 0 and r["ap"] == 0
    m.reset()
    m.update(_vline(4) * 0.9, np.zeros((1, H, W), bool))
    assert m.per_image[0].tolist() == [[0, 0, 0, 6]] * 3
    assert m.compute()["ods"] == 0


def _curve_case() -> BoundaryMetric:
    """GT: two 6-px lines. Pred: line 1 at 0.9, line 2 at 0.3, a 12-px false line at 0.3.

    t = 0.25: R = 12/12, P = 12/24; t = 0.5 and 0.75: R = 6/12, P = 6/6.
    """
    gt = (_vline(3) | _vline(10))[None]
    pred = _vline(3) * 0.9 + _vline(10) * 0.3
    pred[15, 10:22] = 0.3
    m = BoundaryMetric(thresholds=3, max_dist=FRAC)
    m.update(pred, gt)
    return m


def test_counts_of_designed_curve() -> None:
    m = _curve_case()
    assert m.per_image[0].tolist() == [[12, 12, 12, 24], [6, 12, 6, 6], [6, 12, 6, 6]]


def test_ods_interpolates_between_thresholds() -> None:
    r = _curve_case().compute()
    # all three thresholds have F = 2/3; between t=0.25 (R=1, P=1/2) and t=0.5 (R=1/2, P=1) the benchmark tries
    # d = k/99: R = 1 - d/2, P = 1/2 + d/2, F = 2RP/(R+P) = (4/3)(1 - d/2)(1/2 + d/2), largest at d = 49/99
    d = 49 / 99
    assert r["ods"] == pytest.approx(4 / 3 * (1 - d / 2) * (0.5 + d / 2), abs=1e-12)
    assert r["ods"] == pytest.approx(4 / 3 * 149 * 148 / 198**2, abs=1e-12)
    # d = 49/99 and 50/99 tie in exact arithmetic (the curve is symmetric); rounding picks either
    assert min(abs(r["ods_threshold"] - (0.5 * e + 0.25 * (1 - e))) for e in (49 / 99, 50 / 99)) < 1e-12
    # OIS: the image's F is 2/3 at every threshold; the first one is taken
    assert r["ois"] == pytest.approx(2 / 3)
    assert r["ois_recall"] == 1.0 and r["ois_precision"] == 0.5


def test_ap_samples_recall_grid() -> None:
    r = _curve_case().compute()
    # unique recalls 0.5 (P = 1, first occurrence) and 1 (P = 0.5): P = 1.5 - R on [0.5, 1], 0 below 0.5.
    # sum over R = 0.50, 0.51, ..., 1.00 of (1.5 - R) = 51 × 1.5 - 38.25 = 38.25, times 0.01
    assert r["ap"] == pytest.approx(0.3825, abs=1e-12)


def test_average_precision_single_recall_is_zero() -> None:
    assert average_precision(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_dataset_pooling_and_ois_differ() -> None:
    m = BoundaryMetric(thresholds=3, max_dist=FRAC)
    gt = _vline(4)[None]
    m.update(_vline(4) * 0.3, gt)  # perfect only at t = 0.25
    m.update(_vline(4) * 0.9, gt)  # perfect at all thresholds
    r = m.compute()
    # dataset: t=0.25 -> R = 12/12, P = 1; OIS: both images at their best (t=0.25) -> 1
    assert r["ods"] == pytest.approx(1.0) and r["ois"] == pytest.approx(1.0)
    assert r["recall"] == pytest.approx([1.0, 0.5, 0.5])
    assert r["mode"] == "exact" and r["num_images"] == 2


def test_fast_mode_is_labelled_and_close_on_simple_case() -> None:
    m = BoundaryMetric(thresholds=3, max_dist=FRAC, fast=True)
    m.update(_vline(5) * 0.8, _vline(4)[None])
    r = m.compute()
    assert r["mode"] == "fast (approximate)" and r["ods"] == pytest.approx(1.0)


def test_real_size_image_runs() -> None:
    rng = np.random.default_rng(0)
    from scipy import ndimage

    gts = np.zeros((2, 60, 80), bool)
    gts[0, 20, 5:75] = True
    gts[1, 21, 5:75] = True
    gts[0, 5:55, 40] = True
    pred = ndimage.gaussian_filter(gts[0].astype(float), 1.0)
    pred = np.clip(pred / pred.max() + 0.05 * rng.standard_normal(pred.shape), 0, 1)
    c = evaluate_boundaries(pred, gts, thresholds=9)
    assert c.shape == (9, 4)
    assert (c[:, 0] <= c[:, 1]).all() and (c[:, 2] <= c[:, 3]).all()
    assert (c[:, 1] == gts.sum()).all() and c[0, 3] > c[-1, 3]


def test_reuse_across_thresholds_changes_nothing() -> None:
    """Counts of a 99-threshold run (graph built once, components cached) equal independent one-threshold runs."""
    from scipy import ndimage

    from ubernet.metrics.edge_nms import edge_nms

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:70, :90]
    gts = np.stack([np.abs(np.hypot(yy - 35, xx - 45) - r) < 0.5 for r in (20, 21, 19.5)])
    gts[1, 10, 5:85] = True
    soft = ndimage.gaussian_filter(gts.mean(0), 1.2) + 0.15 * ndimage.gaussian_filter(rng.random((70, 90)), 1)
    pred = np.round(edge_nms(soft / soft.max()) * 255) / 255
    thr = thresholds_for(99)[::4]
    full = evaluate_boundaries(pred, gts, thresholds=thr)
    single = np.concatenate([evaluate_boundaries(pred, gts, thresholds=[t]) for t in thr])
    assert (full == single).all()
    assert full[0, 0] > 0 and full[0, 3] > full[-1, 3]
