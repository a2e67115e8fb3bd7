"""Anchor grid values and the box coder, against hand-derived numbers."""

from __future__ import annotations

import math

import pytest
import torch

from ubernet.detection import AnchorGenerator, BoxCoder


def test_anchor_grid_values_by_hand() -> None:
    # sizes (8, 16), ratios h/w in (0.25, 1, 4): ratio 0.25 -> w = s/0.5 = 2s, h = s/2; ratio 4 -> w = s/2, h = 2s.
    gen = AnchorGenerator(sizes=(8, 16), aspect_ratios=(0.25, 1.0, 4.0), stride=8)
    assert gen.num_anchors == 6
    anchors = gen.grid_anchors((2, 3))
    assert anchors.shape == (2 * 3 * 6, 4)
    # cell (row 0, col 0): centre (4, 4); size-major order within the cell
    expected_cell00 = torch.tensor(
        [
            [-4.0, 2.0, 12.0, 6.0],  # s=8, r=.25: w=16, h=4
            [0.0, 0.0, 8.0, 8.0],  # s=8, r=1
            [2.0, -4.0, 6.0, 12.0],  # s=8, r=4: w=4, h=16
            [-12.0, 0.0, 20.0, 8.0],  # s=16, r=.25: w=32, h=8
            [-4.0, -4.0, 12.0, 12.0],  # s=16, r=1
            [0.0, -12.0, 8.0, 20.0],  # s=16, r=4: w=8, h=32
        ]
    )
    torch.testing.assert_close(anchors[:6], expected_cell00)
    # cell (row 1, col 2) is the last: centre (2.5·8, 1.5·8) = (20, 12)
    torch.testing.assert_close(anchors[-2], torch.tensor([12.0, 4.0, 28.0, 20.0]))
    # cell (row 0, col 1) follows cell (0, 0): cell-major, row-major
    torch.testing.assert_close(anchors[6 + 1], torch.tensor([8.0, 0.0, 16.0, 8.0]))


def test_default_anchors_keep_area_and_ratio() -> None:
    gen = AnchorGenerator()  # (128, 256, 512) x (0.5, 1, 2), stride 16
    cell = gen.cell_anchors(torch.float64)
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    # ratio 0.5 at size 128: w = 128·sqrt(2) = 181.019..., h = 128/sqrt(2) = 90.509...
    assert w[0].item() == pytest.approx(128 * math.sqrt(2))
    assert h[0].item() == pytest.approx(128 / math.sqrt(2))
    torch.testing.assert_close(
        w * h, torch.tensor([128.0**2] * 3 + [256.0**2] * 3 + [512.0**2] * 3, dtype=torch.float64)
    )
    torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0] * 3, dtype=torch.float64))
    anchors = gen(torch.zeros(1, 1, 3, 4))
    assert anchors.shape == (3 * 4 * 9, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres[0], torch.tensor([8.0, 8.0]))  # offset 0.5 x stride 16


def test_box_coder_encode_by_hand() -> None:
    ref = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # centre (8, 8), size 16
    gt = torch.tensor([[2.0, 4.0, 34.0, 12.0]])  # centre (18, 8), size 32 x 8
    d = BoxCoder().encode(ref, gt)
    torch.testing.assert_close(d, torch.tensor([[10 / 16, 0.0, math.log(2.0), math.log(0.5)]]))
    d = BoxCoder((10, 10, 5, 5)).encode(ref, gt)
    torch.testing.assert_close(d, torch.tensor([[6.25, 0.0, 5 * math.log(2.0), 5 * math.log(0.5)]]))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_round_trip(weights: tuple[float, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=gen, dtype=torch.float64) * 500
    ref = torch.cat((xy, xy + 10 + torch.rand(500, 2, generator=gen, dtype=torch.float64) * 290), 1)
    xy = torch.rand(500, 2, generator=gen, dtype=torch.float64) * 500
    gt = torch.cat((xy, xy + 10 + torch.rand(500, 2, generator=gen, dtype=torch.float64) * 290), 1)
    coder = BoxCoder(weights)  # sizes 10..300: ratios stay below the exp clamp's 1000/16
    torch.testing.assert_close(coder.decode(coder.encode(ref, gt), ref), gt, rtol=0, atol=1e-9)
    # float32 too, to float32 tolerance
    torch.testing.assert_close(
        coder.decode(coder.encode(ref.float(), gt.float()), ref.float()), gt.float(), atol=1e-3, rtol=1e-5
    )


def test_box_coder_multi_class_layout_and_clamp() -> None:
    coder = BoxCoder()
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # two sets of deltas: identity, and a huge dw that must be clamped at log(1000/16)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0]])
    out = coder.decode(deltas, ref)
    assert out.shape == (1, 8)
    torch.testing.assert_close(out[0, :4], ref[0])
    w = 10 * 1000 / 16  # exp(log(1000/16)) · 10
    torch.testing.assert_close(out[0, 4:], torch.tensor([5 - w / 2, 0.0, 5 + w / 2, 10.0]))
