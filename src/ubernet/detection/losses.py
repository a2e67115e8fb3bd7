"""Loss pieces shared by the RPN and the RoI head."""

from __future__ import annotations

import torch
from torch import Tensor


def smooth_l1(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Elementwise smooth L1 (Fast R-CNN, Eq. 3, generalised): ``0.5·d²/beta`` if ``|d| < beta`` else
    ``|d| - 0.5·beta``, with ``d = pred - target``. ``beta = 1`` is Fast R-CNN's; the RPN of py-faster-rcnn uses
    ``sigma = 3``, i.e. ``beta = 1/9``; ``beta = 0`` is plain L1."""
    d = (pred - target).abs()
    if beta <= 0:
        return d
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
