"""RoIAlign: closed forms on a linear ramp, torchvision's border rules by hand, a literal reference, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from ubernet import ops
from ubernet.ops import roi_align_torch


def ramp(h: int, w: int, a: float, b: float, c: float, channels: int = 1) -> torch.Tensor:
    """Feature map ``[1, channels, h, w]`` whose cell (row i, column j) holds a·j + b·i + c (+ channel index)."""
    y = torch.arange(h, dtype=torch.float64)[:, None]
    x = torch.arange(w, dtype=torch.float64)[None, :]
    base = a * x + b * y + c
    return torch.stack([base + k for k in range(channels)])[None]


def reference_roi_align(feat, rois, out, scale, sampling_ratio, aligned):
    """Literal transcription of torchvision's documented RoIAlign (loops; tiny inputs only)."""
    oh, ow = out
    _, ch, h, w = feat.shape

    def bilinear(plane, y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = math.floor(y), math.floor(x)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * plane[y0, x0]
            + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0]
            + ly * lx * plane[y1, x1]
        )

    res = torch.zeros(len(rois), ch, oh, ow, dtype=torch.float64)
    off = 0.5 if aligned else 0.0
    for r, (bi, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / ow, rh / oh
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
        count = max(gx * gy, 1)
        for c in range(ch):
            plane = feat[int(bi), c].double()
            for ph in range(oh):
                for pw in range(ow):
                    acc = 0.0
                    for iy in range(gy):
                        y = sy + ph * bh + (iy + 0.5) * bh / gy
                        for ix in range(gx):
                            x = sx + pw * bw + (ix + 0.5) * bw / gx
                            acc += float(bilinear(plane, y, x))
                    res[r, c, ph, pw] = acc / count
    return res


def test_ramp_hand_computed_bins() -> None:
    # f = 2x + 3y + 1; RoI (1, 2, 9, 6) at scale 1/2 into 2x2 bins.
    # aligned: x starts at 1·0.5 - 0.5 = 0, width 4 -> bin centres x = 1, 3; y starts at 0.5, height 2 -> y = 1, 2.
    feat = ramp(8, 8, 2.0, 3.0, 1.0)
    rois = torch.tensor([[0.0, 1.0, 2.0, 9.0, 6.0]], dtype=torch.float64)
    out = roi_align_torch(feat, rois, 2, spatial_scale=0.5, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[6.0, 10.0], [9.0, 13.0]], dtype=torch.float64))
    # legacy (aligned=False): no half-cell shift -> centres x = 1.5, 3.5 and y = 1.5, 2.5
    out = roi_align_torch(feat, rois, 2, spatial_scale=0.5, sampling_ratio=2, aligned=False)
    torch.testing.assert_close(out[0, 0], torch.tensor([[8.5, 12.5], [11.5, 15.5]], dtype=torch.float64))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3, -1])
def test_ramp_closed_form(aligned: bool, sampling_ratio: int) -> None:
    # Bilinear interpolation reproduces a linear function exactly, and a bin's samples are symmetric about its
    # centre, so each bin equals f at the centre: x_c = x1·s - off + (pw + 1/2)·max(w·s, 1 if legacy)/ow.
    a, b, c, s = 0.7, -1.3, 5.0, 0.25
    feat = ramp(20, 24, a, b, c, channels=2)
    rois = torch.tensor(
        [[0, 10.0, 12.0, 60.0, 40.0], [0, 8.0, 8.0, 90.0, 70.0], [0, 30.0, 20.0, 31.0, 21.0]], dtype=torch.float64
    )
    oh, ow = 3, 4
    out = roi_align_torch(feat, rois, (oh, ow), spatial_scale=s, sampling_ratio=sampling_ratio, aligned=aligned)
    off = 0.5 if aligned else 0.0
    for r, (_, x1, y1, x2, y2) in enumerate(rois.tolist()):
        rw, rh = (x2 - x1) * s, (y2 - y1) * s
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        xc = x1 * s - off + (torch.arange(ow, dtype=torch.float64) + 0.5) * rw / ow
        yc = y1 * s - off + (torch.arange(oh, dtype=torch.float64) + 0.5) * rh / oh
        expected = a * xc[None, :] + b * yc[:, None] + c
        torch.testing.assert_close(out[r, 0], expected)
        torch.testing.assert_close(out[r, 1], expected + 1)


