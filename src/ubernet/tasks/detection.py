"""Region proposals + object detection (paper's task g, its ref. [48]: Faster R-CNN) on the shared trunk.

The branch is an RPN + Fast R-CNN head (``ubernet.detection.DetectionHead``) reading one tap of the finest
pyramid level. Default tap: ``conv5_3`` on VGG-16 (the paper's and Faster R-CNN's choice: the deepest
convolutional layer before the fc layers, stride 8 or 16 with atrous convolution), otherwise the deepest tap of
stride 16 (ResNet ``layer3`` as in Faster R-CNN's C4 variant; MobileNetV2's stride-16 block), otherwise the
deepest tap. The finest level carries all the resolution small objects need; coarser levels add cost, not recall.

Boxes everywhere in the project are continuous 0-based ``x1, y1, x2, y2`` with ``x2, y2`` exclusive; files and the
VOC metric use VOC's 1-based inclusive pixels (``ubernet.metrics.voc.from_continuous``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TapSpec
from ubernet.tasks.base import Task, register_task
from ubernet.viz import draw_boxes


@dataclass
class DetectionOutput:
    """Per-image detections (eval mode) and named losses (training with targets)."""

    detections: list[dict[str, torch.Tensor]] = field(default_factory=list)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


class DetectionBranch(nn.Module):
    """Adapts the detection head to the common branch signature: picks its tap from the finest scale."""

    def __init__(self, head: nn.Module, tap_index: int) -> None:
        super().__init__()
        self.head = head
        self.tap_index = tap_index

    def tap_reads(self, num_scales: int) -> list[tuple[int, int]]:
        """The ``(scale, tap)`` features :meth:`forward` reads: one tap of the finest scale."""
        return [(0, self.tap_index)]

    def forward(self, feats: Sequence[Sequence[torch.Tensor]], *, image_hw: tuple[int, int],
                image_sizes: Sequence[tuple[int, int]], targets: Any = None) -> DetectionOutput:
        x = feats[0][self.tap_index]
        dets, losses = self.head(x, list(image_sizes), targets if self.training else None)
        return DetectionOutput(detections=dets, losses=losses)


def default_tap(taps: Sequence[TapSpec]) -> int:
    """Index of the default detection tap (see the module docstring)."""
    names = [t.name for t in taps]
    if "conv5_3" in names:
        return names.index("conv5_3")
    s16 = [i for i, t in enumerate(taps) if t.stride == 16]
    return s16[-1] if s16 else len(taps) - 1


@register_task
class Detection(Task):
    name = "detection"
    fields = ("boxes", "labels", "difficult")
    kind = "instance"

    def __init__(self, *, num_classes: int, class_names: Sequence[str] | None = None, tap: str | None = None,
                 draw_threshold: float = 0.5, loss_weight: float = 1.0, **head_options: Any) -> None:
        """``num_classes`` counts object classes (no background); ``class_names`` names them (labels 1..C);
        ``head_options`` go to ``DetectionHead`` (anchor sizes, representation size, pooler, NMS, ...)."""
        super().__init__(loss_weight=loss_weight)
        if int(num_classes) < 1:
            raise ConfigError(f"detection.num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        names = list(class_names) if class_names is not None else [f"class{i}" for i in range(1, num_classes + 1)]
        if len(names) != self.num_classes:
            raise ConfigError(f"detection.class_names has {len(names)} names for {num_classes} classes")
        self.class_names = names
        self.tap = tap
        self.draw_threshold = float(draw_threshold)
        self.head_options = dict(head_options)

    def build_head(self, *, taps: Sequence[TapSpec], num_scales: int) -> DetectionBranch:
        from ubernet.detection import DetectionHead

        if self.tap is None:
            idx = default_tap(taps)
        else:
            names = [t.name for t in taps]
            if self.tap not in names:
                raise ConfigError(f"detection.tap {self.tap!r} is not a tap of this trunk; taps: {names}")
            idx = names.index(self.tap)
        try:
            head = DetectionHead(in_channels=taps[idx].channels, feature_stride=taps[idx].stride,
                                 num_classes=self.num_classes, **self.head_options)
        except TypeError as e:
            raise ConfigError(f"detection: {e}") from e
        return DetectionBranch(head, idx)

    def collate(self, samples: Sequence[Sample], image_hw: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        out = []
        for s in samples:
            t = s.targets
            labels = torch.as_tensor(np.asarray(t["labels"]), dtype=torch.int64)
            if len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
                raise ValueError(f"sample {s.id!r}: box labels must be in 1..{self.num_classes}, got "
                                 f"{sorted(set(labels.tolist()))}")
            out.append({"boxes": torch.as_tensor(np.asarray(t["boxes"], dtype=np.float32)).reshape(-1, 4),
                        "labels": labels,
                        "difficult": torch.as_tensor(np.asarray(t["difficult"], dtype=bool))})
        return out

    def loss(self, output: DetectionOutput, targets: Any) -> dict[str, torch.Tensor]:
        # The head averages over the anchors/RoIs sampled from the whole batch; scaling by the number of images
        # turns that into the project's "sum over images" convention (identical for the usual 1-image steps).
        n = len(targets) if targets is not None else 1
        return {k: v.float() * n for k, v in output.losses.items()}

    def predict(self, output: DetectionOutput, image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, np.ndarray]]:
        return [{"boxes": d["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
                 "scores": d["scores"].detach().float().cpu().numpy(),
                 "labels": d["labels"].detach().cpu().numpy().astype(np.int64)} for d in output.detections]

    def make_metric(self) -> Any:
        from ubernet.metrics.voc import VOCDetectionMetric

        return VOCDetectionMetric(self.class_names)

    def update_metric(self, metric: Any, prediction: dict[str, np.ndarray], sample: Sample) -> None:
        from ubernet.metrics.voc import from_continuous

        t = sample.targets
        metric.update(sample.id, from_continuous(prediction["boxes"]), prediction["scores"], prediction["labels"],
                      from_continuous(np.asarray(t["boxes"], dtype=np.float32).reshape(-1, 4)),
                      np.asarray(t["labels"]), np.asarray(t["difficult"], dtype=bool))

    def draw(self, prediction: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
        keep = prediction["scores"] >= self.draw_threshold
        return draw_boxes(image, prediction["boxes"][keep], prediction["labels"][keep],
                          ["background", *self.class_names], prediction["scores"][keep])

    def save(self, prediction: dict[str, np.ndarray], out_dir: Path, stem: str) -> list[Path]:
        """``<stem>.txt``: one ``class_name score x1 y1 x2 y2`` line per detection, VOC 1-based inclusive."""
        from ubernet.metrics.voc import from_continuous

        path = Path(out_dir) / "detection" / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        boxes = from_continuous(prediction["boxes"])
        lines = [f"{self.class_names[int(lab) - 1]} {float(s):.6f} {b[0]:.1f} {b[1]:.1f} {b[2]:.1f} {b[3]:.1f}"
                 for b, s, lab in zip(boxes, prediction["scores"], prediction["labels"])]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("map_voc07", "map_voc10")
