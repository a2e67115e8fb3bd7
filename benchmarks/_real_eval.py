"""Prediction and scoring of the real benchmark.

Predictions are written as the tasks write them (boundaries: uint16 PNG soft maps before NMS; saliency: uint8
PNG) and scored *from the written files* with the very readers and metrics of ``ubernet score``, so that::

    ubernet score boundaries --pred OUT/pred/boundaries/val --gt DIR/bsds500/groundTruth/val --nms
    ubernet score saliency --pred OUT/pred/saliency/holdout --gt DIR/sod/masks --imageset OUT/holdout.txt

reproduce the reported numbers exactly. The exact BSDS matcher costs seconds per image; images are independent
(per-image counts are summed), so they are scored in ``workers`` processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ubernet.api import size_divisor
from ubernet.data.sample import Sample
from ubernet.evaluation import predict_samples
from ubernet.io.images import read_image
from ubernet.models.ubernet import UberNet
from ubernet.predict import as_rgb_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[tuple[str, Path]]:
    """``(stem, path)`` of the images of a folder, sorted; a clear error when there are none."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: image folder not found")
    items = sorted((p.stem, p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not items:
        raise SystemExit(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return items


@torch.inference_mode()
def predict_folder(model: UberNet, items: Sequence[tuple[str, Path]], pred_root: Path, split: str,
                   tasks: Sequence[str], *, bf16: bool = False,
                   scales: Sequence[float] | None = None) -> dict[str, Any]:
    """Predict ``tasks`` on each image (full size, padded to the coarsest stride; the model crops back) and write
    ``pred_root/<task>/<split>/<stem>.png``; ``scales``: multi-scale testing (``ubernet.multiscale``). Returns
    timing."""
    model.eval()
    div = size_divisor(model)
    t0 = time.time()
    for stem, path in items:
        rgb = np.array(as_rgb_image(read_image(path), where=str(path)))  # writable: torch.from_numpy warns otherwise
        pred = predict_samples(model, [Sample(image=rgb)], list(tasks), bf16=bf16, size_divisor=div, scales=scales)[0]
        for t in tasks:
            model.tasks[t].save(pred[t], pred_root, f"{split}/{stem}")  # -> pred_root/<task>/<split>/<stem>.png
    n = max(len(items), 1)
    return {"images": len(items), "seconds": round(time.time() - t0, 2),
            "seconds_per_image": round((time.time() - t0) / n, 3)}


# --- boundaries ------------------------------------------------------------------------------------------------
def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def _boundary_counts(job: tuple[str, str, int, bool]) -> tuple[np.ndarray, float]:
    """One image's N×4 counts, exactly as ``ubernet score boundaries`` computes them (read back, NMS, match)."""
    from ubernet.metrics import files
    from ubernet.metrics.bsds import evaluate_boundaries
    from ubernet.metrics.edge_nms import edge_nms

    pred_path, gt_path, thresholds, nms = job
    t = time.process_time()
    gt = files.read_bsds_gt(Path(gt_path))
    pred = files.read_soft_map(Path(pred_path))
    if pred.shape != gt.shape[1:]:
        raise ValueError(f"{pred_path}: {pred.shape} differs from the ground truth {gt.shape[1:]} of {gt_path}")
    counts = evaluate_boundaries(edge_nms(pred) if nms else pred, gt, thresholds=thresholds)
    return counts, time.process_time() - t


def score_boundaries(pred_dir: Path, gt_dir: Path, stems: Sequence[str], *, workers: int = 2,
                     thresholds: int = 99, nms: bool = True) -> dict[str, Any]:
    """ODS / OIS / AP of ``pred_dir/<stem>.png`` against ``gt_dir/<stem>.mat`` (exact matcher, all annotators)."""
    from ubernet.metrics.bsds import summarize, thresholds_for

    jobs = [(str(pred_dir / f"{s}.png"), str(gt_dir / f"{s}.mat"), thresholds, nms) for s in stems]
    t0 = time.time()
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            out = pool.map(_boundary_counts, jobs, chunksize=1)
    else:
        out = [_boundary_counts(j) for j in jobs]
    res = summarize(thresholds_for(thresholds), [c for c, _ in out])
    cpu = [s for _, s in out]
    return {
        "ods": res["ods"], "ois": res["ois"], "ap": res["ap"], "ods_threshold": res["ods_threshold"],
        "ods_recall": res["ods_recall"], "ods_precision": res["ods_precision"], "images": len(stems),
        "mode": "exact", "nms": nms, "thresholds": thresholds, "workers": workers,
        "seconds": round(time.time() - t0, 1), "cpu_seconds_per_image": round(float(np.mean(cpu)), 2) if cpu else 0,
        "curve": {"recall": res["recall"], "precision": res["precision"]},
    }


# --- saliency --------------------------------------------------------------------------------------------------
def score_saliency(pred_dir: Path, mask_dir: Path, stems: Sequence[str]) -> dict[str, Any]:
    """Max F (beta² = 0.3) and MAE of ``pred_dir/<stem>.png`` against ``mask_dir/<stem>.png``."""
    from ubernet.metrics import files
    from ubernet.metrics.saliency import SaliencyMetric

    metric = SaliencyMetric()
    for s in stems:
        gt = files.read_png(mask_dir / f"{s}.png")
        metric.update(files.read_soft_map(pred_dir / f"{s}.png"), gt)
    res = metric.compute()
    return {"maxf": float(res["maxf"]), "mae": float(res["mae"]), "images": len(stems)}