def test_border_rules_by_hand() -> None:
    # f = x + 10 on a 4x4 map; scale 1, aligned, one bin, 2x2 samples.
    feat = ramp(4, 4, 1.0, 0.0, 10.0)
    rois = torch.tensor(
        [
            [0, 0.0, 0.0, 1.0, 1.0],  # x samples -0.25 (clamped to 0 -> 10) and 0.25 (10.25): mean 10.125
            [0, -6.0, 0.0, -2.0, 4.0],  # x samples -5.5, -3.5: both < -1 -> 0
            [0, -3.0, 0.0, 1.0, 4.0],  # x samples -2.5 (-> 0) and -0.5 (clamped -> 10): (0 + 10) / 2 = 5
            [0, 3.0, 0.0, 7.0, 4.0],  # x samples 3.5 (clamped to 3 -> 13) and 5.5 (> W = 4 -> 0): 6.5
        ],
        dtype=torch.float64,
    )
    out = roi_align_torch(feat, rois, 1, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out.flatten(), torch.tensor([10.125, 0.0, 5.0, 6.5], dtype=torch.float64))


def test_adaptive_sampling_counts() -> None:
    # Adaptive grid: ceil(roi / bins) samples per axis. RoI (0, 0, 5, 5) at scale 1, aligned: start -0.5,
    # width 5, 2 bins of 2.5 -> ceil(2.5) = 3 samples per bin per axis, at -0.5 + (k + 1/2)·2.5/3 + pw·2.5.
    # Bin 0 on f = x: samples -1/12 (in [-1, 0): clamped to 0 -> f = 0), 3/4, 19/12 -> mean (0 + 3/4 + 19/12)/3
    # = 7/9. Bin 1: samples 29/12, 13/4, 49/12, all inside -> mean 13/4. Every row is valid (f ignores y).
    feat = ramp(6, 8, 1.0, 0.0, 0.0)
    rois = torch.tensor([[0, 0.0, 0.0, 5.0, 5.0]], dtype=torch.float64)
    out = roi_align_torch(feat, rois, 2, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    expected = torch.tensor([[7 / 9, 13 / 4], [7 / 9, 13 / 4]], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], expected)


def test_matches_literal_reference_random() -> None:
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    # boxes at and beyond the borders, tiny, large, and degenerate ones
    xy = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 60 - 10
    wh = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 50
    boxes = torch.cat((xy, xy + wh), 1)
    boxes[0] = torch.tensor([0.0, 0.0, 44.0, 36.0])  # the whole map at scale 1/4
    boxes[1] = torch.tensor([40.0, 30.0, 44.0, 36.0])  # bottom-right corner
    boxes[2] = torch.tensor([5.0, 5.0, 5.0, 9.0])  # zero width
    idx = torch.randint(0, 2, (40, 1), generator=gen).double()
    rois = torch.cat((idx, boxes), 1)
    for aligned in (True, False):
        for sr in (2, 1, -1):
            got = roi_align_torch(feat, rois, (3, 2), 0.25, sr, aligned)
            want = reference_roi_align(feat, rois, (3, 2), 0.25, sr, aligned)
            torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_list_of_boxes_and_empty() -> None:
    feat = torch.randn(2, 4, 6, 6)
    b0 = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b1 = torch.tensor([[2.0, 3.0, 9.0, 12.0], [1.0, 1.0, 4.0, 4.0]])
    as_list = roi_align_torch(feat, [b0, b1], 2, 0.5)
    as_tensor = roi_align_torch(feat, torch.tensor([[0, 0, 0, 10, 10], [1, 2, 3, 9, 12], [1, 1, 1, 4, 4.0]]), 2, 0.5)
    torch.testing.assert_close(as_list, as_tensor)
    assert roi_align_torch(feat, torch.zeros(0, 5), (7, 7), 0.5).shape == (0, 4, 7, 7)


