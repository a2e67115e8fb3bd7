"""The UberNet model: an image pyramid through one trunk, BN on the taps, one branch per task.

``model(images, tasks=[...])`` returns ``{task: output}`` for the requested tasks only; a task that is not asked
for costs nothing. For training, :meth:`UberNet.features` and :meth:`UberNet.run_head` are exposed separately so
the memory-bounded backward (``ubernet.train.bounded``) can run each branch from detached shared features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ubernet.errors import ConfigError
from ubernet.models.branch_point import BranchPoint
from ubernet.models.trunks.base import TapSpec, Trunk
from ubernet.tasks.base import Task

#: features[scale][tap]: ``Tensor[B, C_tap, H_s / stride_tap, W_s / stride_tap]``.
Features = list[list[torch.Tensor]]


class UberNet(nn.Module):
    """Shared trunk + tap normalisation + per-task heads.

    Args:
        trunk: a :class:`~ubernet.models.trunks.base.Trunk` (declares its taps).
        tasks: task name -> :class:`~ubernet.tasks.base.Task`, in the order used everywhere.
        scales: image pyramid scales (1 first); ``(1.0,)`` disables the pyramid.
        tap_norm: ``"bn"`` (paper: BatchNorm on every tap but the last), ``"none"``.
        checkpoint_segments: when > 0, trunk activations are recomputed in the backward pass from at most this
            many anchor points (sqrt(L) is the classic choice), placed where activations are smallest
            (:meth:`Trunk.checkpoint_plan`), instead of being stored.
        stem_tap: when > 0, a light full-resolution tap of this many channels (two 3×3 convs on the normalised
            image) is prepended to the trunk's taps. It gives trunks without a stride-1 layer (ResNet,
            MobileNetV2) the pixel-accurate evidence VGG-16's conv1_2 gives boundary-like tasks; it belongs to
            the shared trunk (its parameters are in the trunk group).
    """

    def __init__(
        self,
        *,
        trunk: Trunk,
        tasks: Mapping[str, Task],
        scales: Sequence[float] = (1.0, 0.5, 0.25),
        tap_norm: str = "bn",
        checkpoint_segments: int = 0,
        stem_tap: int = 0,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("a model needs at least one task")
        scales = tuple(float(s) for s in scales)
        if not scales or scales[0] != 1.0 or any(not 0 < s <= 1 for s in scales):
            raise ConfigError(f"scales must start with 1.0 and lie in (0, 1], got {scales}")
        if tap_norm not in ("bn", "none"):
            raise ConfigError(f"tap_norm must be 'bn' or 'none', got {tap_norm!r}")
        self.trunk = trunk
        self.scales = scales
        self.checkpoint_segments = int(checkpoint_segments)
        taps: tuple[TapSpec, ...] = tuple(trunk.taps)
        self.stem: nn.Module | None = None
        if stem_tap > 0:
            self.stem = nn.Sequential(nn.Conv2d(3, stem_tap, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(stem_tap, stem_tap, 3, padding=1), nn.ReLU(inplace=True))
            taps = (TapSpec("stem_s1", stem_tap, 1), *taps)
        #: every tap the heads read: the optional stem tap, then the trunk's
        self.taps = taps
        norms: list[nn.Module] = []
        for i, tap in enumerate(taps):
            # The paper normalises every tapped layer except the last (fc7), bringing responses of very
            # different magnitudes into a common range before the linear skip layers.
            last = i == len(taps) - 1
            norms.append(nn.BatchNorm2d(tap.channels) if tap_norm == "bn" and not last else nn.Identity())
        self.tap_norms = nn.ModuleList(norms)
        self.tasks: dict[str, Task] = dict(tasks)
        self.heads = nn.ModuleDict(
            {name: task.build_head(taps=taps, num_scales=len(scales)) for name, task in self.tasks.items()}
        )

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters shared by every task: trunk, optional stem tap, tap norms (the "trunk" group)."""
        mods = [self.trunk, self.tap_norms] + ([self.stem] if self.stem is not None else [])
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def check_tasks(self, tasks: Iterable[str] | None) -> list[str]:
        """Validate requested task names (default: all of the model's tasks)."""
        if tasks is None:
            return self.task_names
        names = list(tasks)
        unknown = [t for t in names if t not in self.tasks]
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown}; this model has: {', '.join(self.task_names)}")
        return names

    # --- shared part -------------------------------------------------------------------------------------------
    def pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The normalised input at every scale. ``images``: ``Tensor[B, 3, H, W]`` RGB float in [0, 255]."""
        x = self.trunk.input_norm.apply(images)
        out = [x]
        h, w = int(x.shape[-2]), int(x.shape[-1])
        for s in self.scales[1:]:
            # Area interpolation = box filter: anti-aliased, exact for factors 1/2^k, and exportable.
            size = (max(1, round(h * s)), max(1, round(w * s)))
            out.append(F.interpolate(x, size=size, mode="area"))
        return out

    def trunk_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw tap tensors of one pyramid level (checkpointed when configured and gradients are on)."""
        if self.checkpoint_segments > 0 and torch.is_grad_enabled():
            return self.trunk.forward_checkpointed(x, self.checkpoint_segments)
        return self.trunk(x)

    def features(self, images: torch.Tensor) -> Features:
        """Normalised taps of every pyramid scale: ``features[scale][tap]``."""
        feats = []
        for x in self.pyramid(images):
            taps = self.trunk_taps(x)
            if self.stem is not None:
                taps = [self.stem(x), *taps]
            feats.append([norm(t) for norm, t in zip(self.tap_norms, taps)])
        return feats

    def branch_point(self, images: torch.Tensor) -> BranchPoint:
        """The shared features for memory-bounded training (needs ``checkpoint_segments > 0``): normalised
        taps as leaves for the branches, trunk recomputed segment by segment by ``BranchPoint.backward``."""
        if self.checkpoint_segments < 1:
            raise ConfigError("branch_point needs checkpoint_segments >= 1")
        return BranchPoint(self, images, self.checkpoint_segments)

    # --- branches ----------------------------------------------------------------------------------------------
    def run_head(
        self,
        name: str,
        feats: Features,
        *,
        image_hw: tuple[int, int],
        image_sizes: Sequence[tuple[int, int]],
        targets: Any = None,
    ) -> Any:
        """Run task ``name``'s branch on shared features (targets only matter to detection in training)."""
        return self.heads[name](feats, image_hw=image_hw, image_sizes=list(image_sizes), targets=targets)

    def predict(self, image: Any, tasks: Iterable[str] | None = None, *, bf16: bool = False,
                scales: Sequence[float] | None = None, flip: bool = False,
                precision: str | None = None) -> dict[str, Any]:
        """Post-processed predictions ``{task: numpy array (or detection dict)}`` for one image.

        ``image``: a numpy ``H×W``, ``H×W×3`` or ``H×W×4`` array (uint8, uint16 or float in [0, 1]) or a path.
        ``scales``: test scales, e.g. ``(0.5, 1, 1.5)``: dense outputs averaged over resized copies
        (:mod:`ubernet.multiscale`); default one pass. ``flip``: dense outputs also averaged over the mirrored
        image. ``precision``: ``"auto"`` (bf16 where the CPU runs it natively, :mod:`ubernet.hardware`),
        ``"fp32"`` or ``"bf16"``; when given it replaces ``bf16`` (default: fp32).
        """
        from pathlib import Path

        from ubernet.hardware import resolve_precision
        from ubernet.predict import predict_array, predict_image

        if precision is not None:
            bf16 = resolve_precision(precision).bf16

        if isinstance(image, (str, Path)):
            return predict_image(self, image, list(tasks) if tasks else None, bf16=bf16, scales=scales, flip=flip)[1]
        return predict_array(self, image, list(tasks) if tasks else None, bf16=bf16, scales=scales, flip=flip)

    def forward(
        self,
        images: torch.Tensor,
        tasks: Iterable[str] | None = None,
        *,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        targets: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Outputs of the requested tasks.

        Args:
            images: ``Tensor[B, 3, H, W]`` RGB float in [0, 255], padded at the bottom/right to a common size.
            tasks: task names to compute (default all); others are not run at all.
            image_sizes: real ``(H, W)`` of each image before padding (default: the padded size).
            targets: per-task collated targets, passed to heads that need them in training (detection).
        """
        names = self.check_tasks(tasks)
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        sizes = list(image_sizes) if image_sizes is not None else [hw] * images.shape[0]
        feats = self.features(images)
        return {
            n: self.run_head(n, feats, image_hw=hw, image_sizes=sizes, targets=(targets or {}).get(n))
            for n in names
        }
