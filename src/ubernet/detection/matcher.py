"""Assigning anchors / proposals to ground-truth boxes by IoU, with VOC's ``difficult`` boxes ignored.

Result convention (``matched_idxs``, ``Tensor[N]`` int64 for N anchors or proposals):

* ``>= 0``: positive, index of the matched ground-truth box;
* ``Matcher.NEGATIVE`` (-1): background;
* ``Matcher.IGNORE`` (-2): neither (excluded from the loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ubernet.ops import box_iou


class Matcher:
    """IoU thresholds of Faster R-CNN.

    With ``m`` = an element's best IoU over the ground truth:

    * ``m >= high``: positive (matched to its best box);
    * ``low <= m < high``: ignored;
    * ``negative_low <= m < low``: negative;
    * ``m < negative_low``: ignored (Fast R-CNN's background range [0.1, 0.5): ``negative_low = 0.1``;
      torchvision and detectron2 use 0, which makes every low-overlap proposal a background candidate).

    RPN: ``high = 0.7, low = 0.3``, ``allow_low_quality_matches=True``. RoI head: ``high = low = 0.5``.

    ``allow_low_quality_matches``: each ground-truth box also claims the elements with which it has its own
    highest IoU (ties included), even below ``high`` — Faster R-CNN's rule (i), so that every object gets at least
    one positive anchor. Such an element is matched to *its* best box. A box that overlaps nothing (highest IoU 0)
    claims nothing.

    With no ground-truth box at all, every element is negative (an image without objects is all background,
    whatever ``negative_low`` says).
    """

    NEGATIVE = -1
    IGNORE = -2

    def __init__(
        self, high: float, low: float, allow_low_quality_matches: bool = False, negative_low: float = 0.0
    ) -> None:
        if not 0.0 <= negative_low <= low <= high <= 1.0:
            raise ValueError(f"Matcher needs 0 <= negative_low <= low <= high <= 1, got {negative_low}, {low}, {high}")
        self.high = float(high)
        self.low = float(low)
        self.negative_low = float(negative_low)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, iou: Tensor) -> Tensor:
        """``iou (Tensor[M, N])`` between M ground-truth boxes and N elements -> ``matched_idxs (Tensor[N])``."""
        m, n = iou.shape
        if m == 0 or n == 0:
            return torch.full((n,), self.NEGATIVE, dtype=torch.int64, device=iou.device)
        best, matched = iou.max(dim=0)
        result = matched.clone()
        result[best < self.high] = self.IGNORE
        result[(best < self.low) & (best >= self.negative_low)] = self.NEGATIVE
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1).values
            claims = (iou == best_per_gt[:, None]) & (best_per_gt[:, None] > 0)
            claimed = claims.any(dim=0)
            result[claimed] = matched[claimed]
        return result

    def __repr__(self) -> str:
        return (
            f"Matcher(high={self.high}, low={self.low}, negative_low={self.negative_low}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches})"
        )


def match_with_difficult(matcher: Matcher, gt_boxes: Tensor, difficult: Tensor, boxes: Tensor) -> Tensor:
    """Match ``boxes (Tensor[N, 4])`` to ``gt_boxes (Tensor[M, 4])``; difficult boxes are neither pos. nor neg.

    Precisely:

    1. matching (thresholds, low-quality matches) uses only the non-difficult boxes, so a difficult box never
       makes a positive; returned indices refer to the full ``gt_boxes`` list;
    2. an element that step 1 calls negative but that overlaps some difficult box with IoU ``>= matcher.low``
       (the negative threshold: it would not be a negative if that box were an ordinary one) is ignored.

    So an element that is positive for an ordinary box stays positive even when it also overlaps a difficult one,
    and elements far from every box stay negative.

    Args:
        difficult: ``Tensor[M]`` bool.

    Returns:
        ``matched_idxs (Tensor[N])``, see the module docstring.
    """
    difficult = difficult.to(torch.bool)
    easy_idx = torch.nonzero(~difficult).squeeze(1)
    matched = matcher(box_iou(gt_boxes[easy_idx], boxes))
    pos = matched >= 0
    matched[pos] = easy_idx[matched[pos]]
    if bool(difficult.any()):
        near_difficult = box_iou(gt_boxes[difficult], boxes).max(dim=0).values >= matcher.low
        matched[(matched == Matcher.NEGATIVE) & near_difficult] = Matcher.IGNORE
    return matched
