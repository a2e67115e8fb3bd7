"""Time of one training step of a config, and what each speed change of sessions 6 and 7 is worth.

Every variant runs in its own fresh process (same seed, same draws): build the trainer, ``--warmup`` steps, then
``--repeats`` timed blocks of ``--steps`` steps (wall time, ``--threads`` intra-op threads). Blocks of the variants
are interleaved round by round, so a load change on the machine hits all of them alike; the table gives the
median ms/step and the ratio to the first variant, both from this run. A variant with ``train.prefetch`` is
flattered by short blocks: its worker fills its queue while the other variants run, so the first ``prefetch``
draws of each block cost nothing (with 20-step blocks ``prefetch=4`` looked ×0.91, with 50-step blocks it was
×1.06); time such variants with long blocks, or as whole runs. The step includes drawing the batch
(the synthetic world renders it), the bounded backward and the asynchronous update, as in ``ubernet demo``.

Variants (on top of the config and its overrides):

* ``recipe``: the config as given;
* ``rpn-default-top-n``: the RPN's training pre/post-NMS top-n back at Faster R-CNN's 12,000 / 2,000;
* ``tap-grads-on``: the in-place tap-gradient mode forced on (``auto`` leaves it off below 16 MiB taps);
* ``both``: the two together (the session-5 step, but for fused AdamW);
* ``interpolate``: the dense heads' skip-layer sums through ``F.interpolate`` per tap, as before session 7
  (``ubernet.ops.resample``'s matrix products switched off).

Usage::

    .venv/bin/python benchmarks/train_step.py                       # configs/synthetic.yaml, 2 threads
    .venv/bin/python benchmarks/train_step.py --variants recipe --variant 'prefetch:train.prefetch=4'
    .venv/bin/python benchmarks/train_step.py --steps 25 --repeats 5 --json docs/_parts/bench-results/train_step.json
    git worktree add /tmp/prev HEAD~1  # then: the current code against the previous commit, in one run
    .venv/bin/python benchmarks/train_step.py --variants recipe --code prev=/tmp/prev
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_TOP_N = ["tasks.detection.rpn_pre_nms_top_n=[12000,6000]", "tasks.detection.rpn_post_nms_top_n=[2000,300]"]
# name -> (config overrides, tap-gradient mode forced on, skip-layer sums through F.interpolate)
VARIANTS: dict[str, tuple[list[str], bool, bool]] = {
    "recipe": ([], False, False),
    "rpn-default-top-n": (_TOP_N, False, False),
    "tap-grads-on": ([], True, False),
    "both": (_TOP_N, True, False),
    "interpolate": ([], False, True),
}

_CHILD = r"""
import json, sys, time
import torch
from ubernet.api import build_trainer
from ubernet.config import load_config
from ubernet.ops import resample
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
if args["interpolate"]:
    resample.MATMUL_MAX_ROWS = -1
cfg = load_config(args["config"], args["overrides"])
trainer, _ = build_trainer(cfg)
trainer.tap_grads = True if args["tap_grads"] else "auto"
trainer.model.train()
for _ in range(args["warmup"]):
    trainer.run_step()
print("ready", flush=True)
for line in sys.stdin:  # one timed block per line the parent sends
    t0 = time.perf_counter()
    for _ in range(args["steps"]):
        trainer.run_step()
    print(json.dumps((time.perf_counter() - t0) / args["steps"] * 1000), flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/synthetic.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[;KEY=VALUE...]",
                   help="an extra variant: overrides on top of the config's (repeatable), e.g. "
                        "'wide:model.trunk_options.widths=[16,32,64,192,192]'")
    p.add_argument("--code", action="append", default=[], metavar="NAME=CHECKOUT",
                   help="run variant NAME on the package of another checkout (e.g. a `git worktree` of the previous "
                        "commit): its child imports CHECKOUT/src first; repeatable. Compares code versions in one run")
    p.add_argument("--json", type=Path, help="write the results here")
    a = p.parse_args(argv)
    for spec in a.variant:
        name, _, rest = spec.partition(":")
        if not name or not rest:
            p.error(f"--variant expects NAME:KEY=VALUE[;KEY=VALUE...], got {spec!r}")
        VARIANTS[name] = ([o for o in rest.split(";") if o], False, False)
    code = {}
    for spec in a.code:
        name, _, root = spec.partition("=")
        if not (Path(root) / "src" / "ubernet").is_dir():
            p.error(f"--code {spec!r}: {root}/src/ubernet is not a package checkout")
        code[name] = str(Path(root).resolve() / "src")
    names = [v for v in a.variants.split(",") if v] + [spec.partition(":")[0] for spec in a.variant]
    for name in code:
        if name not in VARIANTS:  # a code version of the recipe
            VARIANTS[name] = ([], False, False)
            names.append(name)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    # One variant at a time holds the cores; the others wait between blocks (a process that is not stepping
    # only sleeps on its stdin).
    procs = {}
    for name in names:
        extra, tap, interpolate = VARIANTS[name]
        args = {"config": a.config, "overrides": [*a.overrides, *extra], "threads": a.threads,
                "warmup": a.warmup, "steps": a.steps, "tap_grads": tap, "interpolate": interpolate}
        env = dict(os.environ)
        if name in code:
            env["PYTHONPATH"] = os.pathsep.join([code[name], *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"variant {name}: the child failed to start (see its error above)")
        procs[name] = proc
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(a.repeats):
        for name, proc in procs.items():
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[name].append(float(proc.stdout.readline()))
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    base = statistics.median(times[names[0]])
    rows = []
    print(f"{'variant':<20} {'ms/step (median)':>17} {'vs ' + names[0]:>12}  blocks")
    for name in names:
        med = statistics.median(times[name])
        rows.append({"variant": name, "ms_per_step": med, "ratio": med / base, "blocks": times[name]})
        print(f"{name:<20} {med:17.1f} {med / base:12.3f}  {', '.join(f'{t:.0f}' for t in times[name])}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"config": a.config, "overrides": a.overrides, "threads": a.threads,
                                      "steps": a.steps, "repeats": a.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
