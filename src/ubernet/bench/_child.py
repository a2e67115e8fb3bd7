"""One memory-benchmark configuration in a fresh process: ``python -m ubernet.bench._child '<json>'``.

A fresh process per configuration makes the peak resident set (``VmHWM`` of /proc/self/status) that of this
configuration alone. The parent sets ``MALLOC_MMAP_THRESHOLD_`` so that large buffers are mmapped and given back
to the system when freed: the high-water mark then tracks the live tensors rather than allocator fragmentation.

The JSON argument (all keys optional but ``model``):

* ``model``: a :class:`~ubernet.bench.common.ModelSpec` as a dict; ``tasks``: how many tasks T (copies of the
  dense tasks are added beyond the spec's);
* ``mode``: ``"build"`` builds the model and runs nothing (the baseline); anything else trains;
* ``variants``: the training steps to time, each ``{"name", "backward": "summed" | "bounded",
  "checkpoint_segments": 0 | k | "auto" (about sqrt(L)), "labelled": k}`` — ``labelled`` k: the sample is
  labelled for the first k tasks only (lazy evaluation: the others are not run; default all T). Several
  variants are timed in alternation in one process (their peak memory is then the largest of them);
* ``size`` ``[H, W]``, ``batch``, ``warmup`` and ``steps`` (timed steps per variant), ``threads``, ``bf16``;
* ``cap_mib``: when set, the address space may grow by at most this much (``RLIMIT_AS``) beyond what the
  process holds after building the model and running a step on a small image (libraries, threads, weights,
  gradients); the steps at ``size`` then either fit (``ok``) or fail on an allocation.

It prints one JSON line: ``ok``, ``peak_mib`` (VmHWM), ``build_mib`` (VmHWM after building the model),
``step_seconds`` (median wall clock of the last variant), ``step_seconds_by_variant``, the same for the process
CPU time (``step_cpu_seconds...``: steadier than the wall clock on a shared machine when threads = 1),
``error`` when a step failed.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from ubernet.bench.common import (
    ModelSpec,
    build_model,
    build_tasks,
    code_digest,
    proc_status_mib,
    random_sample,
    set_threads,
    sqrt_segments,
    targets_mib,
    task_batches,
    timed_both,
)
from ubernet.train.bounded import bounded_backward, summed_backward
from ubernet.train.engine import collate_images

BACKWARDS: dict[str, Callable[..., Any]] = {"summed": summed_backward, "bounded": bounded_backward}
#: side of the image of the step run before a memory cap is set (large enough for training-mode BatchNorm on
#: every tap at the coarsest pyramid scale: >= 2×2 pixels at stride 16 for scale 1/4)
WARM_SIZE = 128


def _segments(value: Any, model_spec: ModelSpec) -> int:
    if value == "auto":
        from ubernet.bench.common import build_trunk_from

        return sqrt_segments(build_trunk_from(model_spec))
    return int(value or 0)


def _simple_variants(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Variants of a config given as ``mode`` (summed/bounded), ``checkpoint_segments`` and ``labelled`` [k...]."""
    mode = cfg.get("mode", "bounded")
    backward = mode if mode in BACKWARDS else "bounded"
    return [{"name": f"labelled{k}", "backward": backward, "checkpoint_segments": cfg.get("checkpoint_segments", 0),
             "labelled": k} for k in cfg.get("labelled", [None])]


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration; return the JSON-able report."""
    digest = code_digest()  # before anything else, as close as possible to when the modules were imported
    spec = ModelSpec.from_dict(cfg["model"])
    threads = set_threads(cfg.get("threads"))
    torch.manual_seed(int(cfg.get("seed", 0)))
    tasks = build_tasks(spec, int(cfg.get("tasks", len(spec.tasks))))
    variants = [dict(v) for v in cfg.get("variants", _simple_variants(cfg))]
    for v in variants:
        if v.get("backward") not in BACKWARDS:
            raise ValueError(f"variant {v.get('name')!r}: backward must be one of {sorted(BACKWARDS)}")
        v["checkpoint_segments"] = _segments(v.get("checkpoint_segments", 0), spec)
        v["labelled"] = min(int(v.get("labelled") or len(tasks)), len(tasks))
    model = build_model(spec, tasks, checkpoint_segments=variants[0]["checkpoint_segments"]).train()
    report: dict[str, Any] = {"ok": True, "tasks": len(tasks), "task_names": list(tasks), "threads": threads,
                              "code": digest,
                              "checkpoint_segments": variants[0]["checkpoint_segments"],
                              "build_mib": proc_status_mib("VmHWM")}
    if cfg.get("mode") == "build":
        report["peak_mib"] = proc_status_mib("VmHWM")
        return report

    h, w = cfg.get("size", [321, 321])
    batch = int(cfg.get("batch", 1))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.get("bf16") else nullcontext()
    names = list(tasks)

    def make_step(size: tuple[int, int], variant: dict[str, Any]) -> Callable[[], None]:
        samples = [random_sample(tasks, size, seed=i) for i in range(batch)]
        images, sizes = collate_images(samples)
        batches = task_batches({n: tasks[n] for n in names[: variant["labelled"]]}, samples, size)
        backward = BACKWARDS[variant["backward"]]
        report["targets_mib"] = max(report.get("targets_mib", 0.0), targets_mib(batches))

        def step() -> None:
            model.checkpoint_segments = variant["checkpoint_segments"]
            model.zero_grad(set_to_none=True)
            with autocast:
                backward(model, images, sizes, batches)

        return step

    cap = cfg.get("cap_mib")
    if cap is not None:
        # Everything that does not depend on the image size (libraries, OpenMP threads, weights, gradients,
        # oneDNN's first kernels) is in place before the limit is set, so the cap bounds the step's own memory.
        for v in variants:
            make_step((WARM_SIZE, WARM_SIZE), v)()
        limit = int((proc_status_mib("VmSize") + float(cap)) * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        report["cap_mib"] = float(cap)
    times: dict[str, list[float]] = {v["name"]: [] for v in variants}
    cpu: dict[str, list[float]] = {v["name"]: [] for v in variants}
    try:
        steps = {v["name"]: make_step((h, w), v) for v in variants}
        for _ in range(int(cfg.get("warmup", 1))):
            for step in steps.values():
                step()
        for _ in range(int(cfg.get("steps", 3))):
            for name, step in steps.items():  # alternate, so that load from other processes hits each alike
                wall, cpu_s, _ = timed_both(step)
                times[name].append(wall)
                cpu[name].append(cpu_s)
    except (MemoryError, RuntimeError) as e:
        report.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        report["peak_mib"] = proc_status_mib("VmHWM")
        return report
    report["peak_mib"] = proc_status_mib("VmHWM")
    report["rss_end_mib"] = proc_status_mib("VmRSS")
    report["variants"] = variants
    report["step_seconds_by_variant"] = {k: statistics.median(v) if v else None for k, v in times.items()}
    report["step_times"] = {k: [round(t, 4) for t in v] for k, v in times.items()}
    report["step_cpu_seconds_by_variant"] = {k: statistics.median(v) if v else None for k, v in cpu.items()}
    report["step_seconds"] = report["step_seconds_by_variant"][variants[-1]["name"]]
    report["step_cpu_seconds"] = report["step_cpu_seconds_by_variant"][variants[-1]["name"]]
    report["step_seconds_by_labelled"] = {str(v["labelled"]): report["step_seconds_by_variant"][v["name"]]
                                          for v in variants}
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ubernet.bench._child '<json config>'", file=sys.stderr)
        return 2
    try:
        report = run(json.loads(argv[0]))
    except Exception as e:  # report, so the parent records why this configuration produced no number
        traceback.print_exc()
        report = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print("UBERNET_BENCH_RESULT " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
