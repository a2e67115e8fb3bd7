"""Semantic (category-aware) boundaries, the SBD benchmark protocol (Hariharan et al., ICCV 2011).

For each class separately: the BSDS boundary evaluation of :mod:`ubernet.metrics.bsds` (thresholds
``k/(N+1)``, thinning, exact one-to-one matching) of that class's predicted map against that class's ground
truth boundaries (one annotator), over *every* image of the dataset (an image without the class contributes its
predicted pixels as false positives). Per class: ODS max F (interpolated between thresholds, as in BSDS) and AP;
reported means over classes. The SBD benchmark matches within ``maxDist = 0.02`` of the image diagonal (its
``benchmark_code_RELEASE``; CASENet/SEAL's re-evaluations keep 0.02 for SBD), larger than BSDS's 0.0075,
so that is the default here. A class with no ground-truth boundary pixel in the whole dataset has no
recall and therefore no F or AP: its entries are ``None`` and it is left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ubernet.metrics import pool
from ubernet.metrics.base import check_classes, mean_defined
from ubernet.metrics.bsds import evaluate_boundaries, summarize, thresholds_for

__all__ = ["SemanticBoundaryMetric"]


class SemanticBoundaryMetric:
    """Per-class ODS max F and AP over a dataset, and their means.

    Args:
        num_classes: ``C``, channel ``c`` = class ``c + 1`` (background has no boundaries).
        thresholds: number of thresholds (99).
        max_dist: tolerance as a fraction of the image diagonal (SBD: 0.02).
        thin: thin the thresholded maps (SBD: yes).
        class_names: optional ``C`` names for the per-class dicts.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        thresholds: int = 99,
        max_dist: float = 0.02,
        thin: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        check_classes(num_classes, class_names)
        self.num_classes = int(num_classes)
        self.thresholds = thresholds_for(int(thresholds))
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        self.class_names = list(class_names) if class_names is not None else [str(c + 1) for c in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.per_image: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` float ``C×H×W`` in [0, 1]; ``gt`` bool ``C×H×W``."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.ndim != 3 or pred.shape != gt.shape or pred.shape[0] != self.num_classes:
            raise ValueError(
                f"semantic boundaries need pred and gt of shape {self.num_classes}×H×W, got {pred.shape} and {gt.shape}"
            )
        for c in range(self.num_classes):
            self.per_image[c].append(  # in a worker process under `metric_workers`
                pool.submit(
                    evaluate_boundaries,
                    np.ascontiguousarray(pred[c]),
                    gt[c].astype(bool)[None],
                    thresholds=self.thresholds,
                    max_dist=self.max_dist,
                    thin=self.thin,
                )
            )

    def compute(self) -> dict[str, float | list | dict]:
        maxf: list[float | None] = []
        ap: list[float | None] = []
        ois: list[float | None] = []
        for c in range(self.num_classes):
            counts = pool.resolve(self.per_image[c])
            if not counts or sum(float(x[0, 1]) for x in counts) == 0:
                maxf.append(None)
                ap.append(None)
                ois.append(None)
                continue
            s = summarize(self.thresholds, counts)
            maxf.append(float(s["ods"]))
            ap.append(float(s["ap"]))
            ois.append(float(s["ois"]))
        return {
            "maxf": mean_defined(maxf),
            "ap": mean_defined(ap),
            "per_class_maxf": maxf,
            "per_class_ap": ap,
            "per_class_ois": ois,
            "per_class": {n: {"maxf": f, "ap": a} for n, f, a in zip(self.class_names, maxf, ap)},
            "num_images": len(self.per_image[0]),
            "max_dist": self.max_dist,
        }
