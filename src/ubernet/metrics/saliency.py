"""Salient-object detection: max F-measure (beta² = 0.3) and MAE, the classic toolbox protocol.

Per image: the map is scaled to [0, 1] by dividing by its maximum (an all-zero map stays zero; such an image is
left out of the precision/recall averages, but counts in MAE); the ground truth is binary (bool masks as they
are; integer masks whose values are all 0/1 as labels; other masks positive where ``value >= 0.1`` of the dtype's
range, so a 0/255 PNG mask is positive where non-zero). For 256 thresholds ``t = 255/255, ..., 0/255`` the map is
positive where ``s >= t``; precision ``TP / (TP + FP)`` (0 when nothing is predicted) and recall ``TP / P``
(0 when the mask is empty) are computed per image and averaged over images at each threshold;
``F = 1.3 P R / (0.3 P + R)`` (0 where the denominator is 0); MaxF is the maximum over thresholds.
MAE = the mean over images of the per-image mean ``|s - gt|``. Pixels equal to ``ignore_index`` (if set) are
left out of both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SaliencyMetric", "binarize_mask", "scale_map"]

BETA2 = 0.3
_THRESHOLDS = np.arange(256, dtype=np.float64) / 255.0  # ascending; the protocol lists them descending


def scale_map(pred: np.ndarray) -> np.ndarray:
    """float64 map in [0, 1]: integer maps are read as ``value / dtype max``, then divided by their maximum."""
    p = np.asarray(pred)
    if p.dtype == np.bool_:
        p = p.astype(np.float64)
    elif np.issubdtype(p.dtype, np.integer):
        p = p.astype(np.float64) / np.iinfo(p.dtype).max
    else:
        p = p.astype(np.float64)
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("saliency map has negative or non-finite values")
    m = p.max() if p.size else 0.0
    return p / m if m > 0 else p


def binarize_mask(gt: np.ndarray) -> np.ndarray:
    """bool mask: bool as is; integer 0/1 labels as labels; otherwise ``value >= 0.1 ×`` the dtype's range."""
    g = np.asarray(gt)
    if g.dtype == np.bool_:
        return g
    if np.issubdtype(g.dtype, np.integer):
        if g.size == 0 or (g.min() >= 0 and g.max() <= 1):
            return g == 1
        return g.astype(np.float64) >= 0.1 * np.iinfo(g.dtype).max
    return g.astype(np.float64) >= 0.1


class SaliencyMetric:
    """Max F-measure and MAE over a dataset.

    Args:
        ignore_index: ground-truth value whose pixels are left out (``None``: none; the project's label maps use
            255, but then pass the mask as ``gt == 1`` with ``valid = gt != 255`` or set this).
    """

    def __init__(self, *, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.sum_p = np.zeros(256)
        self.sum_r = np.zeros(256)
        self.n_pr = 0
        self.sum_mae = 0.0
        self.n_mae = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image: ``pred`` ``H×W`` (float in [0, 1] or uint8/uint16), ``gt`` ``H×W`` mask."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape or pred.ndim != 2:
            raise ValueError(f"saliency pred and gt must be H×W of one size, got {pred.shape} and {gt.shape}")
        keep = np.ones(gt.shape, bool) if valid is None else np.asarray(valid, bool)
        if self.ignore_index is not None:
            keep &= gt != self.ignore_index
            gt = np.where(keep, gt, 0).astype(gt.dtype)
        s = scale_map(pred)[keep]
        g = binarize_mask(gt)[keep]
        if s.size == 0:
            return
        self.sum_mae += float(np.abs(s - g).mean())
        self.n_mae += 1
        if not (s > 0).any():
            return  # an all-zero map has no precision/recall curve; the protocol leaves the image out
        # number of thresholds t_k <= s for each pixel: pixel is positive for thresholds 0..idx-1
        idx = np.searchsorted(_THRESHOLDS, s, side="right")
        tp = np.bincount(idx[g], minlength=257)[::-1].cumsum()[::-1][1:]  # tp[k] = #(g & s >= t_k)
        pp = np.bincount(idx, minlength=257)[::-1].cumsum()[::-1][1:]
        npos = int(g.sum())
        self.sum_p += np.where(pp > 0, tp / np.maximum(pp, 1), 0.0)
        self.sum_r += tp / npos if npos else 0.0
        self.n_pr += 1

    def compute(self) -> dict[str, float | list]:
        n = max(self.n_pr, 1)
        p = self.sum_p / n
        r = self.sum_r / n
        den = BETA2 * p + r
        f = np.where(den > 0, (1 + BETA2) * p * r / np.where(den > 0, den, 1.0), 0.0)
        k = int(np.argmax(f))
        return {
            "maxf": float(f[k]) if self.n_pr else 0.0,
            "maxf_threshold": float(_THRESHOLDS[k]),
            "mae": self.sum_mae / self.n_mae if self.n_mae else float("nan"),
            "num_images": self.n_mae,
            "num_images_pr": self.n_pr,
            "thresholds": _THRESHOLDS[::-1].tolist(),
            "precision": p[::-1].tolist(),
            "recall": r[::-1].tolist(),
        }
