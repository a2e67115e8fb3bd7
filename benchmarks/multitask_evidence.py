"""Evidence on the synthetic world (issue #5): one 7-task UberNet vs 7 single-task networks, asynchronous vs
plain minibatch SGD, at the same per-task sample budget, on an unbalanced partial-label union.

Arms (all built with ``ubernet.api.build_trainer`` from the same config, same seed, same held-out set):

* ``async``   — the 7-task model trained on the union with the project's asynchronous rule (paper Table 1):
  the trunk and every task head keep their own sample counter and step when *their* effective batch ``B_p``
  is full (``train.batch_sizes`` of the config), each with its own schedule counted in its own updates.
* ``plain``   — the same 7-task model, same union, same draws, same per-group learning rates and optimiser
  (``train.rule``: SGD or AdamW, from the config), but *synchronous minibatch* SGD as a naive user writes it:
  every ``B = B_trunk`` samples, **every** group steps with the minibatch mean ``(1/B) sum_i grad L_i``, where
  ``L_i`` is the sum of the sample's labelled task losses and an unlabelled task contributes 0 (a masked loss:
  the head gets a zero gradient, so momentum / AdamW moments and weight decay still act on it). A task whose
  source is rare thus gets ``S / B`` small, diluted updates (its gradient scaled by ~ its share of the batch)
  instead of ``N_t / B_t`` clean ones. All groups share the trunk's schedule (one optimiser, one schedule). The
  streaming (``train.batch_size`` samples per forward, 1 in the paper and the demo) is identical to the
  asynchronous arm, so only the update rule differs. (The library has no such rule: ``MinibatchSGD`` below
  re-uses the ``AsyncSGD`` groups, sums and optimisers with synchronous counting.)
* ``single:<task>`` — one UberNet per task (same trunk, the task's head only), trained on exactly the samples
  of the union that label that task, in the order the multi-task runs drew them (a replay of the union's
  deterministic draw sequence), with the config's ``B_trunk`` / ``B_t``, learning rates and schedule. Per-task
  budget = the number of such samples, so the single-task head sees the same samples and takes the same number
  of updates as the asynchronous multi-task head.
* ``untrained`` — the 7-task network at step 0 (evaluation only), for scale.

The budget ``--budget S`` is the number of steps of the multi-task runs (their ``train.steps``: S samples with
the paper's one sample per step, S × ``train.batch_size`` otherwise); the per-task budgets follow from the
union's proportions and are printed and recorded. ``--rare SOURCE --rare-weight W`` makes one source rare —
hence its task, provided no other source labels it (a fully labelled ``full`` source in the union labels every
task: lower its weight too, e.g. ``--set data.6.weight=0.1``).

Evaluation: ``ubernet.evaluation.evaluate`` + ``headline`` (what ``ubernet demo`` / ``run_training`` use) on the
config's held-out ``eval.data`` (the ``full`` source: all seven tasks labelled), every image, every model.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multitask_evidence.py --budget 6000 --out runs/evidence
    .venv/bin/python benchmarks/multitask_evidence.py --quick --out /tmp/evidence-quick      # smoke run
    ... --set data.0.size=[96,96] eval.data.size=[96,96]     # config overrides (every arm)
    ... --arms async,plain                                   # a subset; finished arms are reused (resume)

Outputs in ``--out``: ``<arm>/result.json`` (+ ``log.csv``, ``last.safetensors``), ``evidence.json`` (all arms,
budgets, CPU times, the table) and ``evidence.md`` (the table). An arm whose ``result.json`` exists for the same
config and budget is not re-run; one interrupted mid-training resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "synthetic.yaml"

#: headline metric per task: (key, higher is better, scale to "points") — the keys of the demo's floors
HEADLINE = {
    "boundaries": ("ods", True, 100.0),
    "normals": ("mean", False, 1.0),  # mean angular error in degrees; a point = a degree
    "saliency": ("maxf", True, 100.0),
    "semseg": ("miou", True, 100.0),
    "parts": ("miou", True, 100.0),
    "semantic_boundaries": ("maxf", True, 100.0),
    "detection": ("map_voc07", True, 100.0),
}

QUICK = ["eval.data.n=3"]
QUICK_BUDGET = 40


# --- the union's draw sequence and the per-task budgets --------------------------------------------------------
def base_config(config: str | Path, overrides: Sequence[str], rare: str | None, rare_weight: float | None,
                quick: bool = False) -> Any:
    """The multi-task config (read now, overrides applied) with the rare source's weight set."""
    from ubernet.config import load_config, validate
    from ubernet.errors import ConfigError

    cfg = load_config(config, (QUICK if quick else []) + list(overrides))
    if rare is not None:
        names = [s.name for s in cfg.data]
        if rare not in names:
            raise ConfigError(f"--rare {rare!r}: no such source; sources: {', '.join(names)}")
        if rare_weight is not None:
            cfg.data[names.index(rare)].weight = float(rare_weight)
    cfg.train.progress = False
    validate(cfg)
    return cfg


