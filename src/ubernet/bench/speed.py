"""Inference speed of one multi-task UberNet against its trunk alone and against one network per task (issue #3).

In one run, round after round (so that load from other processes hits every measurement alike), it times:

* ``trunk``: the image pyramid through the trunk and the tap normalisation (``UberNet.features``), no head;
* ``heads``: each task's branch on those features (the breakdown of where head time goes);
* ``all_tasks``: one forward of the multi-task network returning every task;
* ``single``: for every task, a whole single-task UberNet (own trunk, same pyramid, that one head).

Everything runs under ``torch.inference_mode()``, batch 1, an ``S×S`` random image. The JSON carries medians of
the wall clock (``seconds_*``) and of the process CPU time (``cpu_seconds_*``: it does not count waiting for a
core, so on a shared machine with one thread it is the steadier measure) and the two ratios the paper's claim
rests on, from either clock:
``ratio_all_tasks_to_trunk`` (target <= 1.3: the heads are cheap) and ``ratio_single_to_multi`` (target >= 5:
one shared trunk instead of one per task).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from ubernet.bench.common import ModelSpec, build_model, build_tasks, machine_info, set_threads, summary, timed_both
from ubernet.errors import ConfigError

TARGET_ALL_TO_TRUNK = 1.3
TARGET_SINGLE_TO_MULTI = 5.0


@dataclass
class SpeedConfig:
    """One speed benchmark.

    Attributes:
        model: the network (trunk, tasks, pyramid scales).
        size: ``(H, W)`` of the input image.
        repeats: timed rounds (the medians are over these; >= 5 for the issue's protocol).
        warmup: untimed rounds first (oneDNN builds its kernels on the first call of each shape).
        bf16: bfloat16 autocast with channels-last tensors (fast on CPUs with AMX-BF16 / on GPUs).
        threads: torch intra-op threads (None: torch's default).
        seed: seed of the weights and of the random image.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    size: tuple[int, int] = (321, 321)
    repeats: int = 5
    warmup: int = 1
    bf16: bool = False
    threads: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"repeats must be >= 1 and warmup >= 0; got {self.repeats}, {self.warmup}")
        if min(self.size) < 16:
            raise ConfigError(f"the image size must be at least 16 pixels; got {self.size}")


def _autocast(bf16: bool) -> AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def _prepare(model: torch.nn.Module, bf16: bool) -> torch.nn.Module:
    model.eval()
    return model.to(memory_format=torch.channels_last) if bf16 else model


def run_speed(cfg: SpeedConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the JSON-able result (see the module docstring)."""
    cfg.check()
    machine = machine_info()  # records the code version as it was imported
    threads = set_threads(cfg.threads)
    say = progress or (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    tasks = build_tasks(cfg.model)
    names = list(tasks)
    multi = _prepare(build_model(cfg.model, tasks), cfg.bf16)
    singles = {n: _prepare(build_model(cfg.model, {n: tasks[n]}), cfg.bf16) for n in names}
    h, w = cfg.size
    gen = torch.Generator().manual_seed(cfg.seed)
    image = torch.rand(1, 3, h, w, generator=gen) * 255
    if cfg.bf16:
        image = image.contiguous(memory_format=torch.channels_last)
    hw = (h, w)

    # series name -> clock ("wall" / "cpu") -> one time per timed round
    series: dict[str, dict[str, list[float]]] = {}

    def record(name: str, fn: Callable[[], Any], keep: bool) -> Any:
        wall, cpu, out = timed_both(fn)
        if keep:
            clocks = series.setdefault(name, {"wall": [], "cpu": []})
            clocks["wall"].append(wall)
            clocks["cpu"].append(cpu)
        return out

    with torch.inference_mode(), _autocast(cfg.bf16):
        for r in range(cfg.warmup + cfg.repeats):
            keep = r >= cfg.warmup
            say(f"round {r + 1}/{cfg.warmup + cfg.repeats}" + ("" if keep else " (warm-up)"))
            feats = record("trunk", lambda: multi.features(image), keep)
            for n in names:
                record(f"head:{n}", lambda n=n, f=feats: multi.run_head(n, f, image_hw=hw, image_sizes=[hw]), keep)
            del feats
            record("all_tasks", lambda: multi(image), keep)
            for n in names:
                record(f"single:{n}", lambda n=n: singles[n](image), keep)

    result: dict[str, Any] = {
        "benchmark": "speed",
        "trunk": cfg.model.trunk,
        "trunk_options": cfg.model.trunk_options,
        "tasks": names,
        "scales": list(cfg.model.scales),
        "size": [h, w],
        "bf16": cfg.bf16,
        "threads": threads,
        "repeats": cfg.repeats,
    }
    # Wall clock (the figures) and process CPU time (steadier on a shared machine with one thread).
    for clock, prefix in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        med = {k: statistics.median(v[clock]) for k, v in series.items()}
        single = {n: med[f"single:{n}"] for n in names}
        result[f"{prefix}_trunk"] = med["trunk"]
        result[f"{prefix}_all_tasks"] = med["all_tasks"]
        result[f"{prefix}_single_task"] = single
        result[f"{prefix}_single_task_sum"] = sum(single.values())
        result[f"{prefix}_heads"] = {n: med[f"head:{n}"] for n in names}
    for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
        p = "seconds" if clock == "wall" else "cpu_seconds"
        result[f"ratio_all_tasks_to_trunk{suffix}"] = result[f"{p}_all_tasks"] / result[f"{p}_trunk"]
        result[f"ratio_single_to_multi{suffix}"] = result[f"{p}_single_task_sum"] / result[f"{p}_all_tasks"]
    # Per-round ratios: the rounds' own numbers, robust to load that changes between rounds.
    trunk, all_ = series["trunk"]["wall"], series["all_tasks"]["wall"]
    singles_sum = [sum(series[f"single:{n}"]["wall"][i] for n in names) for i in range(cfg.repeats)]
    result["ratio_all_tasks_to_trunk_per_round_median"] = statistics.median(a / t for a, t in zip(all_, trunk))
    result["ratio_single_to_multi_per_round_median"] = statistics.median(s / a for s, a in zip(singles_sum, all_))
    result["targets"] = {"ratio_all_tasks_to_trunk_max": TARGET_ALL_TO_TRUNK,
                         "ratio_single_to_multi_min": TARGET_SINGLE_TO_MULTI}
    result["timings"] = {k: {clock: summary(v[clock]) for clock in v} for k, v in series.items()}
    result["machine"] = {**machine, "threads": threads}
    result["meets_targets"] = {
        "all_tasks_to_trunk": result["ratio_all_tasks_to_trunk"] <= TARGET_ALL_TO_TRUNK,
        "single_to_multi": result["ratio_single_to_multi"] >= TARGET_SINGLE_TO_MULTI,
    }
    return result


def profile_heads(cfg: SpeedConfig, top: int = 15) -> list[dict[str, Any]]:
    """Where the head time goes: the ``top`` operators by self CPU time over all heads of one forward.

    The trunk runs outside the profiler, so the table covers the branches only (skip layers, interpolation,
    stacking for the fusion, the fusion convolutions).
    """
    from torch.profiler import ProfilerActivity, profile

    cfg.check()
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tasks = build_tasks(cfg.model)
    model = _prepare(build_model(cfg.model, tasks), cfg.bf16)
    h, w = cfg.size
    image = torch.rand(1, 3, h, w) * 255
    if cfg.bf16:
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(cfg.bf16):
        feats = model.features(image)
        for n in tasks:  # warm-up
            model.run_head(n, feats, image_hw=(h, w), image_sizes=[(h, w)])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for n in tasks:
                model.run_head(n, feats, image_hw=(h, w), image_sizes=[(h, w)])
    rows = []
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        rows.append({"op": e.key, "calls": e.count, "self_seconds": e.self_cpu_time_total / 1e6,
                     "share": e.self_cpu_time_total / max(total, 1)})
    return rows
