"""Non-maximum suppression, pure PyTorch, exact (same result as greedy NMS / ``torchvision.ops.nms``).

Greedy NMS visits boxes by decreasing score and keeps a box unless an already *kept* box overlaps it with
IoU > threshold. Written as a Python loop over boxes that is O(N) interpreter steps with O(N) work each; here
it runs as tensor operations on blocks of the score-sorted boxes:

1. boxes of a block that overlap a box kept in an earlier block are dropped (one IoU matrix kept x block);
2. inside the block, ``keep[i] = not any(keep[j] and S[j, i] for j < i)`` (``S`` = upper-triangular
   "IoU > threshold" matrix) is solved by fixed-point iteration from ``keep = all``. Each sweep is one
   masked any-reduction over ``S``; after sweep ``t`` every box whose chain of suppressors has length < ``t`` is final,
   so the iteration reaches the unique greedy solution, and two equal consecutive sweeps prove it has
   (the idea of Cluster-NMS, Zheng et al. 2020). Typical sets need a handful of sweeps.

Work is O(N·K) for the cross-block step (K kept boxes) plus O(N·B) inside blocks, with O(N / B · sweeps)
Python steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Sizes below PyTorch's intra-op grain (32768 elements) on purpose: every op then runs on one thread. The work is
# memory-bound (threads gain little), and on oversubscribed cores each parallel region can stall for a scheduler
# quantum (measured: 10-20x slower NMS at 2 threads under load) — serial small ops avoid that entirely.
_BLOCK = 128  # boxes per block (the in-block matrix has 128² = 16384 entries)
_CHUNK_PAIRS = 30000  # box pairs per IoU chunk (cache-resident temporaries)


def _columns(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Contiguous x1, y1, x2, y2 and area columns (broadcast ops on strided columns are ~4x slower)."""
    x1, y1, x2, y2 = (boxes[:, i].contiguous() for i in range(4))
    return x1, y1, x2, y2, (x2 - x1).clamp_(min=0) * (y2 - y1).clamp_(min=0)


def _suppression(a: tuple[Tensor, ...], b: tuple[Tensor, ...], iou_threshold: float, any_row: bool) -> Tensor:
    """IoU(a_i, b_j) > threshold for boxes given as :func:`_columns`, without a division.

    IoU > t  <=>  inter > t·(area_a + area_b - inter)  <=>  inter·(1 + t) > t·(area_a + area_b) (union > 0).
    A pair of degenerate boxes (union 0) gives 0 > 0, i.e. no suppression, as torchvision's NaN comparison does.
    Rows of ``a`` are processed in chunks of ~64k pairs with in-place ops, so the temporaries stay in cache
    (this is memory-bound and dominates NMS time).

    Returns:
        bool ``Tensor[len(a), len(b)]``, or with ``any_row`` bool ``Tensor[len(b)]``: whether any ``a`` suppresses
        each ``b``.
    """
    ax1, ay1, ax2, ay2, aarea = a
    bx1, by1, bx2, by2, barea = b
    tb = barea * iou_threshold
    rows = max(1, _CHUNK_PAIRS // max(bx1.shape[0], 1))
    out = []
    for s in range(0, ax1.shape[0], rows):
        e = s + rows
        iw = torch.minimum(ax2[s:e, None], bx2[None, :])
        iw.sub_(torch.maximum(ax1[s:e, None], bx1[None, :])).clamp_(min=0)
        ih = torch.minimum(ay2[s:e, None], by2[None, :])
        ih.sub_(torch.maximum(ay1[s:e, None], by1[None, :])).clamp_(min=0)
        hit = iw.mul_(ih).mul_(1.0 + iou_threshold) > (aarea[s:e, None] * iou_threshold + tb[None, :])
        out.append(hit.any(dim=0) if any_row else hit)
    if any_row:
        return torch.stack(out).any(dim=0)
    return out[0] if len(out) == 1 else torch.cat(out)


def _greedy_in_block(cols: tuple[Tensor, ...], iou_threshold: float) -> Tensor:
    """Bool ``Tensor[n]``: greedy-NMS survivors of boxes (as :func:`_columns`) sorted by decreasing score."""
    n = cols[0].shape[0]
    ar = torch.arange(n, device=cols[0].device)
    # sup[j, i]: the higher-scored box j (j < i) would suppress box i if j is kept
    sup = _suppression(cols, cols, iou_threshold, any_row=False) & (ar[:, None] < ar[None, :])
    keep = torch.ones(n, dtype=torch.bool, device=cols[0].device)
    # At most n + 1 sweeps are ever needed (chain length bound); the loop normally ends after a few.
    for _ in range(n + 1):
        new_keep = ~(sup & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def nms_torch(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Pure-PyTorch greedy NMS; see :func:`ubernet.ops.nms` for the contract."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order].detach()
    if sorted_boxes.dtype not in (torch.float32, torch.float64):
        sorted_boxes = sorted_boxes.float()  # integer / half boxes: compare in float32
    n = sorted_boxes.shape[0]
    kept_idx: list[Tensor] = []
    kept: list[Tensor] = []  # kept boxes so far, (x1, y1, x2, y2) rows in score order
    kept_cols: tuple[Tensor, ...] | None = None
    for start in range(0, n, _BLOCK):
        blk = sorted_boxes[start : start + _BLOCK]
        cand = torch.arange(start, start + blk.shape[0], device=boxes.device)
        if kept_cols is not None:
            alive = ~_suppression(kept_cols, _columns(blk), iou_threshold, any_row=True)
            cand, blk = cand[alive], blk[alive]
            if cand.numel() == 0:
                continue
        keep = _greedy_in_block(_columns(blk), iou_threshold)
        kept_idx.append(cand[keep])
        kept.append(blk[keep])
        kept_cols = _columns(torch.cat(kept))
    return order[torch.cat(kept_idx)]