def union_plan(cfg: Any, steps: int) -> tuple[list[tuple[int, int]], list[Any]]:
    """The multi-task runs' draw sequence ``[(source index, item)]`` (the sampler is deterministic: this is
    exactly what ``build_trainer``'s sampler will draw) and the union's entries."""
    from ubernet.api import build_union
    from ubernet.data.union import UnionSampler

    entries, _ = build_union(cfg)
    sampler = UnionSampler(entries, seed=cfg.seed, batch_size=cfg.train.batch_size)
    return [sampler.next_index() for _ in range(steps * cfg.train.batch_size)], entries


def task_budgets(plan: Sequence[tuple[int, int]], entries: Sequence[Any], tasks: Sequence[str]) -> dict[str, int]:
    """Samples of the plan labelled for each task."""
    per_source = Counter(src for src, _ in plan)
    return {t: sum(n for src, n in per_source.items() if t in entries[src].tasks) for t in tasks}


def single_task_config(cfg: Any, task: str, steps: int) -> Any:
    """The config of the single-task network of ``task``: its head only, the sources that label it."""
    c = copy.deepcopy(cfg)
    c.tasks = {task: copy.deepcopy(cfg.tasks[task])}
    c.data = [s for s in c.data if _labels(s, task)]
    c.train.steps = steps
    return c


def _labels(sc: Any, task: str) -> bool:
    from ubernet.api import build_source

    return task in build_source(sc)[1]  # synthetic / reader sources are lazy: cheap


def replay_sequence(plan: Sequence[tuple[int, int]], entries: Sequence[Any], task: str,
                    names: Sequence[str]) -> list[tuple[int, int]]:
    """The plan's draws that label ``task``, re-indexed to the sources ``names`` of the single-task union."""
    index = {n: i for i, n in enumerate(names)}
    return [(index[entries[src].name], item) for src, item in plan if task in entries[src].tasks]


def make_replay_sampler(entries: Sequence[Any], sequence: Sequence[tuple[int, int]], *, seed: int,
                        batch_size: int = 1) -> Any:
    """A :class:`UnionSampler` that draws ``sequence`` (then fails): same state / checkpoint format. Its last
    batch is short when ``batch_size`` does not divide the sequence."""
    from ubernet.data.union import UnionSampler

    class ReplaySampler(UnionSampler):
        def next_batch(self) -> list[Any]:
            n = min(self.batch_size, len(self.sequence) - self.position)
            full, self.batch_size = self.batch_size, max(n, 1)
            try:
                return super().next_batch()
            finally:
                self.batch_size = full

        def next_index(self) -> tuple[int, int]:
            if self.position >= len(self.sequence):
                raise IndexError(f"replay exhausted after {len(self.sequence)} draws")
            src, item = self.sequence[self.position]
            self.cursors[src] += 1
            self.position += 1
            return src, item

    s = ReplaySampler(entries, seed=seed, batch_size=batch_size)
    s.sequence = list(sequence)
    return s


