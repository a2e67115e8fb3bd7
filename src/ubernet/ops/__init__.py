"""Detection ops: NMS, RoIAlign, RoIPool and box utilities, with a switchable backend.

``torchvision.ops`` is used when torchvision imports and its ops run; otherwise this package's pure-PyTorch
implementations (same semantics, vectorised over boxes and RoIs). Force either with
``set_backend("torch" | "torchvision" | "auto")`` or the environment variable ``UBERNET_OPS_BACKEND``;
``backend()`` reports the active one. Box conventions: ``(x1, y1, x2, y2)`` continuous 0-based image
coordinates, ``x2``/``y2`` exclusive (see :mod:`ubernet.data.sample`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ubernet.ops import lowp
from ubernet.ops._backend import BACKENDS, ENV_VAR, backend, requested_backend, set_backend, torchvision_ops
from ubernet.ops.boxes import box_area, box_iou, clip_boxes_to_image, remove_small_boxes
from ubernet.ops.torch_nms import nms_torch
from ubernet.ops.torch_roi_align import roi_align_torch, rois_to_tensor
from ubernet.ops.torch_roi_pool import roi_pool_torch

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "backend",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes_to_image",
    "lowp",
    "nms",
    "nms_torch",
    "remove_small_boxes",
    "requested_backend",
    "roi_align",
    "roi_align_torch",
    "roi_pool",
    "roi_pool_torch",
    "set_backend",
]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``Tensor[N, 4]`` in (x1, y1, x2, y2).
        scores: ``Tensor[N]``.
        iou_threshold: a box is dropped when a kept, higher-scored box overlaps it with IoU *strictly* greater.

    Returns:
        ``Tensor[K]`` int64: indices of the kept boxes, sorted by decreasing score (ties keep input order).
    """
    if backend() == "torchvision":
        return torchvision_ops().nms(boxes, scores, float(iou_threshold))
    return nms_torch(boxes, scores, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS applied independently within each category ``idxs``, in one call.

    Boxes of different categories never suppress each other: each category is shifted by its own offset
    larger than the extent of all boxes, so that boxes of different categories cannot overlap.

    Args:
        boxes: ``Tensor[N, 4]`` in (x1, y1, x2, y2); scores: ``Tensor[N]``; idxs: ``Tensor[N]`` int64 category.

    Returns:
        ``Tensor[K]`` int64 kept indices, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # shift to a zero origin first, so the offsets (and float32 rounding) stay as small as possible
    lo = boxes.min()
    extent = boxes.max() - lo
    offsets = idxs.to(boxes.dtype) * (extent + 1)
    shifted = boxes - lo + offsets[:, None]
    return nms(shifted, scores, iou_threshold)


def roi_align(
    features: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign: bilinear pooling of each RoI into a fixed ``output_size`` grid (torchvision semantics).

    Args:
        features: ``Tensor[B, C, H, W]``.
        rois: ``Tensor[K, 5]`` rows ``(batch_idx, x1, y1, x2, y2)`` in input-image coordinates, or a list of
            ``B`` per-image ``Tensor[Ki, 4]``.
        output_size: ``oh`` or ``(oh, ow)``.
        spatial_scale: feature cells per input pixel (``1 / stride``).
        sampling_ratio: bilinear samples per bin along each axis; ``<= 0`` = adaptive, ``ceil(roi / bins)``.
        aligned: shift by -0.5 cell so that a cell stands for its centre (see :mod:`ubernet.ops.torch_roi_align`).

    Returns:
        ``Tensor[K, C, oh, ow]``, differentiable with respect to ``features``.
    """
    if backend() == "torchvision":
        rois_t = rois_to_tensor(rois, features)
        return torchvision_ops().roi_align(features, rois_t, output_size, spatial_scale, sampling_ratio, aligned)
    return roi_align_torch(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def roi_pool(
    features: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoIPool: Fast R-CNN max pooling with its quantisation rules (see :mod:`ubernet.ops.torch_roi_pool`).

    Args:
        features: ``Tensor[B, C, H, W]``; rois: ``Tensor[K, 5]`` or list of ``Tensor[Ki, 4]`` (as roi_align);
        output_size: ``oh`` or ``(oh, ow)``; spatial_scale: ``1 / stride``.

    Returns:
        ``Tensor[K, C, oh, ow]``; empty bins are 0.
    """
    if backend() == "torchvision":
        rois_t = rois_to_tensor(rois, features)
        return torchvision_ops().roi_pool(features, rois_t, output_size, spatial_scale)
    return roi_pool_torch(features, rois, output_size, spatial_scale)
