"""Evaluate a model on a set of samples with every task's published protocol."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ubernet.data.sample import Sample
from ubernet.metrics.pool import available_cores, metric_workers
from ubernet.models.ubernet import UberNet
from ubernet.train.engine import collate_images


@torch.inference_mode()
def predict_samples(model: UberNet, samples: Sequence[Sample], tasks: Sequence[str] | None = None, *,
                    bf16: bool = False, size_divisor: int = 1,
                    scales: Sequence[float] | None = None, flip: bool = False) -> list[dict[str, Any]]:
    """Predictions ``[{task: numpy prediction}]`` for a batch of samples (model in eval mode).

    ``scales``: test scales for multi-scale testing (:mod:`ubernet.multiscale`); None or ``[1.0]`` = one pass.
    ``flip``: dense tasks averaged with their prediction on the mirrored image too (at every test scale).
    """
    if flip or (scales is not None and tuple(float(s) for s in scales) != (1.0,)):
        from ubernet.multiscale import predict_multiscale

        return predict_multiscale(model, samples, tasks, scales=(1.0,) if scales is None else scales, flip=flip,
                                  bf16=bf16, size_divisor=size_divisor)
    names = model.check_tasks(tasks)
    images, sizes = collate_images(samples, size_divisor)
    device = next(model.parameters()).device
    images = images.to(device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with ctx:
        outputs = model(images, names, image_sizes=sizes)
    per_task = {n: model.tasks[n].predict(outputs[n], sizes) for n in names}
    return [{n: per_task[n][i] for n in names} for i in range(len(samples))]


def evaluate(model: UberNet, samples: Iterable[Sample], *, tasks: Sequence[str] | None = None, bf16: bool = False,
             size_divisor: int = 1, progress: bool = True, total: int | None = None,
             workers: int | None = 1, scales: Sequence[float] | None = None,
             flip: bool = False) -> dict[str, dict[str, Any]]:
    """Run the model on every sample and score each task on the samples labelled for it.

    ``workers``: processes for the exact boundary matchers (BSDS, SBD), which score one image while the model
    predicts the next (:mod:`ubernet.metrics.pool`; identical results); ``None`` or 0 = one per available core.
    ``scales``: test scales of multi-scale testing (:mod:`ubernet.multiscale`; None = one pass); ``flip``: dense
    tasks also averaged over the mirrored image.
    Returns ``{task: metric results}`` (the metric's ``compute()``), plus ``{"images": n}`` per task.
    """
    with metric_workers(workers) as n, _model_threads(n):
        return _evaluate(model, samples, tasks=tasks, bf16=bf16, size_divisor=size_divisor, progress=progress,
                         total=total, scales=scales, flip=flip)


@contextmanager
def _model_threads(workers: int) -> Iterator[None]:
    """With ``workers`` scoring processes busy on the available cores, the model's forward passes use the cores
    left, at least one thread. Oversubscribed intra-op threads stall at every parallel region: on the demo (2
    cores, 2 scorers, 200 images) the forward passes took 76 s of CPU with 2 threads and 16 s with 1, and the
    evaluation 83 s -> 51 s of wall time."""
    if workers <= 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, available_cores() - workers + 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(model: UberNet, samples: Iterable[Sample], *, tasks: Sequence[str] | None, bf16: bool,
              size_divisor: int, progress: bool, total: int | None,
              scales: Sequence[float] | None = None, flip: bool = False) -> dict[str, dict[str, Any]]:
    was_training = model.training
    model.eval()
    names = model.check_tasks(tasks)
    metrics = {n: model.tasks[n].make_metric() for n in names}
    counts = dict.fromkeys(names, 0)
    for s in tqdm(samples, total=total, desc="evaluate", disable=not progress, leave=False):
        labelled = [n for n in names if s.has(n)]
        if not labelled:
            continue
        pred = predict_samples(model, [s], labelled, bf16=bf16, size_divisor=size_divisor, scales=scales,
                               flip=flip)[0]
        for n in labelled:
            model.tasks[n].update_metric(metrics[n], pred[n], s)
            counts[n] += 1
    model.train(was_training)
    out = {}
    for n in names:
        if counts[n]:
            res = metrics[n].compute()
            res["images"] = counts[n]
            out[n] = res
    return out


def headline(results: dict[str, dict[str, Any]], model: UberNet) -> dict[str, dict[str, float]]:
    """The summary keys of each task (floats only), for tables and metrics.json."""
    out = {}
    for n, res in results.items():
        keys = model.tasks[n].summary_keys() or tuple(k for k, v in res.items() if isinstance(v, float))
        out[n] = {k: float(res[k]) for k in keys if k in res and np.isscalar(res[k])}
    return out