# --- plain (synchronous minibatch) SGD ---------------------------------------------------------------------------
def minibatch_rule(rule: Any) -> Any:
    """Plain minibatch SGD over the groups of an asynchronous rule (see the module docstring)."""
    from ubernet.train.async_sgd import AsyncSGD

    class MinibatchSGD(AsyncSGD):
        """Every group counts every sample (labelled or not: an unlabelled task adds a zero gradient) and all
        groups step together, with the minibatch mean, when the trunk's counter reaches ``B``."""

        def accumulate(self, counts: Mapping[str, int]) -> list[str]:
            n = int(counts["trunk"])
            for name in counts:
                if name not in self.groups:
                    raise KeyError(f"unknown group {name!r}; groups: {', '.join(self.groups)}")
            for name, g in self.groups.items():
                pairs = [(s, p.grad) for p, s in zip(g.params, self.sums[name]) if p.grad is not None]
                if pairs:
                    import torch

                    torch._foreach_add_([s for s, _ in pairs], [gr for _, gr in pairs])
                self.counters[name] += n
            if self.counters["trunk"] < self.groups["trunk"].batch_size:
                return []
            for name in self.groups:
                self.step_group(name)
            return list(self.groups)

    trunk = rule.groups["trunk"]
    groups = [dataclasses.replace(g, batch_size=trunk.batch_size, schedule=trunk.schedule)
              for g in rule.groups.values()]
    return MinibatchSGD(groups)


# --- one arm -----------------------------------------------------------------------------------------------------
def arm_key(cfg: Any, budget: int) -> dict[str, Any]:
    from ubernet.config import to_dict

    return {"config": to_dict(cfg), "budget": budget}


