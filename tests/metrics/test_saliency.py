"""Saliency max F (beta² = 0.3) and MAE on 3×3 maps computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.saliency import SaliencyMetric, binarize_mask

PRED = np.array([[0.2, 0.4, 0.8], [0.0, 0.0, 0.0], [0.0, 0.0, 0.4]])  # / max -> .25 .5 1 ... .5
GT = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]], bool)


def test_maxf_and_mae_by_hand() -> None:
    m = SaliencyMetric()
    m.update(PRED, GT)
    r = m.compute()
    # t in (0.5, 1]: {1.0} -> P = 1, R = 1/2 -> F = 1.3·0.5/(0.3 + 0.5) = 0.8125
    # t in (0.25, 0.5]: {1, .5, .5} -> P = 2/3, R = 1 -> F = 1.3·(2/3)/(0.2 + 1) = 0.7222
    assert r["maxf"] == pytest.approx(0.8125)
    # |s - g| = .25, .5, 0, 0, 0, 0, 0, 0, .5 -> 1.25 / 9
    assert r["mae"] == pytest.approx(1.25 / 9)
    p = dict(zip(r["thresholds"], r["precision"]))
    assert p[1.0] == 1.0 and p[0.0] == pytest.approx(2 / 9)


def test_all_zero_map_left_out_of_pr_but_not_mae() -> None:
    m = SaliencyMetric()
    m.update(PRED, GT)
    m.update(np.zeros((3, 3)), GT)
    r = m.compute()
    assert r["maxf"] == pytest.approx(0.8125)
    assert r["mae"] == pytest.approx((1.25 / 9 + 2 / 9) / 2)
    assert r["num_images"] == 2 and r["num_images_pr"] == 1


def test_precision_recall_averaged_over_images() -> None:
    m = SaliencyMetric()
    m.update(PRED, GT)
    # second image: perfect map -> P = R = 1 at every threshold above 0
    m.update(GT.astype(float), GT)
    r = m.compute()
    # at t in (0.5, 1]: mean P = (1 + 1)/2, mean R = (0.5 + 1)/2 -> F = 1.3·1·0.75/(0.3·1 + 0.75) = 0.9286
    # at t in (0.25, 0.5]: P = (2/3 + 1)/2 = 5/6, R = 1 -> F = 1.3·(5/6)/(0.25 + 1) = 0.8667
    assert r["maxf"] == pytest.approx(1.3 * 0.75 / (0.3 + 0.75))


def test_uint8_inputs_and_ignore() -> None:
    m = SaliencyMetric()
    m.update((PRED * 255).round().astype(np.uint8), (GT * 255).astype(np.uint8))
    assert m.compute()["maxf"] == pytest.approx(0.8125, abs=1e-3)
    assert binarize_mask(np.array([0, 20, 30, 255], np.uint8)).tolist() == [False, False, True, True]
    assert binarize_mask(np.array([0, 1], np.uint8)).tolist() == [False, True]
    m = SaliencyMetric(ignore_index=255)
    gt = GT.astype(np.uint8)
    gt[2, 2] = 255  # the 0.5 false positive is ignored
    m.update(PRED, gt)
    r = m.compute()
    # t in (0.25, 0.5]: {1, .5} -> P = R = 1
    assert r["maxf"] == pytest.approx(1.0)
    assert r["mae"] == pytest.approx(0.75 / 8)
