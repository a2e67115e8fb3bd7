"""Where the inference time goes (``ubernet bench speed --profile``): per-convolution throughput of the trunk,
per-operator CPU time of one ``predict`` call attributed to model phases, and the heads' top operators.

Split from :mod:`ubernet.bench.speed`, whose configuration (:class:`SpeedConfig`) and model preparation it reuses.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ubernet.bench.common import build_model, build_tasks, set_threads
from ubernet.bench.speed import SpeedConfig, autocast_for, conv_flops, prepare_model, random_image, uses_channels_last


def conv_layer_table(cfg: SpeedConfig, repeats: int = 3) -> list[dict[str, Any]]:
    """Per-convolution FLOPs and throughput of the trunk (thread CPU time, median of ``repeats`` passes after
    one warm-up): which layers run far from the matrix product's rate."""
    cfg.check()
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, image, _ = model_and_image(cfg)
    with torch.inference_mode(), autocast_for(cfg.bf16):
        conv_flops(model, image)
        runs = [conv_flops(model, image, layer_times=True) for _ in range(repeats)]
    out = []
    for i, row in enumerate(runs[0]):
        t = statistics.median(run[i]["cpu_seconds"] for run in runs)
        out.append({**{k: v for k, v in row.items() if k != "cpu_seconds"}, "gflops": row["flops"] / 1e9,
                    "cpu_seconds": t, "tflops": row["flops"] / max(t, 1e-12) / 1e12})
    return out


def model_and_image(cfg: SpeedConfig) -> tuple[Any, torch.Tensor, Any]:
    from ubernet.api import size_divisor
    from ubernet.data.sample import Sample
    from ubernet.train.engine import collate_images

    tasks = build_tasks(cfg.model)
    model = prepare_model(build_model(cfg.model, tasks), uses_channels_last(cfg))
    sample = Sample(image=random_image(cfg))
    image, _ = collate_images([sample], size_divisor(model))
    if uses_channels_last(cfg):
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
    model, _, sample = model_and_image(cfg)

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
    model = prepare_model(build_model(cfg.model, tasks), uses_channels_last(cfg))
    h, w = cfg.size
    image = torch.rand(1, 3, h, w) * 255
    if uses_channels_last(cfg):
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_for(cfg.bf16):
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
