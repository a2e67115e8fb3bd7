"""Edge NMS: a blurred line is reduced to its crest; the border is faded."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics.edge_nms import conv_tri, edge_nms, edge_orientation


def test_conv_tri_kernel_and_constant_image() -> None:
    img = np.zeros((9, 9))
    img[4, 4] = 1.0
    out = conv_tri(img, 1)  # kernel [1 2 1]/4 in each direction
    assert out[4, 4] == pytest.approx(0.25) and out[4, 3] == pytest.approx(0.125) and out[3, 3] == pytest.approx(1 / 16)
    assert np.allclose(conv_tri(np.full((6, 7), 2.0), 4), 2.0)


def test_vertical_ridge_is_thinned_to_its_crest() -> None:
    h, w = 30, 31
    x = np.arange(w)
    prob = np.tile(np.exp(-((x - 15) ** 2) / 8.0), (h, 1))  # a soft vertical boundary at column 15
    out = edge_nms(prob)
    rows = slice(6, h - 6)  # away from the faded border
    assert (out[rows, 15] == prob[rows, 15]).all()
    assert (out[rows, :15] == 0).all() and (out[rows, 16:] == 0).all()
    # orientation of a vertical edge: the normal is horizontal (0 or pi)
    o = edge_orientation(prob)[rows, 10:20]
    assert np.allclose(np.minimum(o, np.pi - o), 0.0, atol=1e-6)


def test_horizontal_ridge_and_border_fade() -> None:
    h, w = 31, 40
    y = np.arange(h)[:, None]
    prob = np.tile(np.exp(-((y - 15) ** 2) / 8.0), (1, w))
    out = edge_nms(prob, border=5)
    assert out[15, 20] == pytest.approx(prob[15, 20])
    assert out[14, 20] == 0 and out[16, 20] == 0
    # columns 0..4 scaled by 0/5 .. 4/5, mirrored on the right
    assert out[15, 0] == 0 and out[15, 2] == pytest.approx(prob[15, 2] * 2 / 5)
    assert out[15, w - 2] == pytest.approx(prob[15, w - 2] * 1 / 5)
