"""Multi-scale testing: dense predictions averaged over resized copies of the input.

The protocol of HED (Xie & Tu 2015) and RCF (Liu et al. 2017) for boundaries, and of DeepLab for segmentation:
the image is resized by each test scale ``s`` (bilinear, anti-aliased when shrinking), the network predicts on it,
each dense task's *soft* map (:meth:`~ubernet.tasks.dense.DenseTask.soft`: probabilities, unit normals, class
probabilities) is resized back to the image's own size (bilinear, half-pixel centres) and the maps are averaged;
the task then turns the average into its prediction (:meth:`~ubernet.tasks.dense.DenseTask.from_soft`: the average
itself, a renormalised normal, an argmax label map). This is independent of the model's own image pyramid
(``model.scales``), which every pass still runs.

Tasks that are not dense (detection) are predicted once, from the pass at scale 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from ubernet.config import check_scales
from ubernet.data.sample import Sample
from ubernet.models.ubernet import UberNet
from ubernet.tasks.dense import DenseTask
from ubernet.train.engine import pad_images


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[N, C, h, w]`` to ``size`` (anti-aliased when shrinking)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _batch(samples: Sequence[Sample], scale: float, divisor: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The samples' images resized by ``scale``, as ``Tensor[B, 3, H, W]`` in [0, 255] zero-padded bottom/right to
    a common size rounded up to ``divisor``, and each image's resized real size."""
    imgs = []
    for s in samples:
        h, w = s.size
        x = torch.from_numpy(s.image).permute(2, 0, 1)[None].float()
        imgs.append(_resize(x, (max(1, round(h * scale)), max(1, round(w * scale)))).clamp_(0, 255)[0])
    return pad_images(imgs, divisor)


@torch.inference_mode()
def predict_multiscale(model: UberNet, samples: Sequence[Sample], tasks: Sequence[str] | None = None, *,
                       scales: Sequence[float] = (0.5, 1.0, 1.5), bf16: bool = False,
                       size_divisor: int = 1) -> list[dict[str, Any]]:
    """Predictions ``[{task: numpy prediction}]`` as :func:`ubernet.evaluation.predict_samples` returns them,
    with every dense task averaged over the test ``scales`` (see the module docstring)."""
    names = model.check_tasks(tasks)
    scales = check_scales(scales)
    dense = [n for n in names if isinstance(model.tasks[n], DenseTask)]
    other = [n for n in names if n not in dense]
    passes = list(scales) if (1.0 in scales or not other) else [*scales, 1.0]
    device = next(model.parameters()).device
    sums: dict[str, list[torch.Tensor | None]] = {n: [None] * len(samples) for n in dense}
    per_other: dict[str, list[Any]] = {}
    for s in passes:
        run_dense = dense if s in scales else []
        run = run_dense + (other if s == 1.0 else [])
        images, sizes = _batch(samples, s, size_divisor)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            outputs = model(images.to(device), run, image_sizes=sizes)
        for n in run_dense:
            task = model.tasks[n]
            assert isinstance(task, DenseTask)
            soft = task.soft(task.upsample(outputs[n].fused.float()))
            for i, smp in enumerate(samples):
                m = soft[i:i + 1, ..., : sizes[i][0], : sizes[i][1]]
                m = _resize(m if m.dim() == 4 else m[:, None], smp.size)  # [1, C', H, W]
                m = m if soft.dim() == 4 else m[:, 0]
                sums[n][i] = m if sums[n][i] is None else sums[n][i] + m  # type: ignore[operator]
        for n in other if s == 1.0 else []:
            per_other[n] = model.tasks[n].predict(outputs[n], sizes)
    out: list[dict[str, Any]] = []
    for i in range(len(samples)):
        pred: dict[str, Any] = {}
        for n in names:
            if n in per_other:
                pred[n] = per_other[n][i]
            else:
                task = model.tasks[n]
                assert isinstance(task, DenseTask)
                avg = sums[n][i] / len(scales)  # type: ignore[operator]
                pred[n] = task.to_numpy(task.from_soft(avg)[0])
        out.append(pred)
    return out
