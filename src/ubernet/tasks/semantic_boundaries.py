"""Semantic boundary detection (SBD): one channel per object class (multi-label) at full resolution.

Loss: multi-label class-balanced BCE (each image's positives over all classes weighted by the fraction of
negatives, as HED/CASENet). Prediction: per-class probabilities ``C×H×W``; metric = per-class ODS max F and AP
with the boundary benchmark's matching (SBD protocol), averaged over classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import BalancedBCE, LeanLoss, lean_loss
from ubernet.viz import multilabel_to_rgb


@register_task
class SemanticBoundaries(DenseTask):
    name = "semantic_boundaries"
    fields = ("semantic_boundaries",)
    default_stride = 1
    pad_value = 255

    def __init__(self, *, num_classes: int, nms: bool = True, thresholds: int = 99, **kw: object) -> None:
        """``num_classes`` counts object classes *without* background (channel c = class c + 1)."""
        super().__init__(**kw)  # type: ignore[arg-type]
        if int(num_classes) < 1:
            raise ConfigError(f"semantic_boundaries.num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.nms = bool(nms)
        self.thresholds = int(thresholds)

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        t = np.asarray(sample.targets["semantic_boundaries"])
        if t.shape[0] != self.num_classes:
            raise ValueError(f"sample {sample.id!r}: semantic_boundaries has {t.shape[0]} classes, the task "
                             f"was built for {self.num_classes}")
        return torch.from_numpy(np.ascontiguousarray(t)).float()

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lean_loss(self.lean_pixel_loss(), logits, target)

    def lean_pixel_loss(self) -> LeanLoss:
        """Multi-label class-balanced BCE, 255 ignored (:class:`~ubernet.tasks.losses.BalancedBCE`)."""
        return BalancedBCE(255)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def make_metric(self):
        from ubernet.metrics.sbd import SemanticBoundaryMetric

        return SemanticBoundaryMetric(self.num_classes, thresholds=self.thresholds)

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        if self.nms:
            from ubernet.metrics.edge_nms import edge_nms

            prediction = np.stack([edge_nms(p) for p in prediction])
        metric.update(prediction, np.asarray(sample.targets["semantic_boundaries"], dtype=bool))

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return multilabel_to_rgb(prediction)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "semantic_boundaries" / f"{stem}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, boundaries=prediction.astype(np.float16))
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("maxf", "ap")
