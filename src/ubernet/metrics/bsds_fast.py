"""APPROXIMATE boundary counts (``--fast``): a distance test instead of the benchmark's one-to-one matching.

Not the benchmark. A predicted pixel counts as matched when *any* annotator pixel lies within ``max_dist``, and an
annotator pixel when any predicted pixel does (Euclidean distance transforms). Without the one-to-one
constraint, two predicted pixels may claim one true pixel, so precision and recall are over-estimated (typically
by a few points where boundaries are doubled). Everything else (thresholds, thinning, ODS/OIS/AP) is as in the
exact evaluation; results are labelled ``"mode": "fast (approximate)"``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ubernet.metrics.thin import thin as thin_map

__all__ = ["evaluate_boundaries_fast"]


def evaluate_boundaries_fast(
    pred: np.ndarray, gts: np.ndarray, *, thresholds: np.ndarray, max_dist: float = 0.0075, thin: bool = True
) -> np.ndarray:
    """Approximate ``N×4`` counts (cntR, sumR, cntP, sumP) of one image; see the module docstring."""
    pred = np.asarray(pred, np.float64)
    gts = np.asarray(gts).astype(bool)
    if gts.ndim == 2:
        gts = gts[None]
    if pred.ndim != 2 or gts.shape[1:] != pred.shape:
        raise ValueError(f"pred must be H×W and gts K×H×W of the same size, got {pred.shape} and {gts.shape}")
    md = max_dist * math.hypot(*pred.shape)
    near_gt = [ndimage.distance_transform_edt(~g) <= md if g.any() else np.zeros(g.shape, bool) for g in gts]
    sum_r = float(gts.sum())
    out = np.zeros((len(thresholds), 4))
    for k, t in enumerate(thresholds):
        on = pred >= max(float(t), np.finfo(np.float64).eps)
        if thin:
            on = thin_map(on)
        if not on.any():
            out[k] = (0.0, sum_r, 0.0, 0.0)
            continue
        near_pred = ndimage.distance_transform_edt(~on) <= md
        cnt_r = float(sum((g & near_pred).sum() for g in gts))
        acc = np.zeros(on.shape, bool)
        for ng in near_gt:
            acc |= on & ng
        out[k] = (cnt_r, sum_r, float(acc.sum()), float(on.sum()))
    return out
