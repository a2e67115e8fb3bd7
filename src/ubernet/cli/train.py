"""``ubernet train --config FILE [key=value ...] [--out DIR] [--resume]``."""

from __future__ import annotations

import argparse
import json

from ubernet.cli.runtime import add_precision_option, start
from ubernet.config import load_config


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.steps=100")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors, exactly")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_precision_option(p, default_help="the config's train.precision")


def run(args: argparse.Namespace) -> int:
    from ubernet.run import run_training

    cfg = load_config(args.config, args.overrides)
    if args.precision is not None:
        cfg.train.precision = args.precision
    start("train", cfg.train.precision)
    result = run_training(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return 0
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {result.out_dir} ({result.steps} steps, {result.seconds_train:.0f} s, {result.skipped} skipped)")
    return 0
