"""Forward + backward of a dense head's skip-layer sum: ``F.interpolate`` + add per map vs two matrix products.

The sum ``Σ_i up(X_i)`` of bilinearly resampled score maps (``ubernet.ops.resample.resample_sum``) against one
``F.interpolate`` and one in-place addition per map (the path before session 7, still taken off the CPU and
above ``MATMUL_MAX_ROWS``). Maps ``[B, C, S/2^k, S/2^k]`` for k = 1..4 (the compact trunk's taps at strides 2-16),
channels-last, under bf16 autocast like the demo; the loss side is a float32 ``sum(y * g)``. Median of
``--repeats`` after 3 warm-up runs, both ways alternately in one process, ``--threads`` intra-op threads.

Usage::

    .venv/bin/python benchmarks/resample.py                 # 1 thread, the demo's sizes and more
    .venv/bin/python benchmarks/resample.py --threads 2 --json docs/_parts/bench-results/resample.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ubernet.ops.resample import resample_sum


def interpolate_sum(maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    out: torch.Tensor | None = None
    for m in maps:
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        out = m if out is None else out.add_(m)
    assert out is not None
    return out


def time_one(fn: Callable[[Sequence[torch.Tensor], tuple[int, int]], torch.Tensor], leaves: list[torch.Tensor],
             grad: torch.Tensor, size: tuple[int, int]) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fn([x.to(torch.bfloat16) for x in leaves], size)
    (y.float() * grad).sum().backward()
    for x in leaves:
        x.grad = None
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch", type=int, default=3, help="images per branch (the demo's ~3.3 labelled of 8)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    print(f"{'size':>5} {'C':>3} {'interpolate ms':>15} {'matmul ms':>10} {'speed-up':>9}")
    for size, channels in ((128, 1), (128, 3), (128, 9), (256, 9), (512, 21), (640, 21)):
        g = torch.Generator().manual_seed(0)
        leaves = [torch.randn(a.batch, channels, size >> k, size >> k, generator=g)
                  .contiguous(memory_format=torch.channels_last).requires_grad_(True) for k in range(1, 5)]
        grad = torch.randn(a.batch, channels, size, size, generator=g)
        repeats = a.repeats if size <= 256 else max(3, a.repeats // 3)
        times: dict[str, list[float]] = {"interpolate": [], "matmul": []}
        for i in range(repeats + 3):
            for name, fn in (("interpolate", interpolate_sum), ("matmul", resample_sum)):
                t = time_one(fn, leaves, grad, (size, size))
                if i >= 3:
                    times[name].append(t)
        old, new = statistics.median(times["interpolate"]), statistics.median(times["matmul"])
        rows.append({"size": size, "channels": channels, "interpolate_ms": old, "matmul_ms": new,
                     "speedup": old / new})
        print(f"{size:5d} {channels:3d} {old:15.2f} {new:10.2f} {old / new:9.2f}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"threads": a.threads, "batch": a.batch, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
