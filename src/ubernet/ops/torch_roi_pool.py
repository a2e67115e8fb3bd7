"""RoIPool (Girshick, Fast R-CNN 2015) in pure PyTorch, vectorised over RoIs, with torchvision's semantics.

Quantisation rules (Caffe's Fast R-CNN, reproduced by ``torchvision.ops.roi_pool``), for a RoI
``(x1, y1, x2, y2)`` and ``round`` = round half away from zero:

* ``start_x = round(x1 · scale)``, ``end_x = round(x2 · scale)``; ``roi_w = max(end_x - start_x + 1, 1)``
  (the end is treated as an *inclusive* cell, as in the original); ``bin_w = roi_w / out_w`` (a float);
* bin ``pw`` covers cells ``[floor(pw · bin_w), ceil((pw + 1) · bin_w))`` shifted by ``start_x`` and clipped to
  ``[0, W]``; the same for y;
* the output is the maximum over the bin's cells, or 0 for an empty bin.

Implementation: the cell indices of every bin of every RoI are built with tensor ops (padded to the largest bin
extent, then the padding dropped), and one ``embedding_bag(mode="max")`` over the features viewed as a
``[B·H·W, C]`` table reduces each bin's variable-size bag of cells — no loop over RoIs. Empty bags give 0, and
gradients reach the arg-max cell of each bin, as in torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ubernet.ops.torch_roi_align import _pair, coord_dtype, rois_to_tensor


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds halves to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _axis_bins(start: Tensor, end: Tensor, out: int, size: int) -> tuple[Tensor, Tensor]:
    """Bin ``[lo, hi)`` cell ranges ``Tensor[K, out]`` (int64) along one axis, clipped to ``[0, size]``."""
    extent = (end - start + 1).clamp(min=1)
    bin_size = extent / out
    p = torch.arange(out, dtype=start.dtype, device=start.device)
    lo = torch.floor(p[None, :] * bin_size[:, None]) + start[:, None]
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool_torch(
    features: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Pure-PyTorch RoIPool; see :func:`ubernet.ops.roi_pool` for the contract."""
    if features.dim() != 4:
        raise ValueError(f"features must be Tensor[B, C, H, W], got shape {tuple(features.shape)}")
    oh, ow = _pair(output_size)
    rois_t = rois_to_tensor(rois, features, coord_dtype(features))
    b, c, h, w = features.shape
    k = rois_t.shape[0]
    if k == 0:
        return features.new_zeros((0, c, oh, ow))
    batch_idx = rois_t[:, 0].round().long()
    if int(batch_idx.min()) < 0 or int(batch_idx.max()) >= b:
        raise ValueError(f"rois batch indices must lie in 0..{b - 1}, got {batch_idx.min()}..{batch_idx.max()}")
    q = _round_half_away(rois_t[:, 1:] * spatial_scale)
    y_lo, y_hi = _axis_bins(q[:, 1], q[:, 3], oh, h)  # [K, oh]
    x_lo, x_hi = _axis_bins(q[:, 0], q[:, 2], ow, w)  # [K, ow]
    mh = max(int((y_hi - y_lo).max()), 1)
    mw = max(int((x_hi - x_lo).max()), 1)
    ty = torch.arange(mh, device=features.device)
    tx = torch.arange(mw, device=features.device)
    rows = y_lo[:, :, None] + ty  # [K, oh, mh]
    cols = x_lo[:, :, None] + tx  # [K, ow, mw]
    ok = (rows < y_hi[:, :, None])[:, :, None, :, None] & (cols < x_hi[:, :, None])[:, None, :, None, :]
    cells = (
        batch_idx[:, None, None, None, None] * (h * w)
        + rows.clamp(max=h - 1)[:, :, None, :, None] * w
        + cols.clamp(max=w - 1)[:, None, :, None, :]
    )  # [K, oh, ow, mh, mw]
    counts = ok.flatten(3).sum(dim=3).flatten()  # cells per bin, [K*oh*ow]
    offsets = torch.cumsum(counts, 0) - counts
    table = features.permute(0, 2, 3, 1).contiguous().view(b * h * w, c)  # one row of C values per cell
    # variable-size bags: each bin's cells in row-major order; an empty bag gives 0, as torchvision's empty bins
    pooled = F.embedding_bag(cells[ok], table, offsets, mode="max")  # [K*oh*ow, C]
    return pooled.view(k, oh, ow, c).permute(0, 3, 1, 2).contiguous()
