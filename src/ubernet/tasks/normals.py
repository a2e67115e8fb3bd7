"""Surface normal estimation: three channels at full resolution.

Loss (paper): L2-normalise the predicted vector, then the L1 distance to the unit ground-truth normal, averaged
over valid pixels (ground truth is the zero vector where invalid). Camera convention of the sample format:
x right, y down, z towards the camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ubernet.data.sample import Sample
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import LeanLoss, NormalsL1, lean_loss
from ubernet.viz import normals_to_rgb


@register_task
class Normals(DenseTask):
    name = "normals"
    fields = ("normals",)
    default_stride = 1
    pad_value = 0.0  # zero vector = invalid

    @property
    def out_channels(self) -> int:
        return 3

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample.targets["normals"], dtype=np.float32)).permute(2, 0, 1)

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 between normalised prediction and target over valid pixels (memory-lean: :class:`NormalsL1`)."""
        return lean_loss(self.lean_pixel_loss(), logits, target)

    def lean_pixel_loss(self) -> LeanLoss:
        return NormalsL1(1e-6)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return F.normalize(logits, dim=1, eps=1e-6)

    def mirror_soft(self, soft: torch.Tensor) -> torch.Tensor:
        """Mirrored back along W, and x (right) negated: a surface facing right in the mirror faces left."""
        out = soft.flip(-1)
        out[:, 0].neg_()
        return out

    def from_soft(self, soft: torch.Tensor) -> torch.Tensor:
        """The mean of unit normals is shorter than 1: renormalise it."""
        return F.normalize(soft, dim=1, eps=1e-6)

    def to_numpy(self, pred: torch.Tensor) -> np.ndarray:
        return pred.permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)

    def make_metric(self):
        from ubernet.metrics.normals import NormalsMetric

        return NormalsMetric()

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        metric.update(prediction, sample.targets["normals"])

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return normals_to_rgb(prediction)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "normals" / f"{stem}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, prediction.astype(np.float32))
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("mean", "median", "within_11.25", "within_22.5", "within_30")
