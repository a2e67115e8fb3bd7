"""Speed of the synthetic world: milliseconds per generated sample, by image size and by source.

Each configuration generates ``--n`` samples with distinct seeds, ``--runs`` times; the table gives the median
over runs of the per-sample wall time and of the per-sample CPU time of this process (``time.process_time``;
on a shared machine the wall time also counts time spent waiting for a core). One thread (the generator is
single-threaded numpy; BLAS threads are pinned to 1 so the figure is per core).

Usage::

    .venv/bin/python benchmarks/bench_synth.py                     # sizes for `full`, then every source at 128
    .venv/bin/python benchmarks/bench_synth.py --runs 7 --n 100 --write
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from ubernet.data.synth import CLASSES, SOURCES, generate, write_sample  # noqa: E402

DEFAULT_SIZES = ("128x128", "96x160", "256x256", "321x481")


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def time_generate(source: str, size: tuple[int, int], n: int, runs: int, write: bool) -> dict[str, float]:
    """Median wall / CPU ms per sample over ``runs`` runs of ``n`` samples (and per written sample)."""
    generate(10**6, source=source, size=size)  # warm-up: imports, first allocations
    wall, cpu, wr = [], [], []
    for r in range(runs):
        seeds = range(r * n, (r + 1) * n)
        t0, c0 = time.perf_counter(), time.process_time()
        samples = [generate(s, source=source, size=size) for s in seeds]
        wall.append((time.perf_counter() - t0) / n * 1e3)
        cpu.append((time.process_time() - c0) / n * 1e3)
        if write:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                for s in samples:
                    write_sample(Path(tmp) / s.id, s, CLASSES)
                wr.append((time.perf_counter() - t0) / n * 1e3)
    out = {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "wall_min": min(wall), "wall_max": max(wall)}
    if write:
        out["write"] = statistics.median(wr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=50, help="samples per run")
    ap.add_argument("--sizes", nargs="*", default=list(DEFAULT_SIZES), help="HxW sizes for the full source")
    ap.add_argument("--sources", nargs="*", default=list(SOURCES), help="sources timed at 128x128")
    ap.add_argument("--write", action="store_true", help="also time writing the files (PNG/NPY/NPZ/XML)")
    args = ap.parse_args()
    rows = [("full", parse_size(s)) for s in args.sizes]
    rows += [(src, (128, 128)) for src in args.sources if src != "full" or "128x128" not in args.sizes]
    head = "| source | size (H×W) | wall ms/sample (median) | wall min–max | CPU ms/sample (median) |"
    sep = "|---|---|---|---|---|"
    if args.write:
        head, sep = head + " write ms/sample |", sep + "---|"
    print(f"runs={args.runs}, n={args.n} samples per run, load average {os.getloadavg()[0]:.1f}")
    print(head)
    print(sep)
    for source, size in rows:
        r = time_generate(source, size, args.n, args.runs, args.write)
        line = (
            f"| {source} | {size[0]}×{size[1]} | {r['wall']:.1f} | {r['wall_min']:.1f}–{r['wall_max']:.1f} "
            f"| {r['cpu']:.1f} |"
        )
        if args.write:
            line += f" {r['write']:.1f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
