"""Surface normals: angular error statistics pooled over every valid pixel of the dataset.

Protocol (NYUD-v2 normals, Eigen and Fergus / Bansal et al.): prediction and ground truth L2-normalised; pixels
whose ground truth is the zero vector (or marked invalid) are left out; angle = ``arccos(clip(dot, -1, 1))`` in
degrees; mean, median, RMSE (``sqrt(mean(angle²))``) and the percentage of pixels with angle strictly below
11.25, 22.5 and 30 degrees, all over the pooled pixels. The median is exact over every angle, kept in float32
(4 bytes a pixel; the other statistics are summed in float64). A zero predicted vector is at 90 degrees from
everything (its dot product is 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NormalsMetric", "angular_error"]

WITHIN = (11.25, 22.5, 30.0)


def angular_error(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Angles in degrees (float64, 1-D) between ``pred`` and ``gt`` (``H×W×3``) at valid pixels."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"normals must be H×W×3 of one size, got {pred.shape} and {gt.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("predicted normals contain NaN or inf")
    gn = np.linalg.norm(gt, axis=2)
    keep = gn > 0
    if valid is not None:
        keep &= np.asarray(valid, bool)
    p = pred[keep]
    g = gt[keep] / gn[keep][:, None]
    pn = np.linalg.norm(p, axis=1)
    p = p / np.where(pn > 0, pn, 1.0)[:, None]
    return np.degrees(np.arccos(np.clip((p * g).sum(1), -1.0, 1.0)))


class NormalsMetric:
    """Pooled angular error of surface normals (mean, median, RMSE, % within 11.25 / 22.5 / 30 degrees)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.angles: list[np.ndarray] = []  # float32, for the exact median
        self.sum = 0.0
        self.sum_sq = 0.0
        self.below = np.zeros(len(WITHIN), np.int64)
        self.count = 0
        self.num_images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image: ``pred``, ``gt`` float ``H×W×3`` (any length; zero GT = invalid), ``valid`` optional."""
        a = angular_error(pred, gt, valid)
        # sums in float64 from the float64 angles; the stored float32 copy only serves the median
        self.sum += float(a.sum())
        self.sum_sq += float((a * a).sum())
        self.below += np.array([(a < t).sum() for t in WITHIN], np.int64)
        self.count += a.size
        self.angles.append(a.astype(np.float32))
        self.num_images += 1

    def compute(self) -> dict[str, float | int]:
        if self.count == 0:
            nan = float("nan")
            return {
                "mean": nan,
                "median": nan,
                "rmse": nan,
                "within_11.25": nan,
                "within_22.5": nan,
                "within_30": nan,
                "num_pixels": 0,
                "num_images": self.num_images,
            }
        n = self.count
        out: dict[str, float | int] = {
            "mean": self.sum / n,
            "median": float(np.median(np.concatenate(self.angles))),
            "rmse": float(np.sqrt(self.sum_sq / n)),
        }
        for t, b in zip(WITHIN, self.below):
            out[f"within_{t:g}"] = 100.0 * float(b) / n
        out["num_pixels"] = n
        out["num_images"] = self.num_images
        return out
