"""Step time of fp32, bf16 autocast and channels-last, for training and inference (issue #9).

For each trunk and image size, one UberNet per mode (same initial weights) with the tasks of the synthetic world
(``--tasks``: all seven by default, ``dense`` leaves detection out) and the paper's pyramid (1, 1/2, 1/4). Modes:
``fp32``; ``fp32+cl`` (channels-last weights, hence activations); ``bf16`` (``torch.autocast`` bfloat16);
``bf16+cl``. Measured:

* ``train``: one training step of :class:`~ubernet.train.engine.Trainer` on one fully labelled synthetic sample —
  forward, memory-bounded backward over the tasks, gradients into the asynchronous rule's sums (the group batch
  sizes are huge so that no optimiser update, amortised over B_p samples in a real run, is timed);
* ``infer``: ``model(image)`` for all tasks under ``torch.inference_mode()``, eval mode.

Modes are interleaved round by round, so load from other processes on a shared machine hits all of them alike;
report the ratios of one run. Usage::

    python benchmarks/precision.py --trunks vgg16,mobilenet_v2 --sizes 128,321 --repeats 5 --out prec.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from ubernet.data.synth import CLASSES, generate
from ubernet.data.union import UnionEntry, UnionSampler
from ubernet.models.trunks import build_trunk
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.train.async_sgd import AsyncSGD, GroupSpec
from ubernet.train.engine import Trainer, collate_images

MODES: dict[str, tuple[bool, bool]] = {"fp32": (False, False), "fp32+cl": (False, True), "bf16": (True, False),
                                       "bf16+cl": (True, True)}  # name -> (bf16, channels_last)
TASKS: dict[str, dict[str, Any]] = {
    "boundaries": {"loss": "bce"}, "normals": {}, "saliency": {}, "semseg": {"num_classes": len(CLASSES)},
    "parts": {}, "semantic_boundaries": {"num_classes": len(CLASSES) - 1},
    "detection": {"num_classes": len(CLASSES) - 1, "class_names": list(CLASSES[1:])}}


def build(trunk: str, scales: tuple[float, ...], names: tuple[str, ...] = tuple(TASKS)) -> UberNet:
    torch.manual_seed(0)
    tasks = {k: build_task(k, **TASKS[k]) for k in names}
    return UberNet(trunk=build_trunk(trunk), tasks=tasks, scales=scales)


def trainer_for(model: UberNet, size: int, bf16: bool) -> Trainer:
    sample = generate(0, source="full", size=(size, size))
    sampler = UnionSampler([UnionEntry("full", [sample], tuple(model.tasks))])
    groups = [GroupSpec("trunk", model.shared_parameters(), 10**9, lr=0.0)]
    groups += [GroupSpec(t, [p for p in model.heads[t].parameters() if p.requires_grad], 10**9, lr=0.0)
               for t in model.tasks]
    div = max(t.stride for t in model.trunk.taps)
    trainer = Trainer(model=model, rule=AsyncSGD(groups), sampler=sampler, bf16=bf16, size_divisor=div)
    trainer.model.train()
    return trainer


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. With one intra-op thread the process CPU time is the cost on one core,
    which waiting for a core on a shared machine does not inflate."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def bench_one(trunk: str, size: int, repeats: int, warmup: int, scales: tuple[float, ...],
              what: tuple[str, ...], names: tuple[str, ...] = tuple(TASKS)) -> dict[str, Any]:
    base = build(trunk, scales, names)
    models = {}
    for name, (_, cl) in MODES.items():
        m = copy.deepcopy(base)
        models[name] = m.to(memory_format=torch.channels_last) if cl else m
    image, _ = collate_images([generate(0, source="full", size=(size, size))], max(t.stride for t in base.trunk.taps))
    runs: dict[str, Callable[[], Any]] = {}
    for name, (bf16, _) in MODES.items():
        if "train" in what:
            runs[f"train/{name}"] = trainer_for(models[name], size, bf16).run_step
        if "infer" in what:
            def infer(m: UberNet = models[name], bf16: bool = bf16) -> None:
                m.eval()
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                    m(image)
                m.train()
            runs[f"infer/{name}"] = infer
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(warmup + repeats):
        for k, fn in runs.items():  # interleaved: every mode sees the same machine load
            tw, tc = timed(fn)
            if r >= warmup:
                wall[k].append(tw)
                cpu[k].append(tc)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    ratios, ratios_wall = {}, {}
    for w in what:
        ratios.update({f"{w}/{m}": med[f"{w}/fp32"] / med[f"{w}/{m}"] for m in MODES})
        ratios_wall.update({f"{w}/{m}": med_wall[f"{w}/fp32"] / med_wall[f"{w}/{m}"] for m in MODES})
    return {"trunk": trunk, "size": size, "median_cpu_s": med, "median_wall_s": med_wall,
            "speedup_vs_fp32_cpu": ratios, "speedup_vs_fp32_wall": ratios_wall, "cpu_s": cpu, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trunks", default="vgg16,mobilenet_v2")
    ap.add_argument("--sizes", default="128,321")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--scales", default="1,0.5,0.25")
    ap.add_argument("--what", default="train,infer")
    ap.add_argument("--tasks", default="all", help="'all', 'dense' (all but detection) or a comma list")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: CPU time = cost on one core)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scales = tuple(float(s) for s in args.scales.split(","))
    what = tuple(args.what.split(","))
    names = tuple(TASKS) if args.tasks == "all" else tuple(t for t in TASKS if t != "detection") \
        if args.tasks == "dense" else tuple(args.tasks.split(","))
    results = []
    for trunk in args.trunks.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            res = bench_one(trunk, size, args.repeats, args.warmup, scales, what, names)
            results.append(res)
            cells = " ".join(f"{k}={v * 1000:.0f}ms(x{res['speedup_vs_fp32_cpu'][k]:.2f}, wall "
                             f"x{res['speedup_vs_fp32_wall'][k]:.2f})" for k, v in res["median_cpu_s"].items())
            print(f"{trunk} {size}: {cells}", flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor(),
            "machine": platform.machine(), "scales": list(scales), "repeats": args.repeats, "tasks": list(names)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
