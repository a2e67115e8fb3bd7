"""Wall time of ``evaluate()`` with its scoring workers, with and without the model-thread rule.

``evaluate(workers=W)`` scores boundary images in W processes while the main process runs the model; since
session 6 the model then uses ``min(threads, cores - W + 1)`` intra-op threads (``evaluation._model_threads``).
This script scores a checkpoint's held-out set both ways, each in a fresh process, alternately ``--repeats``
times, and prints the median wall time, the main process's CPU time and the scorers' CPU time.

Usage::

    .venv/bin/python benchmarks/eval_threads.py --checkpoint runs/demo/last.safetensors [--workers 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_CHILD = r"""
import contextlib, json, resource, sys, time
import ubernet.evaluation as ev
from ubernet.api import size_divisor
from ubernet.run import eval_samples, load_model
from ubernet.hardware import resolve_precision

def main():
    a = json.loads(sys.argv[1])
    if not a["rule"]:
        ev._model_threads = lambda workers: contextlib.nullcontext()  # the model keeps all its threads
    model, cfg = load_model(a["checkpoint"])
    held = eval_samples(cfg)
    t0, c0 = time.time(), time.process_time()
    bf16 = resolve_precision(cfg.train.precision).bf16
    ev.evaluate(model, held, bf16=bf16, size_divisor=size_divisor(model), progress=False,
                workers=a["workers"], scales=cfg.eval.test_scales)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall": time.time() - t0, "main_cpu": time.process_time() - c0,
                      "scorers_cpu": ch.ru_utime + ch.ru_stime, "images": len(held)}))

if __name__ == "__main__":
    main()
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--workers", type=int, default=0, help="scoring processes (0 = one per core, the demo's)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"model threads kept": [], "model threads = cores left": []}
    for _ in range(a.repeats):
        for name, rule in (("model threads kept", False), ("model threads = cores left", True)):
            args = json.dumps({"checkpoint": a.checkpoint, "workers": a.workers, "rule": rule})
            out = subprocess.run([sys.executable, "-c", _CHILD, args], check=True, capture_output=True, text=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'':<28} {'wall s':>8} {'main CPU s':>11} {'scorers CPU s':>14}  (medians of {a.repeats})")
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall", "main_cpu", "scorers_cpu")}
        print(f"{name:<28} {med['wall']:8.1f} {med['main_cpu']:11.1f} {med['scorers_cpu']:14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
