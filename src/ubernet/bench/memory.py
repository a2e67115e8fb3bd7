"""Training memory and step time against the number of tasks, summed vs memory-bounded backward (issue #5).

Every configuration runs in a fresh child process (:mod:`ubernet.bench._child`) with
``MALLOC_MMAP_THRESHOLD_=131072``; its peak resident set (``VmHWM``) is the configuration's peak memory, nothing
subtracted. Three backward modes are compared:

* ``summed``: every branch alive until one backward of the summed loss, no checkpointing (the paper's baseline);
* ``bounded``: the paper's Fig. 4 — trunk checkpointed from ~sqrt(L) anchors, one branch alive at a time;
* ``bounded_nockpt``: one branch at a time but the trunk's activations all stored, which separates the two
  effects (per-task freeing vs checkpointing).

Besides the sweep over T it can search the largest square image whose 7-task training step fits a memory cap
(``RLIMIT_AS`` on the step's growth, see the child) and measure lazy evaluation (a sample labelled for one task
vs for all of them, bounded mode, in one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ubernet.bench.common import ModelSpec, machine_info
from ubernet.errors import UbernetError

#: mode -> (child mode, checkpoint segments)
MODES: dict[str, tuple[str, Any]] = {
    "summed": ("summed", 0),
    "bounded": ("bounded", "auto"),
    "bounded_nockpt": ("bounded", 0),
}
TARGETS = {"bounded_peak_T14_over_T1_max": 1.10, "bounded_over_summed_T7_max": 0.55,
           "step_time_bounded_over_summed_max": 1.15, "cap_pixel_ratio_min": 4.0, "lazy_time_ratio_max": 0.5}
RESULT_TAG = "UBERNET_BENCH_RESULT "
#: the module run as ``python -m`` for each configuration (replaceable, e.g. to try a patched model)
CHILD_MODULE = "ubernet.bench._child"


@dataclass
class MemoryConfig:
    """One memory benchmark.

    Attributes:
        model: the network; its tasks are the real ones, copies of the dense ones are added for larger T.
        size: square image side S.
        tasks: the values of T to sweep.
        modes: backward modes (keys of :data:`MODES`).
        steps / warmup: timed and untimed training steps per child.
        batch: images per step (the paper streams one at a time).
        threads: torch threads in each child (None: default); bf16: bfloat16 autocast.
        timeout: seconds allowed per child.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    size: int = 321
    tasks: list[int] = field(default_factory=lambda: [1, 2, 4, 7, 14])
    modes: list[str] = field(default_factory=lambda: ["summed", "bounded", "bounded_nockpt"])
    steps: int = 3
    warmup: int = 1
    batch: int = 1
    threads: int | None = None
    bf16: bool = False
    timeout: float = 1800.0

    def check(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise UbernetError(f"unknown mode(s) {bad}; valid: {', '.join(MODES)}")
        if self.size < 16 or self.steps < 0 or self.warmup < 0 or self.batch < 1:
            raise UbernetError("size must be >= 16, steps and warmup >= 0, batch >= 1")
        from ubernet.models.trunks import TRUNKS

        if self.model.trunk not in TRUNKS:  # fail here, not in every child
            raise UbernetError(f"unknown trunk {self.model.trunk!r}; valid trunks: {', '.join(sorted(TRUNKS))}")

    def child_config(self, modes: str | list[str], tasks: int, *, labelled: list[int | None] | None = None,
                     **extra: Any) -> dict[str, Any]:
        """A child config training with the given mode(s) (``"build"``: the model-only baseline); with several
        modes or several ``labelled`` counts, the child alternates their steps in one process."""
        modes = [modes] if isinstance(modes, str) else list(modes)
        variants = []
        for mode in modes:
            backward, segments = MODES.get(mode, ("bounded", 0))
            for k in labelled or [None]:
                name = mode if labelled is None else f"{mode}_labelled{k}"
                variants.append({"name": name, "backward": backward, "checkpoint_segments": segments, "labelled": k})
        cfg = {"model": self.model.as_dict(), "tasks": tasks, "mode": "build" if modes == ["build"] else "train",
               "variants": variants, "size": [self.size, self.size], "batch": self.batch, "steps": self.steps,
               "warmup": self.warmup, "threads": self.threads, "bf16": self.bf16}
        cfg.update(extra)
        return cfg


def run_child(cfg: dict[str, Any], timeout: float = 1800.0) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its report, or ``ok: False`` with the reason."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = str(cfg["threads"])
    cmd = [sys.executable, "-m", CHILD_MODULE, json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    # No report: killed (e.g. by the memory cap in native code or the OOM killer) or crashed.
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return {"ok": False, "error": f"child exited with {proc.returncode}: {' | '.join(tail)}"}


def _row(mode: str, tasks: int, rep: dict[str, Any]) -> dict[str, Any]:
    row = {"mode": mode, "tasks": tasks, "peak_mib": rep.get("peak_mib"), "step_seconds": rep.get("step_seconds"),
           "step_cpu_seconds": rep.get("step_cpu_seconds"), "ok": rep.get("ok", False)}
    for k in ("build_mib", "targets_mib", "checkpoint_segments", "step_times", "code", "error"):
        if k in rep:
            row[k] = rep[k]
    return row


def run_sweep(cfg: MemoryConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Peak memory and step time for every (mode, T), plus the build-only baseline per T."""
    cfg.check()
    say = progress or (lambda _m: None)
    results: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for t in cfg.tasks:
        rep = run_child(cfg.child_config("build", t), cfg.timeout)
        baseline.append({"tasks": t, "peak_mib": rep.get("peak_mib"), "ok": rep.get("ok", False)})
        say(f"T={t:>2} build-only: {rep.get('peak_mib', float('nan')):.0f} MiB")
        for mode in cfg.modes:
            rep = run_child(cfg.child_config(mode, t), cfg.timeout)
            results.append(_row(mode, t, rep))
            msg = (f"{rep['peak_mib']:.0f} MiB, {rep['step_seconds']:.2f} s/step" if rep.get("ok")
                   else f"failed: {rep.get('error')}")
            say(f"T={t:>2} {mode:<15} {msg}")
    out = {"benchmark": "memory", "size": cfg.size, "trunk": cfg.model.trunk,
           "trunk_options": cfg.model.trunk_options, "scales": list(cfg.model.scales),
           "real_tasks": list(cfg.model.tasks), "batch": cfg.batch, "steps": cfg.steps, "bf16": cfg.bf16,
           "results": results, "baseline": baseline}
    out["ratios"] = sweep_ratios(results)
    return out


def _lookup(results: list[dict[str, Any]], mode: str, tasks: int, key: str) -> float | None:
    for r in results:
        if r["mode"] == mode and r["tasks"] == tasks and r.get("ok"):
            return r.get(key)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def sweep_ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's headline ratios from whatever configurations were run (None where one is missing)."""
    ts = sorted({r["tasks"] for r in results})
    out: dict[str, Any] = {}
    if ts:
        lo, hi = ts[0], ts[-1]
        for mode in ("bounded", "bounded_nockpt", "summed"):
            out[f"{mode}_peak_T{hi}_over_T{lo}"] = _ratio(_lookup(results, mode, hi, "peak_mib"),
                                                          _lookup(results, mode, lo, "peak_mib"))
    for t in ts:
        summed_peak = _lookup(results, "summed", t, "peak_mib")
        summed_time = _lookup(results, "summed", t, "step_seconds")
        for mode in ("bounded", "bounded_nockpt"):
            out[f"{mode}_over_summed_peak_T{t}"] = _ratio(_lookup(results, mode, t, "peak_mib"), summed_peak)
            out[f"{mode}_over_summed_step_T{t}"] = _ratio(_lookup(results, mode, t, "step_seconds"), summed_time)
            out[f"{mode}_over_summed_step_cpu_T{t}"] = _ratio(_lookup(results, mode, t, "step_cpu_seconds"),
                                                              _lookup(results, "summed", t, "step_cpu_seconds"))
    return out


def largest_size(cfg: MemoryConfig, mode: str, cap_mib: float, *, tasks: int = 7, lo: int = 128, hi: int = 2048,
                 granularity: int = 16, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Largest square side S (a multiple of ``granularity``) whose training step with ``tasks`` tasks fits
    ``cap_mib`` of memory growth, by doubling from ``lo`` then bisection. Assumes memory grows with S."""
    say = progress or (lambda _m: None)
    probes: list[dict[str, Any]] = []

    def fits(s: int) -> bool:
        child = cfg.child_config(mode, tasks, size=[s, s], steps=0, warmup=1, cap_mib=cap_mib)
        rep = run_child(child, cfg.timeout)
        probes.append({"size": s, "ok": bool(rep.get("ok")), "peak_mib": rep.get("peak_mib"), "code": rep.get("code"),
                       **({"error": rep["error"]} if "error" in rep else {})})
        say(f"cap {cap_mib:.0f} MiB {mode:<15} S={s:<5} {'fits' if rep.get('ok') else 'fails'}")
        return bool(rep.get("ok"))

    g = granularity
    good, bad = 0, None
    s = max(g, lo // g * g)
    while s <= hi:
        if fits(s):
            good, s = s, s * 2
        else:
            bad = s
            break
    if good == 0:
        return {"mode": mode, "cap_mib": cap_mib, "size": None, "probes": probes}
    bad = bad if bad is not None else hi + g
    while bad - good > g:
        mid = (good + bad) // 2 // g * g
        if mid <= good:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    return {"mode": mode, "cap_mib": cap_mib, "size": good, "probes": probes}


def run_cap_search(cfg: MemoryConfig, cap_mib: float, tasks: int = 7,
                   progress: Callable[[str], None] | None = None, **search: Any) -> dict[str, Any]:
    """Largest trainable square image under the cap, bounded vs summed, and their pixel ratio."""
    found = {m: largest_size(cfg, m, cap_mib, tasks=tasks, progress=progress, **search)
             for m in ("summed", "bounded")}
    s, b = found["summed"]["size"], found["bounded"]["size"]
    return {"cap_mib": cap_mib, "tasks": tasks, "summed": found["summed"], "bounded": found["bounded"],
            "pixel_ratio": (b * b) / (s * s) if s and b else None}


def run_lazy(cfg: MemoryConfig, tasks: int = 7, labelled: int = 1) -> dict[str, Any]:
    """Bounded step time of a sample labelled for ``labelled`` task(s) vs for all ``tasks``, in one process
    (steps alternate, so that load from other processes hits both alike)."""
    rep = run_child(cfg.child_config("bounded", tasks, labelled=[labelled, tasks]), cfg.timeout)
    if not rep.get("ok"):
        return {"ok": False, "error": rep.get("error")}
    by, cpu = rep["step_seconds_by_variant"], rep["step_cpu_seconds_by_variant"]
    one, all_ = f"bounded_labelled{labelled}", f"bounded_labelled{tasks}"
    return {"ok": True, "tasks": tasks, "labelled_tasks": rep["task_names"][:labelled],
            "step_seconds_labelled_one": by[one], "step_seconds_labelled_all": by[all_],
            "time_ratio": by[one] / by[all_], "cpu_seconds_labelled_one": cpu[one],
            "cpu_seconds_labelled_all": cpu[all_], "cpu_time_ratio": cpu[one] / cpu[all_],
            "step_times": rep.get("step_times")}


def run_step_times(cfg: MemoryConfig, tasks: int = 7) -> dict[str, Any]:
    """Step time of every mode with ``tasks`` tasks, the modes alternating step by step in one process: on a
    shared machine the time ratios are steadier than those of the separate per-mode children."""
    rep = run_child(cfg.child_config(cfg.modes, tasks), cfg.timeout)
    if not rep.get("ok"):
        return {"ok": False, "error": rep.get("error")}
    by, cpu = rep["step_seconds_by_variant"], rep["step_cpu_seconds_by_variant"]
    out: dict[str, Any] = {"ok": True, "tasks": tasks, "step_seconds": by, "step_cpu_seconds": cpu,
                           "step_times": rep.get("step_times")}
    if by.get("summed"):
        out["ratios_to_summed"] = {m: by[m] / by["summed"] for m in by if m != "summed"}
        out["cpu_ratios_to_summed"] = {m: cpu[m] / cpu["summed"] for m in cpu if m != "summed"}
    return out


def run_memory(cfg: MemoryConfig, *, sweep: bool = True, cap_mib: float | None = None, lazy: bool = True,
               step_times: bool = True, progress: Callable[[str], None] | None = None,
               **search: Any) -> dict[str, Any]:
    """The whole benchmark: the sweep, then optionally the cap search, lazy evaluation and the step times of
    the modes alternating in one process (7 tasks)."""
    cfg.check()
    out: dict[str, Any] = run_sweep(cfg, progress) if sweep else {
        "benchmark": "memory", "size": cfg.size, "trunk": cfg.model.trunk, "scales": list(cfg.model.scales),
        "results": []}
    if cap_mib is not None:
        out["cap"] = run_cap_search(cfg, cap_mib, progress=progress, **search)
    if lazy:
        if progress:
            progress("lazy evaluation: 1 labelled task vs 7")
        out["lazy"] = run_lazy(cfg)
    if step_times and len(cfg.modes) > 1:
        if progress:
            progress(f"step times, modes {', '.join(cfg.modes)} alternating in one process, 7 tasks")
        out["step_times_alternating"] = run_step_times(cfg)
    out["targets"] = TARGETS
    out["machine"] = machine_info()
    # Others edit the model code while benchmarks run: flag a run whose children saw different code.
    rows = list(out.get("results", []))
    for mode in ("summed", "bounded"):
        rows += out.get("cap", {}).get(mode, {}).get("probes", [])
    digests = {r.get("code") for r in rows if r.get("code")}
    out["code_digests_seen"] = sorted(digests)
    out["machine"]["threads"] = cfg.threads or out["machine"]["threads"]
    return out
