"""Combine ``multitask_evidence.py`` runs that differ only in their seed: per task, each seed's async − plain
difference (points; positive = async better, normals' degrees sign-flipped), their mean and sample standard
deviation, and how many seeds async wins.

Usage::

    .venv/bin/python benchmarks/evidence_seeds.py runs/evidence2/sgd-s0/evidence.json runs/evidence2/sgd-s1/... \
        [--json OUT.json]

Every run must have the same protocol apart from the seed (config, overrides other than ``seed=``, budget, rare
source, held-out set); the script refuses to combine runs that differ.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _protocol(run: dict[str, Any]) -> tuple:
    overrides = tuple(sorted(o for o in run["overrides"] if not o.startswith("seed=")))
    return (overrides, run["budget_union_samples"], run["rare_source"], json.dumps(run["eval"], sort_keys=True))


def combine(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task: ``{task, metric, seeds, async, plain, diff, mean, sd, async_wins}`` (values per seed)."""
    if len({_protocol(r) for r in runs}) != 1:
        raise SystemExit("the runs differ in more than the seed (overrides, budget, rare source or held-out set)")
    if len({r["seed"] for r in runs}) != len(runs):
        raise SystemExit(f"repeated seeds: {[r['seed'] for r in runs]}")
    out = []
    for i, row in enumerate(runs[0]["rows"]):
        per = [r["rows"][i] for r in runs]
        if any(p["task"] != row["task"] or p["async"] is None or p["plain"] is None for p in per):
            raise SystemExit(f"{row['task']}: an arm is missing or the task order differs in one of the runs")
        diff = [p["async_minus_plain_points"] for p in per]
        out.append({
            "task": row["task"], "metric": row["metric"], "seeds": [r["seed"] for r in runs],
            "async": [p["async"] for p in per], "plain": [p["plain"] for p in per], "diff": diff,
            "mean": statistics.fmean(diff), "sd": statistics.stdev(diff) if len(diff) > 1 else float("nan"),
            "async_wins": sum(d > 0 for d in diff),
        })
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    seeds = rows[0]["seeds"]
    head = ("| task (metric) | " + " | ".join(f"seed {s} async / plain (diff)" for s in seeds)
            + " | mean diff ± sd | async wins |")
    lines = [head, "|" + "---|" * (len(seeds) + 3)]
    for r in rows:
        deg = r["metric"] == "mean"
        fmt = (lambda v: f"{v:.1f}°") if deg else (lambda v: f"{100 * v:.1f}")
        cells = [f"{fmt(a)} / {fmt(p)} ({d:+.1f})" for a, p, d in zip(r["async"], r["plain"], r["diff"])]
        lines.append(f"| {r['task']} ({r['metric']}) | " + " | ".join(cells)
                     + f" | **{r['mean']:+.1f}** ± {r['sd']:.1f} | {r['async_wins']} of {len(seeds)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="evidence.json files of the seeds")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    runs = [json.loads(f.read_text()) for f in args.runs]
    rows = combine(runs)
    sys.stdout.write(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"runs": [str(f) for f in args.runs], "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
