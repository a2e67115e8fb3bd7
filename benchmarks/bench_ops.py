"""Speed of the detection ops: pure-PyTorch RoIAlign / RoIPool / NMS, and torchvision's where it runs.

Configurations (the issue's): RoIAlign of 512 RoIs on a 256x50x50 feature map (stride 16, i.e. an 800x800
image), 7x7 bins, sampling ratio 2 and adaptive (-1), forward and forward+backward; RoIPool on the same; NMS at
IoU 0.7 on 2,000 and 6,000 boxes, both uniformly scattered (almost all kept: the slow case) and RPN-like clusters.
Each figure is the median over ``--runs`` runs of wall time and of this process's CPU time
(``time.process_time``; on a shared machine wall time also counts waiting for a core). ``--threads`` intra-op
threads (default 1, so the figures are per core). torchvision columns appear only when it imports and its ops
run.

Usage::

    .venv/bin/python benchmarks/bench_ops.py                  # prints a Markdown table
    .venv/bin/python benchmarks/bench_ops.py --runs 9 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ubernet.ops import nms_torch, roi_align_torch, roi_pool_torch, torchvision_ops


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median (wall ms, CPU ms) of ``runs`` calls after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def roi_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, 256, 50, 50, generator=g)
    xy = torch.rand(512, 2, generator=g) * 700
    wh = 16 + torch.rand(512, 2, generator=g) * 300
    rois = torch.cat((torch.zeros(512, 1), xy, (xy + wh).clamp(max=800)), dim=1)
    return feats, rois


def nms_inputs(n: int, kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":  # boxes 10-210 px scattered over 1000x1000: few overlaps, ~90 % kept
        xy = torch.rand(n, 2, generator=g) * 1000
        boxes = torch.cat((xy, xy + 10 + torch.rand(n, 2, generator=g) * 200), 1)
    else:  # RPN-like: 40-120 px boxes jittered around n/20 object centres
        centres = torch.rand(n // 20, 2, generator=g) * 800
        c = centres[torch.randint(0, len(centres), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 10
        wh = 40 + torch.rand(n, 2, generator=g) * 80
        boxes = torch.cat((c - wh / 2, c + wh / 2), 1)
    return boxes, torch.rand(n, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tv = torchvision_ops()
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []

    feats, rois = roi_inputs()
    for sr in (2, -1):
        rows.append(
            (
                f"roi_align 512 RoIs, 256x50x50, 7x7, sampling {sr}, forward",
                timed(lambda sr=sr: roi_align_torch(feats, rois, 7, 1 / 16, sr, True), args.runs),
                timed(lambda sr=sr: tv.roi_align(feats, rois, 7, 1 / 16, sr, True), args.runs) if tv else None,
            )
        )
    fg = feats.clone().requires_grad_()

    def fwd_bwd(op: Callable[..., torch.Tensor]) -> Callable[[], None]:
        return lambda: op(fg, rois, 7, 1 / 16, 2, True).sum().backward()

    rows.append(
        (
            "roi_align same, sampling 2, forward + backward",
            timed(fwd_bwd(roi_align_torch), args.runs),
            timed(fwd_bwd(tv.roi_align), args.runs) if tv else None,
        )
    )
    rows.append(
        (
            "roi_pool 512 RoIs, 256x50x50, 7x7, forward",
            timed(lambda: roi_pool_torch(feats, rois, 7, 1 / 16), args.runs),
            timed(lambda: tv.roi_pool(feats, rois, 7, 1 / 16), args.runs) if tv else None,
        )
    )
    for n in (2000, 6000):
        for kind in ("uniform", "clustered"):
            boxes, scores = nms_inputs(n, kind)
            kept = nms_torch(boxes, scores, 0.7).numel()
            rows.append(
                (
                    f"nms {n} boxes, {kind} ({kept} kept), IoU 0.7",
                    timed(lambda b=boxes, s=scores: nms_torch(b, s, 0.7), args.runs),
                    timed(lambda b=boxes, s=scores: tv.nms(b, s, 0.7), args.runs) if tv else None,
                )
            )

    print(
        f"torch {torch.__version__}, {args.threads} thread(s), median of {args.runs} runs; "
        f"torchvision: {'yes' if tv else 'not importable'}\n"
    )
    print("| op | pure torch wall ms | pure torch CPU ms | torchvision wall ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, (w, c), t in rows:
        tv_cell = f"{t[0]:.1f}" if t else "n/a"
        ratio = f"{w / t[0]:.2f}x" if t else "n/a"
        print(f"| {name} | {w:.1f} | {c:.1f} | {tv_cell} | {ratio} |")


if __name__ == "__main__":
    main()
