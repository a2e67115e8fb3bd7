"""Peak memory of one bounded (or summed) training step, phase by phase (issue #5's per-phase breakdown).

Usage (as the documented figures were made)::

    MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/memory_phases.py \\
        --trunk vgg16 --size 621 --tasks 7

Builds the benchmark's model (:mod:`ubernet.bench.common`: the paper's tasks, copies of the dense ones beyond 7,
``sqrt(L)`` checkpoint segments) and runs one step on a random sample labelled for every task. The high-water
mark ``VmHWM`` is reset (``/proc/self/clear_refs``) at each phase boundary — the branch point's trunk forward,
each branch (in the order the bounded backward runs them, with whether it ran scale by scale), the trunk
backward — and each line prints the peak *during* the phase and the resident set after it, in MiB.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch

from ubernet.bench.common import (
    ModelSpec,
    build_model,
    build_tasks,
    build_trunk_from,
    paper_tasks,
    proc_status_mib,
    random_sample,
    set_threads,
    sqrt_segments,
    task_batches,
)
from ubernet.models.branch_point import BranchPoint
from ubernet.train import bounded
from ubernet.train.engine import collate_images


def _mark(label: str) -> None:
    print(f"{label:42s} peak during {proc_status_mib('VmHWM'):7.0f}   resident after {proc_status_mib('VmRSS'):7.0f}",
          flush=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set


def run(trunk: str, size: int, tasks: int, mode: str) -> None:
    """One step of ``mode`` (``bounded`` or ``summed``), printing a line per phase (module docstring)."""
    set_threads(1)
    torch.manual_seed(0)
    spec = ModelSpec(trunk=trunk, tasks=paper_tasks(detection=True))
    built = build_tasks(spec, tasks)
    segments = sqrt_segments(build_trunk_from(spec)) if mode == "bounded" else 0
    model = build_model(spec, built, checkpoint_segments=segments).train()
    samples = [random_sample(built, (size, size), seed=0)]
    images, sizes = collate_images(samples)
    batches = task_batches(built, samples, (size, size))
    _mark("model, libraries, targets (before the step)")
    phase = ["pyramid through the trunk (branch point)"]
    use_per_scale, point_backward = bounded.use_per_scale, BranchPoint.backward

    def next_branch(per_scale: Any, m: Any, name: str, sub: Any, targets: Any) -> bool:
        _mark(phase[0])
        chosen = use_per_scale(per_scale, m, name, sub, targets)
        phase[0] = f"branch {name} ({'per scale' if chosen else 'whole'})"
        return chosen

    def trunk_backward(self: BranchPoint, grads: Sequence[Any] | None = None) -> None:
        _mark(phase[0])
        phase[0] = "trunk backward"
        point_backward(self, grads)  # type: ignore[arg-type]

    bounded.use_per_scale = next_branch  # type: ignore[assignment]
    BranchPoint.backward = trunk_backward  # type: ignore[method-assign]
    try:
        if mode == "bounded":
            bounded.bounded_backward(model, images, sizes, batches)
        else:
            phase[0] = "summed step (forward + backward)"
            bounded.summed_backward(model, images, sizes, batches)
        _mark(phase[0])
    finally:
        bounded.use_per_scale = use_per_scale
        BranchPoint.backward = point_backward  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trunk", default="vgg16")
    p.add_argument("--size", type=int, default=621)
    p.add_argument("--tasks", type=int, default=7)
    p.add_argument("--mode", choices=("bounded", "summed"), default="bounded")
    args = p.parse_args(argv)
    run(args.trunk, args.size, args.tasks, args.mode)


if __name__ == "__main__":
    main()