def run_arm(name: str, cfg: Any, out: Path, held_out: Sequence[Any], *, steps: int, plain: bool = False,
            replay: tuple[Sequence[tuple[int, int]], Sequence[str]] | None = None, budget: int,
            protocol: Mapping[str, Any], log_every: int = 500) -> dict[str, Any]:
    """Train one arm for ``steps`` samples (resuming its checkpoint), evaluate it, write ``result.json``."""
    import torch

    from ubernet.api import build_trainer, size_divisor
    from ubernet.data.transforms import bind_augmentations
    from ubernet.evaluation import evaluate, headline
    from ubernet.train.checkpoint import load_checkpoint
    from ubernet.train.engine import make_hook
    from ubernet.train.hooks import CheckpointHook, CSVLogHook

    d = out / name.replace(":", "-")
    d.mkdir(parents=True, exist_ok=True)
    key = arm_key(cfg, budget)
    res_path = d / "result.json"
    if res_path.exists():
        old = json.loads(res_path.read_text())
        if old.get("key") == json.loads(json.dumps(key)) and old.get("protocol") == protocol:
            print(f"[{name}] done already: {res_path}")
            return old
    trainer, task_opts = build_trainer(cfg)
    if replay is not None:
        seq, names = replay
        assert [e.name for e in trainer.sampler.entries] == list(names)
        trainer.sampler = make_replay_sampler(trainer.sampler.entries, seq, seed=cfg.seed,
                                              batch_size=cfg.train.batch_size)
        bind_augmentations(trainer.sampler)
    if plain:
        trainer.rule = minibatch_rule(trainer.rule)
    seen: Counter[str] = Counter()  # samples drawn for training, per labelled task of the model
    draw = trainer.sampler.next_batch

    def counted_batch() -> list[Any]:
        batch = draw()
        for smp in batch:
            seen.update(smp.labelled_tasks(trainer.model.tasks))
        return batch

    trainer.sampler.next_batch = counted_batch
    t0, c0 = time.time(), time.process_time()

    def after_step(tr: Any, result: Any) -> None:
        if log_every and tr.step_count % log_every == 0:
            print(f"[{name}] step {tr.step_count}/{steps}  cpu {time.process_time() - c0:.0f} s  "
                  f"wall {time.time() - t0:.0f} s  updates {dict(tr.rule.updates)}", flush=True)

    ckpt = d / "last.safetensors"
    prior = {"cpu_train": 0.0, "wall_train": 0.0, "seen": {}}

    def progress() -> dict[str, Any]:  # stored in each checkpoint: a resumed arm adds to these
        return {"seen": dict(seen), "cpu_train": prior["cpu_train"] + time.process_time() - c0,
                "wall_train": prior["wall_train"] + time.time() - t0}

    meta = {"config": key["config"], "task_options": task_opts, "arm": name}
    trainer.hooks = [CSVLogHook(d / "log.csv", cfg.train.log_every), make_hook(after_step=after_step),
                     CheckpointHook(ckpt, cfg.train.checkpoint_every,
                                    extra_meta=lambda: {**meta, "evidence": progress()})]
    if ckpt.exists():
        tensors, state = load_checkpoint(ckpt)
        if state.get("config") == json.loads(json.dumps(key["config"])) and "evidence" in state:
            trainer.load_state(tensors, state)
            prior = state["evidence"]
            seen.update(prior["seen"])
            print(f"[{name}] resumed at step {trainer.step_count}")
    print(f"[{name}] training {steps} steps (<= {steps * cfg.train.batch_size} samples): tasks "
          f"{list(trainer.model.tasks)}, sources "
          f"{[e.name for e in trainer.sampler.entries]}, rule {type(trainer.rule).__name__}, "
          f"B {({g: s.batch_size for g, s in trainer.rule.groups.items()})}", flush=True)
    trainer.train(steps)
    prog = progress()
    cpu_train, wall_train = prog["cpu_train"], prog["wall_train"]
    t1, c1 = time.time(), time.process_time()
    raw = evaluate(trainer.model, held_out, size_divisor=size_divisor(trainer.model), progress=False)
    metrics = _finite(headline(raw, trainer.model))
    cpu_eval, wall_eval = time.process_time() - c1, time.time() - t1
    result = {
        "arm": name, "key": key, "protocol": protocol, "steps": trainer.step_count, "skipped": trainer.skipped,
        "samples_per_task": dict(seen), "updates": dict(trainer.rule.updates),
        "batch_sizes": {g: s.batch_size for g, s in trainer.rule.groups.items()},
        "rule": type(trainer.rule).__name__, "metrics": metrics,
        "eval_images": {t: int(v.get("images", 0)) for t, v in raw.items()},
        "cpu_seconds_train": cpu_train, "cpu_seconds_eval": cpu_eval,
        "wall_seconds_train": wall_train, "wall_seconds_eval": wall_eval,
        "torch_threads": torch.get_num_threads(),
    }
    res_path.write_text(json.dumps(result, indent=2))
    heads = {t: v.get(HEADLINE.get(t, ("",))[0]) for t, v in metrics.items()}
    short = "  ".join(f"{t}:{'—' if v is None else f'{v:.3f}'}" for t, v in heads.items())
    print(f"[{name}] {short}  (train CPU {cpu_train:.0f} s, eval CPU {cpu_eval:.0f} s)", flush=True)
    return result


