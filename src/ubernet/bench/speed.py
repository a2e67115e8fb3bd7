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
from collections.abc import Callable, Sequence
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


def _autocast(bf16: bool) -> AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def _prepare(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    model.eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _channels_last(cfg: SpeedConfig) -> bool:
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


def _image(cfg: SpeedConfig) -> np.ndarray:
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
    cl = _channels_last(cfg)
    torch.manual_seed(cfg.seed)
    tasks = build_tasks(cfg.model)
    names = list(tasks)
    multi = _prepare(build_model(cfg.model, tasks), cl)
    singles = {n: _prepare(build_model(cfg.model, {n: tasks[n]}), cl) for n in names} if cfg.single else {}
    h, w = cfg.size
    sample = Sample(image=_image(cfg))
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
            with _autocast(cfg.bf16):
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
        with torch.inference_mode(), _autocast(cfg.bf16):
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


def conv_layer_table(cfg: SpeedConfig, repeats: int = 3) -> list[dict[str, Any]]:
    """Per-convolution FLOPs and throughput of the trunk (thread CPU time, median of ``repeats`` passes after
    one warm-up): which layers run far from the matrix product's rate."""
    cfg.check()
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, image, _ = _model_and_image(cfg)
    with torch.inference_mode(), _autocast(cfg.bf16):
        conv_flops(model, image)
        runs = [conv_flops(model, image, layer_times=True) for _ in range(repeats)]
    out = []
    for i, row in enumerate(runs[0]):
        t = statistics.median(run[i]["cpu_seconds"] for run in runs)
        out.append({**{k: v for k, v in row.items() if k != "cpu_seconds"}, "gflops": row["flops"] / 1e9,
                    "cpu_seconds": t, "tflops": row["flops"] / max(t, 1e-12) / 1e12})
    return out


def _model_and_image(cfg: SpeedConfig) -> tuple[Any, torch.Tensor, Any]:
    from ubernet.api import size_divisor
    from ubernet.data.sample import Sample
    from ubernet.train.engine import collate_images

    tasks = build_tasks(cfg.model)
    model = _prepare(build_model(cfg.model, tasks), _channels_last(cfg))
    sample = Sample(image=_image(cfg))
    image, _ = collate_images([sample], size_divisor(model))
    if _channels_last(cfg):
        image = image.contiguous(memory_format=torch.channels_last)
    return model, image, sample


# --- where the time goes --------------------------------------------------------------------------------------
_CASTS = ("_to_copy", "to", "copy_", "clone", "contiguous", "_copy_from")


def op_category(name: str, args: Sequence[Any], out: Any) -> str:
    """Coarse kind of an aten operator call (for the profile's summary)."""
    if "conv" in name:
        return "convolution"
    if name in ("addmm", "mm", "linear", "matmul", "bmm"):
        return "matrix product"
    if name.startswith("upsample"):
        return "upsampling"
    if "pool" in name:
        return "pooling / area interpolation"
    if "batch_norm" in name:
        return "batch norm"
    if name in ("relu", "relu_", "clamp_min_", "clamp_min", "threshold", "threshold_"):
        return "relu"
    if name in _CASTS:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if isinstance(out, torch.Tensor):
            tensors.append(out)
        if len({t.dtype for t in tensors}) > 1:
            return "dtype cast"
        return "copy / memory-format reorder"
    if name in ("nonzero", "topk", "sort", "index", "index_put_", "masked_select", "argsort", "unique", "any"):
        return "index / sort (detection)"
    return "elementwise / other"


class _CPUOpProfiler:
    """Thread CPU time of every aten operator call, attributed to the innermost named phase (module hooks).

    Unlike ``torch.profiler`` (wall clock), time spent waiting for a core on a shared machine is not counted.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        prof = self
        self.phase: list[str] = ["collate + post-processing"]
        self.ops: dict[tuple[str, str, str], list[float]] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                t0 = time.thread_time_ns()
                out = func(*args, **(kwargs or {}))
                dt = (time.thread_time_ns() - t0) / 1e9
                name = str(func.overloadpacket.__name__)
                key = (prof.phase[-1], name, op_category(name, args, out))
                row = prof.ops.setdefault(key, [0, 0.0])
                row[0] += 1
                row[1] += dt
                return out

        self.mode = Mode()

    def hook(self, module: torch.nn.Module, phase: str) -> list[Any]:
        def pre(_m: Any, _a: Any) -> None:
            self.phase.append(phase)

        def post(_m: Any, _a: Any, _o: Any) -> None:
            self.phase.pop()

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


def profile_predict(cfg: SpeedConfig, top: int = 25) -> dict[str, Any]:
    """Where one ``predict_samples`` call (every task, as ``predict()``) spends its CPU time.

    Returns ``{"total_cpu_seconds", "by_phase", "by_category", "by_phase_category", "top_ops", "torch_profiler"}``:
    phases are the trunk, the tap norms, each task's branch (detection split into RPN convs, proposals, RoI
    pooling/NMS and RoI fc layers), the model's remaining work (pyramid) and what runs outside the model
    (collating the image, post-processing into numpy). ``torch_profiler`` is ``torch.profiler``'s own table
    (self wall time per operator) of the same call, for reference.
    """
    from torch.profiler import ProfilerActivity, profile

    from ubernet.api import size_divisor
    from ubernet.evaluation import predict_samples

    cfg.check()
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, _, sample = _model_and_image(cfg)

    def call() -> Any:
        return predict_samples(model, [sample], None, bf16=cfg.bf16, size_divisor=size_divisor(model))

    call()  # warm-up
    call()
    prof = _CPUOpProfiler()
    handles = prof.hook(model, "model: pyramid + other")
    handles += prof.hook(model.trunk, "trunk")
    for norm in model.tap_norms:
        handles += prof.hook(norm, "tap norms")
    for n, head in model.heads.items():
        handles += prof.hook(head, f"head:{n}")
        det = getattr(head, "head", None)
        if det is not None and hasattr(det, "rpn"):
            handles += prof.hook(det.rpn, f"head:{n}: RPN proposals + NMS")
            handles += prof.hook(det.rpn.head, f"head:{n}: RPN convs")
            handles += prof.hook(det.roi_heads.box_head, f"head:{n}: RoI fc6/fc7 + predictor")
            handles += prof.hook(det.roi_heads.predictor, f"head:{n}: RoI fc6/fc7 + predictor")
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        with prof.mode:
            call()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        for h in handles:
            h.remove()
    total = sum(v[1] for v in prof.ops.values())

    def grouped(key: Callable[[tuple[str, str, str]], str]) -> list[dict[str, Any]]:
        acc: dict[str, float] = {}
        for k, v in prof.ops.items():
            acc[key(k)] = acc.get(key(k), 0.0) + v[1]
        return [{"name": k, "cpu_seconds": v, "share": v / max(total, 1e-12)}
                for k, v in sorted(acc.items(), key=lambda kv: -kv[1])]

    top_ops = [{"phase": k[0], "op": k[1], "category": k[2], "calls": v[0], "cpu_seconds": v[1],
                "share": v[1] / max(total, 1e-12)}
               for k, v in sorted(prof.ops.items(), key=lambda kv: -kv[1][1])[:top]]
    with profile(activities=[ProfilerActivity.CPU]) as tprof:
        call()
    events = sorted(tprof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    ttotal = sum(e.self_cpu_time_total for e in events)
    torch_rows = [{"op": e.key, "calls": e.count, "self_seconds": e.self_cpu_time_total / 1e6,
                   "share": e.self_cpu_time_total / max(ttotal, 1)} for e in events[:15]]
    return {"total_cpu_seconds": total, "call_wall_seconds": wall, "call_cpu_seconds": cpu,
            "by_phase": grouped(lambda k: k[0]), "by_category": grouped(lambda k: k[2]),
            "by_phase_category": grouped(lambda k: f"{k[0]} | {k[2]}")[:top], "top_ops": top_ops,
            "torch_profiler": torch_rows}


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
    model = _prepare(build_model(cfg.model, tasks), _channels_last(cfg))
    h, w = cfg.size
    image = torch.rand(1, 3, h, w) * 255
    if _channels_last(cfg):
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
