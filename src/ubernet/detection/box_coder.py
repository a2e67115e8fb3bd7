"""Box regression parametrisation of R-CNN (Girshick et al. 2014, Appendix C), used by RPN and Fast R-CNN.

For a reference box with centre ``(px, py)`` and size ``(pw, ph)`` and a target with ``(gx, gy, gw, gh)``
(widths are ``x2 - x1``: continuous boxes, no ``+ 1``)::

    dx = wx·(gx - px) / pw     dy = wy·(gy - py) / ph     dw = ww·log(gw / pw)     dh = wh·log(gh / ph)

``weights = (wx, wy, ww, wh)``: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the RoI head (the inverse of the
target standard deviations 0.1, 0.1, 0.2, 0.2 of Fast R-CNN). ``decode`` inverts ``encode`` exactly (up to float
rounding); it clamps ``dw, dh`` (after dividing by the weights) at ``log(1000 / 16)`` so that ``exp`` cannot
overflow on an untrained network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as deltas relative to reference boxes (anchors or proposals) and back.

    Args:
        weights: ``(wx, wy, ww, wh)``.
        scale_clamp: upper bound applied to ``dw / ww`` and ``dh / wh`` before ``exp`` in :meth:`decode`.
    """

    def __init__(
        self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), scale_clamp: float = DEFAULT_SCALE_CLAMP
    ) -> None:
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"BoxCoder weights must be 4 positive numbers, got {tuple(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def encode(self, ref_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """Deltas ``Tensor[N, 4]`` that move ``ref_boxes (Tensor[N, 4])`` onto ``gt_boxes (Tensor[N, 4])``.

        Both in (x1, y1, x2, y2) with positive widths and heights.
        """
        wx, wy, ww, wh = self.weights
        pw = ref_boxes[:, 2] - ref_boxes[:, 0]
        ph = ref_boxes[:, 3] - ref_boxes[:, 1]
        px = ref_boxes[:, 0] + 0.5 * pw
        py = ref_boxes[:, 1] + 0.5 * ph
        gw = gt_boxes[:, 2] - gt_boxes[:, 0]
        gh = gt_boxes[:, 3] - gt_boxes[:, 1]
        gx = gt_boxes[:, 0] + 0.5 * gw
        gy = gt_boxes[:, 1] + 0.5 * gh
        return torch.stack(
            (wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=1
        )

    def decode(self, deltas: Tensor, ref_boxes: Tensor) -> Tensor:
        """Boxes from ``deltas (Tensor[N, 4·K])`` (K sets, e.g. one per class) and ``ref_boxes (Tensor[N, 4])``.

        Returns:
            ``Tensor[N, 4·K]`` in (x1, y1, x2, y2), same layout as ``deltas``.
        """
        wx, wy, ww, wh = self.weights
        ref_boxes = ref_boxes.to(deltas.dtype)
        pw = (ref_boxes[:, 2] - ref_boxes[:, 0])[:, None]
        ph = (ref_boxes[:, 3] - ref_boxes[:, 1])[:, None]
        px = ref_boxes[:, 0, None] + 0.5 * pw
        py = ref_boxes[:, 1, None] + 0.5 * ph
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        cx = dx * pw + px
        cy = dy * ph + py
        w = torch.exp(dw) * pw
        h = torch.exp(dh) * ph
        out = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=2)
        return out.reshape(deltas.shape)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, scale_clamp={self.scale_clamp:.4f})"
