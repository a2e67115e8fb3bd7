"""Boundary detection (BSDS): one channel at full resolution.

Losses: HED's class-balanced BCE (``loss="bce"``) or the paper's Multiple Instance Learning loss
(``loss="mil"``, its ref. [29], Kokkinos ICLR 2016). Human boundary annotations are only accurate to a few
pixels, so MIL treats each annotated boundary pixel as a *bag* of candidate locations — the pixels within
``mil_radius`` of it — and asks only that the best one fires: the positive term is ``-log max_{j in bag} p_j``
(a max-pool of the logits before the sigmoid, since sigmoid is monotone). Negatives are pixels farther than
``mil_radius`` from every positive; the ones in between are ignored. The ICLR paper's bags run along the
boundary normal; the square neighbourhood used here contains that segment and needs no orientation.

Prediction: sigmoid probabilities ``H×W`` in [0, 1]; evaluation applies edge NMS first (``nms=True``, as
HED/SE pipelines do before the BSDS benchmark, which thins but never suppresses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ubernet.data.sample import IGNORE, Sample
from ubernet.errors import ConfigError
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import BalancedBCE, LeanLoss, lean_loss
from ubernet.viz import gray_to_rgb


@register_task
class Boundaries(DenseTask):
    name = "boundaries"
    fields = ("boundaries",)
    default_stride = 1

    def __init__(self, *, loss: str = "bce", mil_radius: int = 1, nms: bool = True, thresholds: int = 99,
                 **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if loss not in ("bce", "mil"):
            raise ConfigError(f"boundaries.loss must be 'bce' or 'mil', got {loss!r}")
        self.loss_kind = loss
        self.mil_radius = int(mil_radius)
        self.nms = bool(nms)
        self.thresholds = int(thresholds)

    @property
    def out_channels(self) -> int:
        return 1

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample.targets["boundaries"])).float()[None]

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lean = self.lean_pixel_loss()
        if lean is not None:
            return lean_loss(lean, logits, target)
        return mil_loss(logits, target, target != IGNORE, radius=self.mil_radius)

    def lean_pixel_loss(self) -> LeanLoss | None:
        """HED's class-balanced BCE (``loss="bce"``) is memory-lean; MIL is a plain autograd loss."""
        return BalancedBCE(IGNORE) if self.loss_kind == "bce" else None

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)[:, 0]

    def make_metric(self):
        from ubernet.metrics.bsds import BoundaryMetric

        return BoundaryMetric(thresholds=self.thresholds)

    def ground_truth(self, sample: Sample) -> np.ndarray:
        """All annotators ``K×H×W`` bool when the sample keeps them, else the training map as one."""
        if "boundaries_annotators" in sample.targets:
            return np.asarray(sample.targets["boundaries_annotators"], dtype=bool)
        return (sample.targets["boundaries"] == 1)[None]

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        if self.nms:
            from ubernet.metrics.edge_nms import edge_nms

            prediction = edge_nms(prediction)
        metric.update(prediction, self.ground_truth(sample))

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return gray_to_rgb(prediction, invert=True)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "boundaries" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(prediction, 0, 1) * 65535 + 0.5).astype(np.uint16)).save(path)
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("ods", "ois", "ap")


def mil_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, *, radius: int) -> torch.Tensor:
    """Class-balanced MIL boundary loss, per image (see the module docstring).

    Args:
        logits: ``[B, 1, H, W]``; target: ``[B, 1, H, W]`` in {0, 1, 255}; valid: ``target != 255``.

    Returns:
        ``Tensor[B]``: (w+ · Σ_pos softplus(-max_bag logit) + w- · Σ_neg softplus(logit)) / #counted, where
        w+ = #neg / #counted and w- = #pos / #counted.
    """
    k = 2 * radius + 1
    pos = (target == 1) & valid
    near = F.max_pool2d(pos.float(), k, stride=1, padding=radius) > 0
    neg = valid & ~near
    # -inf outside the image so padding never wins the max.
    bag = F.max_pool2d(logits, k, stride=1, padding=radius)
    posf, negf = pos.float(), neg.float()
    dims = (1, 2, 3)
    n_pos, n_neg = posf.sum(dims), negf.sum(dims)
    n = (n_pos + n_neg).clamp(min=1)
    pos_term = (F.softplus(-bag) * posf).sum(dims)  # -log sigmoid(max)
    neg_term = (F.softplus(logits) * negf).sum(dims)  # -log(1 - sigmoid)
    return ((n_neg / n) * pos_term + (n_pos / n) * neg_term) / n
