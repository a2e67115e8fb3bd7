"""Exact boundary-pixel correspondence against hand cases and a brute-force assignment with outlier nodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from ubernet.metrics.correspond import correspond_pixels, match_edges, outlier_weight


def _brute(a: np.ndarray, b: np.ndarray, md: float) -> tuple[int, int]:
    """Dense reference: the BSDS graph with *all* outlier connections, solved by linear_sum_assignment.

    Left = map-1 pixels + map-2 outliers, right = map-2 pixels + map-1 outliers; pairs within md cost
    rint(100 d), every outlier connection costs ow. Returns (#real pairs, total cost).
    """
    pa, pb = np.argwhere(a), np.argwhere(b)
    n1, n2 = len(pa), len(pb)
    ow = outlier_weight(md)
    big = 10**12
    c = np.full((n1 + n2, n2 + n1), ow, np.int64)
    if n1 and n2:
        d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
        c[:n1, :n2] = np.where(d <= md, np.rint(d * 100), big)
    else:
        c[:n1, :n2] = big
    r, k = linear_sum_assignment(c)
    return int(((r < n1) & (k < n2)).sum()), int(c[r, k].sum())


def test_shift_inside_and_outside_tolerance() -> None:
    a = np.zeros((9, 9), bool)
    b = np.zeros((9, 9), bool)
    a[4, 4] = True
    b[4, 5] = True  # 1 px away
    mp, mg, cost = correspond_pixels(a, b, max_dist=1.5)
    assert mp.sum() == mg.sum() == 1 and cost == pytest.approx(1.0)
    b[:] = False
    b[4, 6] = True  # 2 px away > 1.5
    mp, mg, cost = correspond_pixels(a, b, max_dist=1.5)
    assert mp.sum() == mg.sum() == 0
    assert cost == pytest.approx(2 * 100 * 1.5)  # two unmatched pixels at 100 × maxDist each
    b[:] = False
    b[5, 5] = True  # diagonal: exactly sqrt(2), inside a tolerance of sqrt(2)
    assert correspond_pixels(a, b, max_dist=math.sqrt(2))[0].sum() == 1


def test_one_to_one() -> None:
    a = np.zeros((5, 5), bool)
    b = np.zeros((5, 5), bool)
    a[2, 1] = a[2, 3] = True
    b[2, 2] = True
    mp, mg, cost = correspond_pixels(a, b, max_dist=1.0)
    assert mp.sum() == 1 and mg.sum() == 1
    assert cost == pytest.approx(1.0 + 100.0)  # one pair at distance 1, one outlier at 100 × 1


def test_prefers_more_pairs_then_shorter_ones() -> None:
    # a0 can reach b0 (d=0) and b1 (d=1); a1 reaches only b0 (d=1): the optimum pairs a0-b1 and a1-b0
    a = np.zeros((3, 6), bool)
    b = np.zeros((3, 6), bool)
    a[1, 2] = a[1, 1] = True
    b[1, 2] = b[1, 3] = True
    mp, mg, _ = correspond_pixels(a, b, max_dist=1.0)
    assert mp.sum() == 2 and mg.sum() == 2
    # and among equal counts the cheaper: a at col 2 has b at col 2 (d=0) and col 4 (d=2); single pair -> d=0
    a[:] = False
    b[:] = False
    a[1, 2] = True
    b[1, 2] = b[1, 4] = True
    mp, mg, cost = correspond_pixels(a, b, max_dist=2.0)
    assert mg[1, 2] and not mg[1, 4] and cost == pytest.approx(200.0)


@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force_assignment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        a = rng.random((9, 11)) < rng.uniform(0.05, 0.5)
        b = rng.random((9, 11)) < rng.uniform(0.05, 0.5)
        md = float(rng.uniform(0.9, 3.0))
        pa, pb = np.argwhere(a), np.argwhere(b)
        d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)) if len(pa) and len(pb) else np.zeros((len(pa), len(pb)))
        ii, jj = np.nonzero(d <= md)
        w = np.rint(d[ii, jj] * 100).astype(np.int64)
        ow = outlier_weight(md)
        mi, mj = match_edges(ii, jj, w, len(pa), len(pb), ow)
        n, cost = _brute(a, b, md)
        assert len(mi) == n
        assert len(set(mi.tolist())) == len(mi) and len(set(mj.tolist())) == len(mj)
        assert (d[mi, mj] <= md).all()
        # the reference objective: pair costs + one outlier connection per unmatched node and per pair
        mine = int(np.rint(d[mi, mj] * 100).sum()) + ow * (len(pa) + len(pb) - len(mi))
        assert mine == cost
        # the counting mode matches exactly the same pixels of map 1
        mi2, _ = match_edges(ii, jj, w, len(pa), len(pb), ow, exact_pairs=False, cache={})
        assert sorted(mi2.tolist()) == sorted(mi.tolist())
        mp, mg, _ = correspond_pixels(a, b, md)
        assert mp.sum() == mg.sum() == n


def test_empty_maps() -> None:
    z = np.zeros((4, 4), bool)
    one = z.copy()
    one[1, 1] = True
    for a, b in ((z, z), (one, z), (z, one)):
        mp, mg, cost = correspond_pixels(a, b, 1.0)
        assert mp.sum() == mg.sum() == 0
        assert cost == pytest.approx(100.0 * (a.sum() + b.sum()))
