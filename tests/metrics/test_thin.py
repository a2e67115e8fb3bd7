"""MATLAB bwmorph 'thin' (Guo-Hall two-subiteration thinning): hand-derived shapes and an independent
per-pixel implementation written straight from the published conditions."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.thin import thin


def _conditions(img: np.ndarray, r: int, c: int, first: bool) -> bool:
    """Guo-Hall deletion test for pixel (r, c), written out neighbour by neighbour (no lookup table)."""

    def px(dr: int, dc: int) -> int:
        rr, cc = r + dr, c + dc
        return int(0 <= rr < img.shape[0] and 0 <= cc < img.shape[1] and img[rr, cc])

    x = [None, px(0, 1), px(-1, 1), px(-1, 0), px(-1, -1), px(0, -1), px(1, -1), px(1, 0), px(1, 1)]
    x.append(x[1])
    xh = sum(1 for i in range(1, 5) if x[2 * i - 1] == 0 and (x[2 * i] or x[2 * i + 1]))
    n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
    n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
    if xh != 1 or not 2 <= min(n1, n2) <= 3:
        return False
    if first:
        return not ((x[2] or x[3] or not x[8]) and x[1])
    return not ((x[6] or x[7] or not x[4]) and x[5])


def _thin_slow(bw: np.ndarray) -> np.ndarray:
    img = bw.astype(bool).copy()
    while True:
        before = img.copy()
        for first in (True, False):
            dele = [(r, c) for r, c in zip(*np.nonzero(img)) if _conditions(img, r, c, first)]
            for r, c in dele:
                img[r, c] = False
        if (img == before).all():
            return img


def test_single_pixel_and_one_pixel_line_are_kept() -> None:
    x = np.zeros((5, 7), bool)
    x[2, 3] = True
    assert (thin(x) == x).all()
    x = np.zeros((5, 9), bool)
    x[2, 1:8] = True
    assert (thin(x) == x).all()


def test_3x3_block_thins_to_its_centre() -> None:
    # derived by hand: subiteration 1 removes the top row and the right column, subiteration 2 removes three
    # corners of the remaining 2×2 square, leaving the centre pixel
    x = np.zeros((5, 5), bool)
    x[1:4, 1:4] = True
    expected = np.zeros((5, 5), bool)
    expected[2, 2] = True
    assert (thin(x) == expected).all()


def test_three_pixel_thick_line_becomes_one_pixel_wide() -> None:
    x = np.zeros((7, 14), bool)
    x[2:5, 1:13] = True
    t = thin(x)
    assert (t <= x).all()
    cols = np.flatnonzero(t.any(0))
    assert (t[:, cols].sum(0) == 1).all()  # one pixel per column
    assert t[3, cols].all()  # on the middle row
    assert len(cols) >= 8


def test_ring_keeps_its_hole() -> None:
    x = np.zeros((11, 11), bool)
    x[2:9, 2:9] = True
    x[4:7, 4:7] = False
    t = thin(x)
    assert t.sum() > 0 and not t[4:7, 4:7].any()
    # the centre is still enclosed: a flood fill from the border cannot reach it
    from scipy import ndimage

    outside, _ = ndimage.label(~t)
    assert outside[5, 5] != outside[0, 0]


@pytest.mark.parametrize("seed", range(6))
def test_matches_per_pixel_definition_on_random_shapes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    x = ndimage.gaussian_filter(rng.random((24, 30)), 1.5)
    bw = x > np.quantile(x, rng.uniform(0.3, 0.7))
    assert (thin(bw) == _thin_slow(bw)).all()


def test_idempotent_and_max_iter() -> None:
    x = np.zeros((9, 9), bool)
    x[1:8, 1:8] = True
    t = thin(x)
    assert (thin(t) == t).all()
    one = thin(x, max_iter=1)
    assert t.sum() < one.sum() < x.sum()


def test_agrees_with_scikit_image_when_installed() -> None:
    """Cross-check with scikit-image's ``thin`` (documented to reproduce MATLAB's), when it is installed."""
    skm = pytest.importorskip("skimage.morphology")
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for _ in range(20):
        x = ndimage.gaussian_filter(rng.random((40, 50)), rng.uniform(0.5, 3))
        bw = x > np.quantile(x, rng.uniform(0.2, 0.8))
        assert (thin(bw) == skm.thin(bw)).all()
