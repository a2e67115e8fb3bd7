"""Speed of the evaluators on one CPU core (``OMP_NUM_THREADS=1``).

Boundaries: BSDS500 val images (481×321, ~5 annotators, 99 thresholds, exact matcher), with two realistic soft
predictions: ``sobel+nms`` (a Sobel gradient of the smoothed grey image after edge NMS, a weak detector with many
spurious edges) and ``good+nms`` (the annotators' mean boundary map blurred, plus smooth noise, after edge NMS, a
strong detector). The other evaluators run on random arrays of the usual dataset sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_eval.py --images 5 --repeats 3

Prints a Markdown table: median seconds over ``--repeats`` runs (CPU time of this process, and wall time).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500"


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def _bsds_images(root: Path, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from PIL import Image

    from ubernet.metrics.files import read_bsds_gt

    out = []
    for mat in sorted((root / "groundTruth" / "val").glob("*.mat"))[:n]:
        img = Image.open(root / "images" / "val" / f"{mat.stem}.jpg").convert("L")
        out.append((mat.stem, np.asarray(img, np.float64) / 255.0, read_bsds_gt(mat)))
    return out


def _predictions(img: np.ndarray, gts: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    from ubernet.metrics.edge_nms import edge_nms

    g = ndimage.gaussian_filter(img, 1.5)
    sob = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    rng = np.random.default_rng(seed)
    good = ndimage.gaussian_filter(gts.mean(0), 1.5)
    good = np.clip(good / good.max() + 0.05 * ndimage.gaussian_filter(rng.standard_normal(good.shape), 2), 0, 1)
    # quantised to 8 bits, as a PNG written by any method would be
    return {name: np.round(edge_nms(p / p.max()) * 255) / 255 for name, p in (("sobel+nms", sob), ("good+nms", good))}


def bench_boundaries(n_images: int, repeats: int, rows: list[tuple[str, str, float, float]]) -> None:
    from ubernet.metrics.bsds import BoundaryMetric, evaluate_boundaries
    from ubernet.metrics.bsds_fast import evaluate_boundaries_fast
    from ubernet.metrics.edge_nms import edge_nms
    from ubernet.metrics.thin import thin

    if not (DATA / "groundTruth" / "val").is_dir():
        print(f"(no BSDS500 data at {DATA}: boundary benchmark skipped)")
        return
    images = _bsds_images(DATA, n_images)
    preds = [(stem, gts, _predictions(img, gts, k)) for k, (stem, img, gts) in enumerate(images)]
    for name in ("sobel+nms", "good+nms"):
        cpu, wall = [], []
        fast_cpu, fast_wall = [], []
        metric = BoundaryMetric()
        for _stem, gts, p in preds:
            pred = p[name]
            c, w = _timed(lambda pred=pred, gts=gts: evaluate_boundaries(pred, gts), repeats)
            cpu.append(c)
            wall.append(w)
            metric.per_image.append(evaluate_boundaries(pred, gts))
            thr = metric.thresholds
            c, w = _timed(
                lambda pred=pred, gts=gts, thr=thr: evaluate_boundaries_fast(pred, gts, thresholds=thr), repeats
            )
            fast_cpu.append(c)
            fast_wall.append(w)
        r = metric.compute()
        what = (
            f"BSDS exact, 99 thr, {len(preds)} val images ({name}; ODS {r['ods']:.3f} OIS {r['ois']:.3f} "
            f"AP {r['ap']:.3f})"
        )
        rows.append((what, "s / image", statistics.median(cpu), statistics.median(wall)))
        rows.append(
            (
                f"BSDS --fast (APPROXIMATE), 99 thr ({name})",
                "s / image",
                statistics.median(fast_cpu),
                statistics.median(fast_wall),
            )
        )
    _stem, img, gts = images[0]
    soft = ndimage.gaussian_filter(img, 1.5)
    c, w = _timed(lambda: edge_nms(soft), repeats)
    rows.append(("edge_nms, 481×321", "s / image", c, w))
    blob = soft > np.quantile(soft, 0.5)
    c, w = _timed(lambda: thin(blob), repeats)
    rows.append(("thin (bwmorph 'thin' Inf), 481×321, half the pixels on", "s / map", c, w))


def bench_reference() -> None:
    """Optional: the pyEdgeEval port of the benchmark (C++ CSA via Cython), when installed, on the first image."""
    import sys
    import types

    from ubernet.metrics.bsds import evaluate_boundaries, summarize, thresholds_for

    # pyEdgeEval imports OpenCV for an NMS we do not call; a stub avoids installing it
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    try:
        from pyEdgeEval.common.binary_label.evaluate_boundaries import (
            evaluate_boundaries_threshold_multiple_gts as ref_eval,
        )
    except ImportError:
        print("(pyEdgeEval not installed: reference comparison skipped)")
        return
    stem, img, gts = _bsds_images(DATA, 1)[0]
    pred = _predictions(img, gts, 0)["sobel+nms"]
    thr = thresholds_for(99)
    c0 = time.process_time()
    ref = np.stack(ref_eval(thr, pred, gts.astype(float), max_dist=0.0075, apply_thinning=True)[:4], 1)
    c1 = time.process_time()
    ours = evaluate_boundaries(pred, gts, thresholds=thr)
    c2 = time.process_time()
    a, b = summarize(thr, [ours]), summarize(thr, [ref])
    d = ours - ref
    print(
        f"reference on {stem} (sobel+nms, 99 thr): pyEdgeEval {c1 - c0:.1f} s CPU, ours {c2 - c1:.1f} s CPU; "
        f"ODS {a['ods']:.5f} vs {b['ods']:.5f}, OIS {a['ois']:.5f} vs {b['ois']:.5f}, AP {a['ap']:.5f} vs "
        f"{b['ap']:.5f}; sumP equal {bool((d[:, 3] == 0).all())}, "
        f"cntR diff {d[:, 0].min():+.0f}..{d[:, 0].max():+.0f}, cntP diff {d[:, 2].min():+.0f}..{d[:, 2].max():+.0f}\n"
    )


def bench_others(repeats: int, rows: list[tuple[str, str, float, float]]) -> None:
    from ubernet.metrics.normals import NormalsMetric
    from ubernet.metrics.saliency import SaliencyMetric
    from ubernet.metrics.segmentation import IoUMetric
    from ubernet.metrics.voc import VOCDetectionMetric

    rng = np.random.default_rng(0)
    sal_p, sal_g = rng.random((321, 481)), rng.random((321, 481)) > 0.7

    def saliency() -> None:
        m = SaliencyMetric()
        for _ in range(10):
            m.update(sal_p, sal_g)
        m.compute()

    c, w = _timed(saliency, repeats)
    rows.append(("saliency max F + MAE, 481×321", "s / image", c / 10, w / 10))
    seg_p, seg_g = rng.integers(0, 21, (375, 500)), rng.integers(0, 21, (375, 500))
    seg_g[:20] = 255

    def iou() -> None:
        m = IoUMetric(21)
        for _ in range(10):
            m.update(seg_p, seg_g)
        m.compute()

    c, w = _timed(iou, repeats)
    rows.append(("mean IoU, 21 classes, 500×375", "s / image", c / 10, w / 10))
    n_p, n_g = rng.standard_normal((480, 640, 3)), rng.standard_normal((480, 640, 3))

    def normals() -> None:
        m = NormalsMetric()
        for _ in range(10):
            m.update(n_p, n_g)
        m.compute()

    c, w = _timed(normals, repeats)
    rows.append(("normals (exact pooled median), 640×480", "s / image", c / 10, w / 10))
    classes = [f"c{i}" for i in range(20)]

    def voc() -> None:
        m = VOCDetectionMetric(classes)
        for i in range(500):
            xy = rng.uniform(1, 400, (3, 2))
            gtb = np.hstack([xy, xy + rng.uniform(20, 100, (3, 2))])
            xy = rng.uniform(1, 400, (50, 2))
            det = np.hstack([xy, xy + rng.uniform(20, 100, (50, 2))])
            m.update(
                str(i), det, rng.random(50), rng.integers(1, 21, 50), gtb, rng.integers(1, 21, 3), rng.random(3) < 0.1
            )
        m.compute()

    c, w = _timed(voc, repeats)
    rows.append(("VOC07 + VOC10 AP, 500 images × 50 detections, 20 classes", "s / dataset", c, w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5, help="BSDS val images for the boundary benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-boundaries", action="store_true")
    ap.add_argument("--reference", action="store_true", help="also time pyEdgeEval on one image, if installed")
    args = ap.parse_args()
    rows: list[tuple[str, str, float, float]] = []
    if args.reference:
        bench_reference()
    if not args.skip_boundaries:
        bench_boundaries(args.images, args.repeats, rows)
    bench_others(args.repeats, rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs, load average {load:.1f}, "
        f"median of {args.repeats} runs\n"
    )
    print("| evaluator | unit | CPU s | wall s |\n|---|---|---:|---:|")
    for what, unit, c, w in rows:
        print(f"| {what} | {unit} | {c:.3f} | {w:.3f} |")


if __name__ == "__main__":
    main()