def _finite(x: Any) -> Any:
    """``x`` with non-finite floats as None (strict JSON; e.g. a metric with no scorable image)."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# --- table -------------------------------------------------------------------------------------------------------
def points(task: str, a: float | None, b: float | None) -> float | None:
    """``a`` better than ``b`` by this many points (+ = ``a`` better; normals in degrees)."""
    if a is None or b is None:
        return None
    _, higher, scale = HEADLINE[task]
    return (a - b) * scale if higher else (b - a) * scale


def table(results: Mapping[str, Mapping[str, Any]], tasks: Sequence[str], budgets: Mapping[str, int],
          rare_task: str | None) -> tuple[str, list[dict[str, Any]]]:
    rows, lines = [], []
    lines.append("| task (metric) | samples | untrained | single-task | 7-task async | 7-task plain SGD | "
                 "async − single | async − plain |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in tasks:
        k, higher, scale = HEADLINE.get(t, (None, True, 1.0))

        def val(arm: str, t: str = t, k: Any = k) -> float | None:
            r = results.get(arm)
            return None if r is None or k is None else r["metrics"].get(t, {}).get(k)

        u, s, a, p = val("untrained"), val(f"single:{t}"), val("async"), val("plain")
        row = {"task": t, "metric": k, "higher_is_better": higher, "samples": budgets.get(t), "untrained": u,
               "single": s,
               "async": a, "plain": p, "async_minus_single_points": points(t, a, s),
               "async_minus_plain_points": points(t, a, p)}
        rows.append(row)

        def fmt(v: float | None, t: str = t, scale: float = scale) -> str:
            return "—" if v is None else (f"{v:.1f}°" if t == "normals" else f"{v * scale:.1f}")

        def fd(v: float | None) -> str:
            return "—" if v is None else f"{v:+.1f}"

        label = f"{t} ({k}{', rare' if t == rare_task else ''})"
        lines.append(f"| {label} | {budgets.get(t, '')} | {fmt(u)} | {fmt(s)} | {fmt(a)} | {fmt(p)} | "
                     f"{fd(row['async_minus_single_points'])} | {fd(row['async_minus_plain_points'])} |")
    return "\n".join(lines), rows


def source_hash() -> str:
    """sha256 (12 hex) of every ``src/ubernet`` Python file at start: the tree is shared and may be dirty."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "src" / "ubernet").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return ""


