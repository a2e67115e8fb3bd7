"""Salient object estimation: one channel (sigmoid, i.e. a 2-way softmax) at full resolution, cross-entropy
averaged over valid pixels; prediction = probability map in [0, 1]; metric = max F (beta^2 = 0.3) and MAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ubernet.data.sample import IGNORE, Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import LeanLoss, MaskedBCE, lean_loss
from ubernet.viz import gray_to_rgb


@register_task
class Saliency(DenseTask):
    name = "saliency"
    fields = ("saliency",)
    default_stride = 1

    @property
    def out_channels(self) -> int:
        return 1

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample.targets["saliency"])).float()[None]

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """BCE averaged over valid pixels (memory-lean, closed-form backward: :class:`MaskedBCE`)."""
        return lean_loss(self.lean_pixel_loss(), logits, target)

    def lean_pixel_loss(self) -> LeanLoss:
        return MaskedBCE(IGNORE)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)[:, 0]

    def make_metric(self):
        from ubernet.metrics.saliency import SaliencyMetric

        return SaliencyMetric()

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        metric.update(prediction, sample.targets["saliency"] == 1)

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return gray_to_rgb(prediction)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "saliency" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(prediction, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("maxf", "mae")
