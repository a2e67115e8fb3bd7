"""Inference speed of one multi-task UberNet against its trunk alone and against one network per task (issue #3).

In one run, round after round (so that load from other processes hits every measurement alike), it times:

* ``trunk``: the image pyramid through the trunk and the tap normalisation (``UberNet.features``), no head;
* ``heads``: each task's branch on those features (the breakdown of where head time goes);
* ``all_tasks``: one forward of the multi-task network returning every task;
* ``single``: for every task, a whole single-task UberNet (own trunk, same pyramid, that one head).

With ``predict`` (the paper's setting, issue #9: ``ubernet bench speed --config configs/paper-vgg16.yaml``) it also
times ``predict``: one image through :func:`ubernet.evaluation.predict_samples`, exactly what ``model.predict()``
runs (uint8 image -> padded batch -> every task including detection's RPN, RoI head and NMS -> post-processed
numpy outputs), and with ``flops`` it counts the trunk's convolution FLOPs from the layer shapes and times a
large matrix product in the same process and precision, giving the trunk's convolution throughput as a fraction
of the matrix product's.

Everything runs under ``torch.inference_mode()``, batch 1, an ``H×W`` random image. The JSON carries medians of
the wall clock (``seconds_*``) and of the process CPU time (``cpu_seconds_*``: it does not count waiting for a
core, so on a shared machine with one thread it is the steadier measure) and the two ratios the paper's claim
rests on, from either clock:
``ratio_all_tasks_to_trunk`` (target <= 1.3: the heads are cheap) and ``ratio_single_to_multi`` (target >= 5:
one shared trunk instead of one per task).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ubernet.bench.common import ModelSpec, build_model, build_tasks, machine_info, set_threads, summary, timed_both
from ubernet.errors import ConfigError
from ubernet.models.trunks.base import unfused_inference

TARGET_ALL_TO_TRUNK = 1.3
TARGET_SINGLE_TO_MULTI = 5.0
TARGET_SECONDS_PER_FRAME = 0.35  # issue #9: half the paper's 0.7 s per frame on a Titan X
TARGET_CONV_TO_MATMUL = 0.6


@dataclass
class SpeedConfig:
    """One speed benchmark.

    Attributes:
        model: the network (trunk, tasks, pyramid scales).
        size: ``(H, W)`` of the input image.
        repeats: timed rounds (the medians are over these; >= 5 for the issue's protocol).
        warmup: untimed rounds first (oneDNN builds its kernels on the first call of each shape).
        bf16: bfloat16 autocast (fast on CPUs with AMX-BF16 / on GPUs).
        channels_last: NHWC model and input (None: the same as ``bf16``, the combination that pays on CPU).
        threads: torch intra-op threads (None: torch's default).
        seed: seed of the weights and of the random image.
        single: also time one whole network per task (issue #3's comparison).
        predict: also time ``predict_samples`` on a uint8 image (every task, post-processing included).
        flops: count the trunk's convolution FLOPs and time a ``matmul_size``³ matrix product each round.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    size: tuple[int, int] = (321, 321)
    repeats: int = 5
    warmup: int = 1
    bf16: bool = False
    channels_last: bool | None = None
    runtime: dict[str, Any] | None = None  # what the run ran on (ubernet.hardware.Precision.record()), for the JSON
    threads: int | None = None
    seed: int = 0
    single: bool = True
    predict: bool = False
    flops: bool = False
    matmul_size: int = 4096

    def check(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"repeats must be >= 1 and warmup >= 0; got {self.repeats}, {self.warmup}")
        if min(self.size) < 16:
            raise ConfigError(f"the image size must be at least 16 pixels; got {self.size}")


def autocast_for(bf16: bool) -> AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def prepare_model(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    model.eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def uses_channels_last(cfg: SpeedConfig) -> bool:
    return cfg.bf16 if cfg.channels_last is None else cfg.channels_last


def conv_flops(model: Any, images: torch.Tensor, *, layer_times: bool = False) -> list[dict[str, Any]]:
    """Convolutions of the trunk (and stem tap) during one ``model.features(images)``, from the layer shapes.

    One row per convolution call (every pyramid level): ``{"layer", "scale", "input", "output", "flops"}`` with
    ``flops = 2 · B · C_out · H_out · W_out · (C_in / groups) · k_h · k_w`` (multiply-adds counted as 2, bias
    not counted). With ``layer_times`` each row also has ``cpu_seconds`` (thread CPU time of that call).
    """
    names = {m: n for n, m in model.trunk.named_modules() if isinstance(m, torch.nn.Conv2d)}
    if getattr(model, "stem", None) is not None:
        names.update({m: f"stem.{n}" for n, m in model.stem.named_modules() if isinstance(m, torch.nn.Conv2d)})
    rows: list[dict[str, Any]] = []
    level = {"scale": -1, "t0": 0}

    def next_level(mod: torch.nn.Module, args: Any) -> None:  # the trunk runs once per pyramid level
        level["scale"] += 1

    def pre(mod: torch.nn.Module, args: Any) -> None:
        level["t0"] = time.thread_time_ns()

    def post(mod: torch.nn.Module, args: Any, out: torch.Tensor) -> None:
        dt = (time.thread_time_ns() - level["t0"]) / 1e9
        x = args[0]
        kh, kw = mod.kernel_size  # type: ignore[misc]
        flops = 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw  # type: ignore[operator]
        row = {"layer": names[mod], "scale": max(level["scale"], 0), "input": list(x.shape),
               "output": list(out.shape), "flops": int(flops)}
        if layer_times:
            row["cpu_seconds"] = dt
        rows.append(row)

    handles = [model.trunk.register_forward_pre_hook(next_level)]
    for m in names:
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        with unfused_inference():  # module hooks must see every convolution (the fused path calls oneDNN directly)
            model.features(images)
    finally:
        for h in handles:
            h.remove()
    return rows


def matmul_seconds(n: int, bf16: bool) -> Callable[[], Any]:
    """A ``n×n @ n×n`` product in the benchmark's precision (bf16 operands under ``bf16``), ``2n³`` FLOPs."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    return lambda: torch.mm(a, b)


def random_image(cfg: SpeedConfig) -> np.ndarray:
    h, w = cfg.size
    return np.random.default_rng(cfg.seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run_speed(cfg: SpeedConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the JSON-able result (see the module docstring)."""
    from ubernet.api import size_divisor
    from ubernet.data.sample import Sample
    from ubernet.evaluation import predict_samples
    from ubernet.train.engine import collate_images

    cfg.check()
    machine = machine_info()  # records the code version as it was imported
    threads = set_threads(cfg.threads)
    say = progress or (lambda _msg: None)
    cl = uses_channels_last(cfg)
    torch.manual_seed(cfg.seed)
    tasks = build_tasks(cfg.model)
    names = list(tasks)
    multi = prepare_model(build_model(cfg.model, tasks), cl)
    singles = {n: prepare_model(build_model(cfg.model, {n: tasks[n]}), cl) for n in names} if cfg.single else {}
    h, w = cfg.size
    sample = Sample(image=random_image(cfg))
    if cfg.predict:
        # the padded batch predict() builds (bottom/right zero padding to the coarsest tap stride)
        image, sizes = collate_images([sample], size_divisor(multi))
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        image, sizes = torch.rand(1, 3, h, w, generator=gen) * 255, [(h, w)]
    if cl:
        image = image.contiguous(memory_format=torch.channels_last)
    hw = (int(image.shape[-2]), int(image.shape[-1]))
    mm = matmul_seconds(cfg.matmul_size, cfg.bf16) if cfg.flops else None

    # series name -> clock ("wall" / "cpu") -> one time per timed round
    series: dict[str, dict[str, list[float]]] = {}

    def record(name: str, fn: Callable[[], Any], keep: bool) -> Any:
        wall, cpu, out = timed_both(fn)
        if keep:
            clocks = series.setdefault(name, {"wall": [], "cpu": []})
            clocks["wall"].append(wall)
            clocks["cpu"].append(cpu)
        return out

    n_boxes: list[int] = []
    with torch.inference_mode():
        for r in range(cfg.warmup + cfg.repeats):
            keep = r >= cfg.warmup
            say(f"round {r + 1}/{cfg.warmup + cfg.repeats}" + ("" if keep else " (warm-up)"))
            with autocast_for(cfg.bf16):
                feats = record("trunk", lambda: multi.features(image), keep)
                for n in names:
                    record(f"head:{n}", lambda n=n, f=feats: multi.run_head(n, f, image_hw=hw, image_sizes=sizes),
                           keep)
                del feats
                record("all_tasks", lambda: multi(image, image_sizes=sizes), keep)
                for n in singles:
                    record(f"single:{n}", lambda n=n: singles[n](image, image_sizes=sizes), keep)
            if cfg.predict:  # outside the benchmark's autocast: predict_samples opens its own, as predict() does
                pred = record("predict", lambda: predict_samples(multi, [sample], None, bf16=cfg.bf16,
                                                                 size_divisor=size_divisor(multi)), keep)
                if "detection" in pred[0] and keep:
                    n_boxes.append(len(pred[0]["detection"]["scores"]))
            if mm is not None:
                record("matmul", mm, keep)

    result: dict[str, Any] = {
        "benchmark": "speed",
        "trunk": cfg.model.trunk,
        "trunk_options": cfg.model.trunk_options,
        "model_options": cfg.model.model_options,
        "tasks": names,
        "task_options": cfg.model.tasks,
        "scales": list(cfg.model.scales),
        "size": [h, w],
        "padded_size": list(hw),
        "bf16": cfg.bf16,
        "channels_last": cl,
        "threads": threads,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
    }
    # Wall clock (the figures) and process CPU time (steadier on a shared machine with one thread).
    for clock, prefix in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        med = {k: statistics.median(v[clock]) for k, v in series.items()}
        result[f"{prefix}_trunk"] = med["trunk"]
        result[f"{prefix}_all_tasks"] = med["all_tasks"]
        result[f"{prefix}_heads"] = {n: med[f"head:{n}"] for n in names}
        if singles:
            single = {n: med[f"single:{n}"] for n in names}
            result[f"{prefix}_single_task"] = single
            result[f"{prefix}_single_task_sum"] = sum(single.values())
        if cfg.predict:
            result[f"{prefix}_predict"] = med["predict"]
    for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
        p = "seconds" if clock == "wall" else "cpu_seconds"
        result[f"ratio_all_tasks_to_trunk{suffix}"] = result[f"{p}_all_tasks"] / result[f"{p}_trunk"]
        if singles:
            result[f"ratio_single_to_multi{suffix}"] = result[f"{p}_single_task_sum"] / result[f"{p}_all_tasks"]
        if cfg.predict:
            result[f"ratio_predict_to_trunk{suffix}"] = result[f"{p}_predict"] / result[f"{p}_trunk"]
    # Per-round ratios: the rounds' own numbers, robust to load that changes between rounds.
    trunk, all_ = series["trunk"]["wall"], series["all_tasks"]["wall"]
    result["ratio_all_tasks_to_trunk_per_round_median"] = statistics.median(a / t for a, t in zip(all_, trunk))
    if singles:
        singles_sum = [sum(series[f"single:{n}"]["wall"][i] for n in names) for i in range(cfg.repeats)]
        result["ratio_single_to_multi_per_round_median"] = statistics.median(
            s / a for s, a in zip(singles_sum, all_))
    result["targets"] = {"ratio_all_tasks_to_trunk_max": TARGET_ALL_TO_TRUNK}
    result["meets_targets"] = {"all_tasks_to_trunk": result["ratio_all_tasks_to_trunk"] <= TARGET_ALL_TO_TRUNK}
    if singles:
        result["targets"]["ratio_single_to_multi_min"] = TARGET_SINGLE_TO_MULTI
        result["meets_targets"]["single_to_multi"] = result["ratio_single_to_multi"] >= TARGET_SINGLE_TO_MULTI
    if cfg.predict:
        result["detections_per_frame"] = n_boxes
        result["targets"]["seconds_per_frame_max"] = TARGET_SECONDS_PER_FRAME
        result["meets_targets"]["seconds_per_frame"] = result["seconds_predict"] <= TARGET_SECONDS_PER_FRAME
        result["meets_targets"]["seconds_per_frame_cpu"] = result["cpu_seconds_predict"] <= TARGET_SECONDS_PER_FRAME
    if mm is not None:
        say("counting the trunk's convolution FLOPs")
        with torch.inference_mode(), autocast_for(cfg.bf16):
            rows = conv_flops(multi, image)
        flops = sum(r["flops"] for r in rows)
        mm_flops = 2 * cfg.matmul_size**3
        result["trunk_conv_gflops"] = flops / 1e9
        result["trunk_conv_gflops_by_scale"] = [sum(r["flops"] for r in rows if r["scale"] == s) / 1e9
                                                for s in range(len(cfg.model.scales))]
        result["matmul_size"] = cfg.matmul_size
        for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
            p = "seconds" if clock == "wall" else "cpu_seconds"
            t_mm = statistics.median(series["matmul"][clock])
            result[f"{p}_matmul"] = t_mm
            result[f"trunk_conv_tflops{suffix}"] = flops / result[f"{p}_trunk"] / 1e12
            result[f"matmul_tflops{suffix}"] = mm_flops / t_mm / 1e12
            result[f"ratio_conv_to_matmul_throughput{suffix}"] = (
                result[f"trunk_conv_tflops{suffix}"] / result[f"matmul_tflops{suffix}"])
        per_round = [(flops / t) / (mm_flops / m) for t, m in zip(series["trunk"]["cpu"], series["matmul"]["cpu"])]
        result["ratio_conv_to_matmul_throughput_cpu_per_round_median"] = statistics.median(per_round)
        result["targets"]["ratio_conv_to_matmul_throughput_min"] = TARGET_CONV_TO_MATMUL
        result["meets_targets"]["conv_to_matmul_throughput"] = (
            result["ratio_conv_to_matmul_throughput_cpu"] >= TARGET_CONV_TO_MATMUL)
    result["timings"] = {k: {clock: summary(v[clock]) for clock in v} for k, v in series.items()}
    result["machine"] = {**machine, "threads": threads}
    return result
