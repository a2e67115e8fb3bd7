"""``ubernet demo [--quick] [--out DIR]``: the whole system on the embedded synthetic world.

Builds the partial-label union (every synthetic source), trains a 7-task UberNet with asynchronous SGD and the
memory-bounded backward, evaluates every task on a held-out ``full`` set with the published protocols, prints
the table and writes ``metrics.json``, ``panel.png``, ``curves.png``, ``config.yaml`` and the checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import time
from importlib import resources
from pathlib import Path

from ubernet.cli.runtime import add_precision_option, start
from ubernet.errors import ConfigError

#: floors the default demo must clear on the held-out `full` set; (key, bound, higher is better)
FLOORS = {
    "boundaries": ("ods", 0.6, True),
    "normals": ("mean", 25.0, False),
    "saliency": ("maxf", 0.8, True),
    "semseg": ("miou", 0.5, True),
    "parts": ("miou", 0.4, True),
    "semantic_boundaries": ("maxf", 0.4, True),
    "detection": ("map_voc07", 0.5, True),
}

#: ``--quick``: a smoke run of the same recipe (every code path, numbers meaningless) in well under two minutes
QUICK = ["train.steps=24", "eval.data.n=6", "train.eval_every=0", "train.checkpoint_every=0"]


#: what a demo run writes into its folder (``tb`` only where tensorboard is installed)
RUN_FILES = ("metrics.json", "panel.png", "curves.png", "config.yaml", "last.safetensors", "log.csv", "tb")


def clear_previous_run(out: Path) -> None:
    """Make ``out`` ready for a fresh demo run: remove what a previous demo run wrote there, and refuse (naming
    them) when it holds anything else — the demo replaces its own run, never the user's files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    # a checkpoint write interrupted by a kill leaves .last.safetensors.*.tmp (ubernet.train.checkpoint)
    mine = [p for p in out.iterdir() if p.name in RUN_FILES
            or (p.name.startswith(".last.safetensors.") and p.name.endswith(".tmp"))]
    others = sorted(p.name for p in out.iterdir() if p not in mine)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConfigError(f"--out {out}: holds files a demo run did not write ({shown}); the demo replaces only "
                          "its own run: choose a new or empty folder")
    for p in mine:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def demo_config_path() -> Path:
    return Path(str(resources.files("ubernet") / "configs" / "synthetic.yaml"))


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo",
                   help="output folder (default runs/demo); a previous demo run there is replaced, a folder "
                        "holding anything else is refused")
    p.add_argument("--quick", action="store_true", help="a smoke run of under two minutes (numbers meaningless)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--no-progress", action="store_true")
    add_precision_option(p, default_help="the config's train.precision, auto")


def run(args: argparse.Namespace) -> int:
    from ubernet.cli.tables import print_metrics
    from ubernet.config import load_config
    from ubernet.run import run_training

    overrides = (QUICK if args.quick else []) + list(args.overrides)
    cfg = load_config(demo_config_path(), overrides)
    if args.precision is not None:
        cfg.train.precision = args.precision
    out = Path(args.out)
    clear_previous_run(out)
    print(f"ubernet demo: {len(cfg.tasks)} tasks, {len(cfg.data)} synthetic sources, {cfg.train.steps} steps, "
          f"trunk {cfg.model.trunk}{' (quick)' if args.quick else ''}")
    start("demo", cfg.train.precision)
    t0 = time.time()
    res = run_training(cfg, out, progress=not args.no_progress)
    total = time.time() - t0
    print(f"\nheld-out `full` set ({cfg.eval.data.n} images), after {res.steps} steps "
          f"({res.steps * cfg.train.batch_size} samples); training {res.seconds_train:.0f} s, whole run {total:.0f} s:")
    print_metrics(res.metrics)
    if not args.quick:
        for task, (key, bound, higher) in FLOORS.items():
            v = res.metrics.get(task, {}).get(key)
            ok = v is not None and (v >= bound if higher else v <= bound)
            print(f"  floor {task}.{key} {'>=' if higher else '<='} {bound}: {'ok' if ok else 'MISSED'} ({v})")
    print(f"wrote {out}/metrics.json, panel.png, curves.png, config.yaml, last.safetensors")
    return 0