# --- main --------------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="multi-task config (default configs/synthetic.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="config overrides (every arm)")
    p.add_argument("--budget", type=int, default=None,
                   help="steps of the multi-task runs (default: the config's train.steps), each drawing\n"
                        "train.batch_size samples; each single-task run gets the drawn samples that label its task")
    p.add_argument("--rare", default="msra-like", help="source made rare (default msra-like: saliency); '' = none")
    p.add_argument("--rare-weight", type=float, default=0.25, help="its union weight (default 0.25)")
    p.add_argument("--arms", default="async,plain,single,untrained",
                   help="comma list of async, plain, single, single:<task>, untrained (default all)")
    p.add_argument("--out", default="runs/evidence", help="output folder (reused: finished arms are skipped)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--log-every", type=int, default=500, help="print progress every N samples")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: about {QUICK_BUDGET} union samples, 3 held-out images (numbers meaningless)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from ubernet.run import eval_samples

    c_start, t_start = time.process_time(), time.time()
    src_hash = source_hash()
    rare = args.rare or None
    cfg = base_config(args.config, args.set, rare, args.rare_weight if rare else None, args.quick)
    budget = max(5, QUICK_BUDGET // cfg.train.batch_size) if args.quick else (args.budget or cfg.train.steps)
    cfg.train.steps = budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan, entries = union_plan(cfg, budget)
    tasks = list(cfg.tasks)
    budgets = task_budgets(plan, entries, tasks)
    total_w = sum(e.weight for e in entries)
    proportions = {e.name: {"weight": e.weight, "share": e.weight / total_w, "tasks": list(e.tasks),
                            "drawn": sum(1 for s, _ in plan if s == i)} for i, e in enumerate(entries)}
    rare_task = None
    if rare:
        rare_tasks = [t for t in entries[[e.name for e in entries].index(rare)].tasks if t in tasks]
        rare_task = min(rare_tasks, key=lambda t: budgets[t]) if rare_tasks else None
    print(f"config {args.config} (+ {args.set}), seed {cfg.seed}, budget {budget} union samples")
    for n, pr in proportions.items():
        print(f"  {n:<12} weight {pr['weight']:<5g} share {pr['share']:.3f}  drawn {pr['drawn']:>6}  {pr['tasks']}")
    print(f"per-task budgets: {budgets}")

    wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
    arms: list[str] = []
    for a in wanted:
        arms += [f"single:{t}" for t in tasks] if a == "single" else [a]
    arms = list(dict.fromkeys(arms))  # e.g. --arms single:saliency,single runs the rare one first, once
    held_out = eval_samples(cfg)
    results: dict[str, dict[str, Any]] = {}
    protocol = json.loads(json.dumps(arm_key(cfg, budget)))  # the base config (rare weight set) + budget
    for f in sorted(out.glob("*/result.json")):  # earlier arms of the same protocol (for the table)
        r = json.loads(f.read_text())
        if r.get("protocol") == protocol:
            results[r["arm"]] = r
    for arm in arms:
        if arm in ("async", "plain", "untrained"):  # untrained: the 7-task network at step 0 (for scale)
            results[arm] = run_arm(arm, cfg, out, held_out, steps=0 if arm == "untrained" else budget,
                                   plain=arm == "plain", budget=budget, protocol=protocol, log_every=args.log_every)
        elif arm.startswith("single:"):
            t = arm.split(":", 1)[1]
            if t not in tasks:
                raise SystemExit(f"unknown task {t!r}; tasks: {', '.join(tasks)}")
            bs = cfg.train.batch_size
            c = single_task_config(cfg, t, -(-budgets[t] // bs))  # steps: the last batch may be short
            names = [s.name for s in c.data]
            seq = replay_sequence(plan, entries, t, names)
            assert len(seq) == budgets[t]
            results[arm] = run_arm(arm, c, out, held_out, steps=c.train.steps, replay=(seq, names), budget=budget,
                                   protocol=protocol, log_every=args.log_every)
        else:
            raise SystemExit(f"unknown arm {arm!r}: async, plain, single, single:<task>, untrained")
        for t in tasks:  # the protocol: each single-task net saw exactly its task's samples of the union
            r = results[arm]
            if arm in ("async", "plain") or arm == f"single:{t}":
                assert r["samples_per_task"].get(t, 0) == budgets[t], (arm, t, r["samples_per_task"], budgets)

    md, rows = table(results, tasks, budgets, rare_task)
    cpu_runs = sum(r["cpu_seconds_train"] + r["cpu_seconds_eval"] for r in results.values())
    invocation = {"command": " ".join([sys.executable, *sys.argv]), "arms": arms,
                  "cpu_seconds": time.process_time() - c_start, "wall_seconds": time.time() - t_start,
                  "git_commit": git_commit(), "source_sha256_at_start": src_hash}
    invocations = []
    if (out / "evidence.json").exists():  # earlier invocations of the same protocol (arms reused from them)
        old = json.loads((out / "evidence.json").read_text())
        if old.get("protocol") == protocol:
            invocations = old.get("invocations", [])
    summary = {
        "issue": 5, "protocol": protocol, "invocations": [*invocations, invocation], "config": str(args.config),
        "overrides": list(args.set), "seed": cfg.seed, "budget_union_samples": budget, "per_task_samples": budgets,
        "rare_source": rare, "rare_task": rare_task, "proportions": proportions,
        "eval": {"source": cfg.eval.data.source, "n": len(held_out), "seed": cfg.eval.data.seed,
                 "size": cfg.eval.data.size},
        "train_sources": [{"name": s.name, "source": s.source, "seed": s.seed, "size": s.size} for s in cfg.data],
        "rows": rows, "arms": results, "cpu_seconds_all_arms": cpu_runs, "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "quick": args.quick,
    }
    (out / "evidence.json").write_text(json.dumps(_finite(summary), indent=2, allow_nan=False))
    (out / "evidence.md").write_text(md + "\n")
    print()
    print(md)
    print(f"\nCPU: {cpu_runs:.0f} s over {len(results)} arms; wrote {out}/evidence.json, {out}/evidence.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
