"""RoIPool: hand-derived bins, the rounding rule, empty bins, a literal reference, gradients, torchvision."""

from __future__ import annotations

import math

import pytest
import torch

from ubernet import ops
from ubernet.ops import roi_pool_torch


def reference_roi_pool(feat, rois, out, scale):
    """Literal transcription of Fast R-CNN's RoIPool as documented for torchvision (loops; tiny inputs)."""
    oh, ow = out
    _, ch, h, w = feat.shape

    def c_round(v: float) -> int:
        return int(math.copysign(math.floor(abs(v) + 0.5), v))

    res = torch.zeros(len(rois), ch, oh, ow, dtype=feat.dtype)
    for r, (bi, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy, ex, ey = (c_round(v * scale) for v in (x1, y1, x2, y2))
        rw, rh = max(ex - sx + 1, 1), max(ey - sy + 1, 1)
        for ph in range(oh):
            hs = min(max(math.floor(ph * rh / oh) + sy, 0), h)
            he = min(max(math.ceil((ph + 1) * rh / oh) + sy, 0), h)
            for pw in range(ow):
                ws = min(max(math.floor(pw * rw / ow) + sx, 0), w)
                we = min(max(math.ceil((pw + 1) * rw / ow) + sx, 0), w)
                if he <= hs or we <= ws:
                    continue
                res[r, :, ph, pw] = feat[int(bi), :, hs:he, ws:we].amax(dim=(1, 2))
    return res


def test_hand_derived_bins() -> None:
    feat = torch.arange(36.0).view(1, 1, 6, 6)  # cell (i, j) = 6 i + j
    # RoI (0, 0, 3, 3) at scale 1: start 0, end 3 inclusive -> 4 cells, 2 bins of 2 -> maxima at (1,1), (1,3),
    # (3,1), (3,3) = 7, 9, 19, 21
    out = roi_pool_torch(feat, torch.tensor([[0.0, 0, 0, 3, 3]]), 2, 1.0)
    assert out[0, 0].tolist() == [[7.0, 9.0], [19.0, 21.0]]
    # 3 cells into 2 bins: bin size 1.5 -> bin 0 = cells [0, 2), bin 1 = [1, 3) (they overlap).
    # RoI (2, 2, 4, 4): rows/cols 2..4 -> row bins {2,3}, {3,4}, column bins the same; each max sits at the
    # bin's bottom-right cell: (3,3) = 21, (3,4) = 22, (4,3) = 27, (4,4) = 28
    out = roi_pool_torch(feat, torch.tensor([[0.0, 2, 2, 4, 4]]), 2, 1.0)
    assert out[0, 0].tolist() == [[21.0, 22.0], [27.0, 28.0]]


def test_round_half_away_from_zero() -> None:
    feat = torch.arange(36.0).view(1, 1, 6, 6)
    # x1 = 1 at scale 0.5 -> 0.5 rounds to 1 (C's round; torch.round would give 0); x2 = 5 -> 2.5 -> 3.
    # y: 0 -> 0, 2 -> 1. One bin: rows 0..1, cols 1..3 -> max at (1, 3) = 9 (with torch.round: cols 0..2 -> 8)
    out = roi_pool_torch(feat, torch.tensor([[0.0, 1, 0, 5, 2]]), 1, 0.5)
    assert out.item() == 9.0


def test_bf16_features_keep_exact_box_coordinates() -> None:
    # feature value = column index (exact in bf16 below 256); x1 = 2005 px at stride 16 is column 125.3 -> 125,
    # but a bf16 box edge would be 2008 (8 significant bits) -> 125.5 -> 126: the first bin's max would move
    feat = torch.arange(160, dtype=torch.float32).expand(1, 1, 4, 160).contiguous()
    rois = torch.tensor([[0.0, 2005.0, 0.0, 2100.0, 60.0]])
    want = roi_pool_torch(feat, rois, (1, 6), 1 / 16)
    got = roi_pool_torch(feat.to(torch.bfloat16), rois, (1, 6), 1 / 16)
    assert torch.equal(got.float(), want)


def test_empty_bins_are_zero() -> None:
    feat = torch.full((1, 1, 4, 4), -5.0)
    # entirely outside the map: every bin clips to an empty range -> 0, not -5 or -inf
    out = roi_pool_torch(feat, torch.tensor([[0.0, 10, 10, 14, 14], [0.0, 0, 0, 3, 3]]), 2, 1.0)
    assert out[0].abs().sum() == 0
    assert (out[1] == -5.0).all()


def test_matches_literal_reference_random() -> None:
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, generator=gen)
    xy = torch.rand(50, 2, generator=gen) * 70 - 15
    wh = torch.rand(50, 2, generator=gen) * 50
    rois = torch.cat((torch.randint(0, 2, (50, 1), generator=gen).float(), xy, xy + wh), 1)
    for out, scale in (((2, 2), 0.25), ((3, 5), 0.125), ((7, 7), 0.5)):
        torch.testing.assert_close(roi_pool_torch(feat, rois, out, scale), reference_roi_pool(feat, rois, out, scale))


def test_gradient_reaches_argmax_only() -> None:
    feat = torch.arange(36.0).view(1, 1, 6, 6).requires_grad_()
    roi_pool_torch(feat, torch.tensor([[0.0, 0, 0, 3, 3]]), 2, 1.0).sum().backward()
    expected = torch.zeros(6, 6)
    for i, j in ((1, 1), (1, 3), (3, 1), (3, 3)):
        expected[i, j] = 1.0
    torch.testing.assert_close(feat.grad[0, 0], expected)


def test_equals_torchvision() -> None:
    tv = ops.torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable (or its ops do not run on this torch build)")
    gen = torch.Generator().manual_seed(4)
    feat = torch.randn(2, 8, 25, 31, generator=gen)
    xy = torch.rand(200, 2, generator=gen) * 540 - 20
    rois = torch.cat((torch.randint(0, 2, (200, 1), generator=gen).float(), xy, xy + torch.rand(200, 2) * 300), 1)
    torch.testing.assert_close(roi_pool_torch(feat, rois, 7, 1 / 16), tv.roi_pool(feat, rois, 7, 1 / 16))
