"""Salient object estimation: one channel (sigmoid, i.e. a 2-way softmax) at full resolution, cross-entropy
averaged over valid pixels; prediction = probability map in [0, 1]; metric = max F (beta^2 = 0.3) and MAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ubernet.data.sample import IGNORE, Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
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
        valid = (target != IGNORE).float()
        ce = F.binary_cross_entropy_with_logits(logits, (target == 1).float(), reduction="none")
        return (ce * valid).sum((1, 2, 3)) / valid.sum((1, 2, 3)).clamp(min=1)

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
