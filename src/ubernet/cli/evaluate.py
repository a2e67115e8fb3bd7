"""``ubernet eval --checkpoint C [--data KIND ...]``: score a checkpoint on a held-out set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ubernet.cli.runtime import add_precision_option, start
from ubernet.cli.tables import add_weights_arg, print_metrics, scales_arg
from ubernet.metrics.pool import workers_arg


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `ubernet train`")
    add_weights_arg(p)
    p.add_argument("--data", default=None, help="dataset format (synth, bsds500, voc, ...); default: the run's "
                   "own evaluation set")
    p.add_argument("--root", default=None, help="dataset root (for real formats)")
    p.add_argument("--split", default=None, help="dataset split")
    p.add_argument("--source", default="full", help="synthetic source (with --data synth)")
    p.add_argument("--n", type=int, default=100, help="synthetic images (with --data synth)")
    p.add_argument("--seed", type=int, default=10**6, help="synthetic seed (with --data synth)")
    p.add_argument("--max-images", type=positive_int, default=None, help="score the first N images only (N >= 1)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the model's tasks")
    p.add_argument("--json", default=None, help="write the full results here")
    add_precision_option(p)
    p.add_argument("--scales", type=scales_arg, default=None,
                   help="multi-scale testing: dense outputs averaged over these input scales, e.g. 0.5,1,1.5 "
                   "(default: the run's eval.test_scales)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="flip testing: dense outputs also averaged over the mirrored image (default: the run's "
                   "eval.test_flip)")
    p.add_argument("--workers", type=workers_arg, default=0,
                   help="processes for the exact boundary matchers (default 0: one per available core; 1: serial)")


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    from ubernet.api import size_divisor
    from ubernet.config import SourceConfig
    from ubernet.evaluation import evaluate, headline
    from ubernet.run import eval_samples, load_model

    precision = start("eval", args.precision)
    model, cfg = load_model(args.checkpoint, weights=args.weights)
    if args.data is not None:
        cfg.eval.data = SourceConfig(name="eval", kind=args.data, root=args.root, split=args.split,
                                     source=args.source, n=args.n, seed=args.seed)
    cfg.eval.max_images = args.max_images
    samples = eval_samples(cfg)
    tasks = args.tasks.split(",") if args.tasks else None
    results = evaluate(model, samples, tasks=tasks, bf16=precision.bf16, size_divisor=size_divisor(model),
                       workers=args.workers, scales=args.scales if args.scales is not None else cfg.eval.test_scales,
                       flip=args.flip if args.flip is not None else cfg.eval.test_flip)
    print_metrics(headline(results, model))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0
