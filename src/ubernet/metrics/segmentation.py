"""Semantic segmentation and human parts: dataset-pooled confusion matrix, per-class and mean IoU.

Protocol (PASCAL VOC devkit ``VOCevalseg``): one ``C×C`` confusion matrix over all pixels of the dataset whose
ground truth is not ``ignore_index``; IoU of class ``c`` = ``TP / (TP + FP + FN)``; mean over classes, background
included. The devkit divides 0 by 0 for a class absent from both the ground truth and the predictions (and its
mean becomes NaN); here such a class gets IoU ``None`` and is left out of the mean, which is the devkit's number
whenever the devkit's number is defined. For human parts, images whose ground truth has no foreground (no pixel
of classes 1..C-1) are skipped entirely (``skip_images_without_foreground``).
"""

from __future__ import annotations

import numpy as np

from ubernet.metrics.base import check_classes, mean_defined

__all__ = ["IoUMetric"]


class IoUMetric:
    """Dataset-pooled IoU.

    Args:
        num_classes: ``C``, class ids ``0..C-1`` (0 = background).
        ignore_index: ground-truth value left out (255).
        skip_images_without_foreground: skip an image whose ground truth has no pixel of a class ``>= 1``
            (PASCAL-Part: images without a person).
        class_names: optional names for the per-class dict.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int = 255,
        skip_images_without_foreground: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        check_classes(num_classes, class_names)
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.skip = bool(skip_images_without_foreground)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)  # [gt, pred]
        self.num_images = 0
        self.num_skipped = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` int ``H×W`` in ``0..C-1``; ``gt`` int ``H×W`` in ``0..C-1`` or ``ignore_index``."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        c = self.num_classes
        valid = gt != self.ignore_index if self.ignore_index is not None else np.ones(gt.shape, bool)
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= c):
            bad = np.unique(g[(g < 0) | (g >= c)])[:5].tolist()
            raise ValueError(f"ground truth has class ids {bad} outside 0..{c - 1} (and ignore {self.ignore_index})")
        if p.size and (p.min() < 0 or p.max() >= c):
            bad = np.unique(p[(p < 0) | (p >= c)])[:5].tolist()
            raise ValueError(f"prediction has class ids {bad} outside 0..{c - 1}")
        if self.skip and not (g > 0).any():
            self.num_skipped += 1
            return
        self.confusion += np.bincount(g * c + p, minlength=c * c).reshape(c, c)
        self.num_images += 1

    def compute(self) -> dict[str, float | list | dict]:
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        den = cm.sum(0) + cm.sum(1) - np.diag(cm)
        per = [float(t / d) if d > 0 else None for t, d in zip(tp, den)]
        total = cm.sum()
        out: dict[str, float | list | dict] = {
            "miou": mean_defined(per),
            "per_class": per,
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "num_images": self.num_images,
            "num_skipped": self.num_skipped,
        }
        if self.class_names is not None:
            out["per_class_named"] = dict(zip(self.class_names, per))
        return out
