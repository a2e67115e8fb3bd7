"""Multi-scale testing: dense predictions averaged over resized copies of the input.

The protocol of HED (Xie & Tu 2015) and RCF (Liu et al. 2017) for boundaries, and of DeepLab for segmentation:
the image is resized by each test scale ``s`` (bilinear, anti-aliased when shrinking), the network predicts on it,
each dense task's *soft* map (:meth:`~ubernet.tasks.dense.DenseTask.soft`: probabilities, unit normals, class
probabilities) is resized back to the image's own size (bilinear, half-pixel centres) and the maps are averaged;
the task then turns the average into its prediction (:meth:`~ubernet.tasks.dense.DenseTask.from_soft`: the average
itself, a renormalised normal, an argmax label map). This is independent of the model's own image pyramid
(``model.scales``), which every pass still runs.

With ``flip``, every scale is also run on the left-right mirrored image and its soft maps, mirrored back, join
the average (the flip of DeepLab's and many boundary detectors' test protocols; normals negate their x component).

Tasks that are not dense (detection) are predicted once, from the unmirrored pass at scale 1.
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
from ubernet.train.engine import pad_images, writable


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[N, C, h, w]`` to ``size`` (anti-aliased when shrinking)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _batch(samples: Sequence[Sample], scale: float, divisor: int,
           mirror: bool = False) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The samples' images resized by ``scale`` (and mirrored left-right, with ``mirror``), as
    ``Tensor[B, 3, H, W]`` in [0, 255] zero-padded bottom/right to a common size rounded up to ``divisor``, and
    each image's resized real size."""
    imgs = []
    for s in samples:
        h, w = s.size
        x = torch.from_numpy(writable(s.image)).permute(2, 0, 1)[None].float()
        if mirror:
            x = x.flip(-1)  # before padding, so that every image keeps its padding at the bottom/right
        imgs.append(_resize(x, (max(1, round(h * scale)), max(1, round(w * scale)))).clamp_(0, 255)[0])
    return pad_images(imgs, divisor)


@torch.inference_mode()
def predict_multiscale(model: UberNet, samples: Sequence[Sample], tasks: Sequence[str] | None = None, *,
                       scales: Sequence[float] = (0.5, 1.0, 1.5), flip: bool = False, bf16: bool = False,
                       size_divisor: int = 1) -> list[dict[str, Any]]:
    """Predictions ``[{task: numpy prediction}]`` as :func:`ubernet.evaluation.predict_samples` returns them,
    with every dense task averaged over the test ``scales`` (see the module docstring) and, with ``flip``, over
    the left-right mirrored image at each scale too (each task mirrors its soft map back:
    :meth:`~ubernet.tasks.dense.DenseTask.mirror_soft`)."""
    names = model.check_tasks(tasks)
    scales = check_scales(scales)
    dense = [n for n in names if isinstance(model.tasks[n], DenseTask)]
    other = [n for n in names if n not in dense]
    passes = [(s, False) for s in (scales if (1.0 in scales or not other) else [*scales, 1.0])]
    if flip:
        passes += [(s, True) for s in scales]
    device = next(model.parameters()).device
    sums: dict[str, list[torch.Tensor | None]] = {n: [None] * len(samples) for n in dense}
    per_other: dict[str, list[Any]] = {}
    for s, mirror in passes:
        run_dense = dense if s in scales else []
        run = run_dense + (other if s == 1.0 and not mirror else [])
        if not run:
            continue  # a mirrored pass of a model asked for no dense task
        images, sizes = _batch(samples, s, size_divisor, mirror)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            outputs = model(images.to(device), run, image_sizes=sizes)
        for n in run_dense:
            task = model.tasks[n]
            assert isinstance(task, DenseTask)
            soft = task.soft(task.upsample(outputs[n].fused.float()))
            for i, smp in enumerate(samples):
                m = soft[i:i + 1, ..., : sizes[i][0], : sizes[i][1]]
                if mirror:
                    m = task.mirror_soft(m)
                m = _resize(m if m.dim() == 4 else m[:, None], smp.size)  # [1, C', H, W]
                m = m if soft.dim() == 4 else m[:, 0]
                sums[n][i] = m if sums[n][i] is None else sums[n][i] + m  # type: ignore[operator]
        for n in other if s == 1.0 and not mirror else []:
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
                avg = sums[n][i] / (len(scales) * (2 if flip else 1))  # type: ignore[operator]
                pred[n] = task.to_numpy(task.from_soft(avg)[0])
        out.append(pred)
    return out