def test_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, -2.0, 1.0, 9.0, 7.0], [1, 3.0, 2.0, 11.5, 10.0], [1, 0.5, 0.5, 2.0, 3.0]])
    rois = rois.double()
    for sr in (2, -1):
        assert torch.autograd.gradcheck(lambda f, sr=sr: roi_align_torch(f, rois, 2, 0.5, sr, True), (feat,))


@pytest.mark.parametrize("size", [(2, 4, 30), (2, 190, 180)])  # 240 feature cells (int16 sort), 68,400 (int32)
def test_gradient_is_the_transposed_gather(size) -> None:
    # d(sum(w * pooled)) / d(feature cell) = sum of w over the bins sampling that cell: the same gradient by
    # autograd through the literal-reference-checked forward in float64, against an explicit dense matrix
    b, h, w = size
    gen = torch.Generator().manual_seed(3)
    feat = torch.randn(b, 3, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    xy = torch.rand(30, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) * 2
    rois = torch.cat((torch.randint(0, b, (30, 1), generator=gen).double(), xy,
                      xy + torch.rand(30, 2, generator=gen, dtype=torch.float64) * 20), 1)
    up = torch.randn(30, 3, 2, 3, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(roi_align_torch(feat, rois, (2, 3), 0.5, 2, True), feat, up)
    # dense Jacobian of the (linear) pooling, column by column over the cells that any RoI can touch
    jac = torch.zeros_like(feat)
    basis = torch.zeros_like(feat, requires_grad=False)
    flat = basis.view(-1)
    touched = torch.nonzero(grad.detach().reshape(-1)).squeeze(1)[:40]
    for i in touched.tolist():
        flat.zero_()
        flat[i] = 1.0
        jac.view(-1)[i] = (roi_align_torch(basis, rois, (2, 3), 0.5, 2, True) * up).sum()
    torch.testing.assert_close(grad.reshape(-1)[touched], jac.reshape(-1)[touched], rtol=1e-12, atol=1e-12)


def test_bf16_features_keep_exact_box_coordinates() -> None:
    # feature value = column index - 200 (exact in bf16): a bin's value is the mean column it samples, so a box
    # edge rounded to bf16 (200.3 -> 200, 8 significant bits) would shift every bin by 0.3 cell
    w = 300
    feat = (torch.arange(w, dtype=torch.float32) - 200).expand(1, 1, 4, w).contiguous()
    rois = torch.tensor([[0.0, 200.3, 0.0, 210.3, 4.0]])
    want = roi_align_torch(feat, rois, (1, 5), 1.0, 2, True)  # float32 throughout
    got = roi_align_torch(feat.to(torch.bfloat16), rois, (1, 5), 1.0, 2, True)
    assert got.dtype == torch.bfloat16
    # bf16 rounds values below 16 to within 2^-5; a rounded box edge would put every bin 0.3 off
    torch.testing.assert_close(got.float(), want, rtol=0, atol=2**-5)


def test_rejects_bad_batch_index() -> None:
    with pytest.raises(ValueError, match="batch indices"):
        roi_align_torch(torch.zeros(1, 1, 4, 4), torch.tensor([[1.0, 0, 0, 2, 2]]), 2)


def _torchvision_ops():
    tv = ops.torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable (or its ops do not run on this torch build)")
    return tv


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0, -1])
def test_equals_torchvision(aligned: bool, sampling_ratio: int) -> None:
    tv = _torchvision_ops()
    gen = torch.Generator().manual_seed(2)
    feat = torch.randn(2, 8, 25, 31, generator=gen)
    xy = torch.rand(200, 2, generator=gen) * 540 - 20
    wh = torch.rand(200, 2, generator=gen) * 300
    rois = torch.cat((torch.randint(0, 2, (200, 1), generator=gen).float(), xy, xy + wh), 1)
    got = roi_align_torch(feat, rois, 7, 1 / 16, sampling_ratio, aligned)
    want = tv.roi_align(feat, rois, 7, 1 / 16, sampling_ratio, aligned)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
