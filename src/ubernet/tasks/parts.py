"""Human part segmentation: 7 channels (background + head, torso, upper arms, lower arms, upper legs, lower
legs) at stride 4, cross-entropy with 255 ignored; metric = pooled mean IoU over images that contain a person
(the protocol of metrics.md: images without any part pixel in the ground truth are skipped)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ubernet.data.sample import PART_NAMES, Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.semseg import Semseg


@register_task
class Parts(Semseg):
    name = "parts"
    fields = ("parts",)

    def __init__(self, *, num_classes: int = len(PART_NAMES), **kw: Any) -> None:
        super().__init__(num_classes=num_classes, **kw)

    def make_metric(self):
        from ubernet.metrics.segmentation import IoUMetric

        return IoUMetric(self.num_classes, skip_images_without_foreground=True)

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        metric.update(prediction, sample.targets[self.name])
