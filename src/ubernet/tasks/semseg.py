"""Semantic segmentation: ``num_classes`` channels (background included, count from the data) at stride 4,
cross-entropy with 255 ignored; metric = dataset-pooled mean IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ubernet.data.sample import Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import LabelTask
from ubernet.viz import labels_to_rgb


@register_task
class Semseg(LabelTask):
    name = "semseg"
    fields = ("semseg",)

    def make_metric(self):
        from ubernet.metrics.segmentation import IoUMetric

        return IoUMetric(self.num_classes)

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        metric.update(prediction, sample.targets[self.name])

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return labels_to_rgb(prediction)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / self.name / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(prediction.astype(np.uint8)).save(path)
        return [path]
