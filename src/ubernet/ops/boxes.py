"""Elementary box operations.

Boxes are ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)`` continuous 0-based image coordinates with ``x2``/``y2``
exclusive (the sample-format convention): a box's width is ``x2 - x1`` with no ``+ 1``, and an image of size
``(H, W)`` spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``Tensor[N]`` of ``boxes (Tensor[N, 4])``; degenerate boxes (x2 < x1) count as 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: ``Tensor[N, M]`` in ``[0, 1]``.

    Args:
        boxes1: ``Tensor[N, 4]`` in (x1, y1, x2, y2).
        boxes2: ``Tensor[M, 4]`` in (x1, y1, x2, y2).

    A pair whose union is empty (two degenerate boxes) has IoU 0, not NaN.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip ``boxes (Tensor[..., 4])`` to an image of ``size = (H, W)``: x to ``[0, W]``, y to ``[0, H]``."""
    h, w = int(size[0]), int(size[1])
    x = boxes[..., 0::2].clamp(min=0, max=w)
    y = boxes[..., 1::2].clamp(min=0, max=h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices ``Tensor[K] int64`` of the boxes whose width and height are both ``>= min_size``."""
    ws = boxes[:, 2] - boxes[:, 0]
    hs = boxes[:, 3] - boxes[:, 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return torch.nonzero(keep).squeeze(1)
