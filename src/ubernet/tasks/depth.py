"""Monocular depth — the worked example of adding a task in one file (docs/adding-a-task.md).

Everything about depth lives here: its target field (``depth``: float32 ``H×W``, metres > 0, 0 = invalid),
head (one channel, full resolution), loss (L1 on log depth over valid pixels, as Eigen & Fergus's scale-aware
log-space losses), metric (the standard NYUD-v2 errors and accuracies, pooled over valid pixels) and drawing.
Enable it with a config line: ``tasks: {depth: {}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ubernet.data.sample import Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.viz import gray_to_rgb


class DepthMetric:
    """Pooled over all valid pixels of the dataset: abs rel, sq rel, RMSE, RMSE(log), delta < 1.25^k."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(("abs_rel", "sq_rel", "se", "se_log", "d1", "d2", "d3"), 0.0)
        self.n = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        valid = gt > 0
        p = np.maximum(pred[valid].astype(np.float64), 1e-6)
        g = gt[valid].astype(np.float64)
        ratio = np.maximum(p / g, g / p)
        self.sums["abs_rel"] += float((np.abs(p - g) / g).sum())
        self.sums["sq_rel"] += float(((p - g) ** 2 / g).sum())
        self.sums["se"] += float(((p - g) ** 2).sum())
        self.sums["se_log"] += float(((np.log(p) - np.log(g)) ** 2).sum())
        for k in (1, 2, 3):
            self.sums[f"d{k}"] += float((ratio < 1.25**k).sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, Any]:
        n = max(self.n, 1)
        s = self.sums
        return {"abs_rel": s["abs_rel"] / n, "sq_rel": s["sq_rel"] / n, "rmse": float(np.sqrt(s["se"] / n)),
                "rmse_log": float(np.sqrt(s["se_log"] / n)), "delta1": s["d1"] / n, "delta2": s["d2"] / n,
                "delta3": s["d3"] / n, "pixels": self.n}


@register_task
class Depth(DenseTask):
    name = "depth"
    fields = ("depth",)
    default_stride = 1
    pad_value = 0.0  # 0 = invalid

    @property
    def out_channels(self) -> int:
        return 1

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample.targets["depth"], dtype=np.float32))[None]

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The head predicts log depth; L1 to log(target) over pixels with target > 0."""
        valid = target > 0
        err = (logits - torch.log(target.clamp(min=1e-6))).abs() * valid
        return err.sum((1, 2, 3)) / valid.float().sum((1, 2, 3)).clamp(min=1)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.exp(logits)[:, 0]

    def make_metric(self) -> DepthMetric:
        return DepthMetric()

    def update_metric(self, metric: DepthMetric, prediction: np.ndarray, sample: Sample) -> None:
        metric.update(prediction, sample.targets["depth"])

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        inv = 1.0 / np.maximum(prediction, 1e-6)  # near = bright
        return gray_to_rgb(inv / max(float(inv.max()), 1e-6))

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "depth" / f"{stem}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, prediction.astype(np.float32))
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("abs_rel", "rmse", "delta1")
