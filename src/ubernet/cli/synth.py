"""``ubernet synth``: write samples of the synthetic world in plain standard formats.

Example::

    ubernet synth --out /tmp/world --n 100 --seed 0 --source full --size 128 128
    ubernet synth --out /tmp/mix --n 60 --source voc-like:2,bsds-like:1,nyu-like:1
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from ubernet.errors import ConfigError, UbernetError


def add_parser(p: argparse.ArgumentParser) -> None:
    from ubernet.data.synth.sources import SOURCES

    p.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per sample)")
    p.add_argument("--n", required=True, type=int, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (sample i uses seed*2**32 + i); default 0")
    p.add_argument(
        "--source",
        default="full",
        help=f"one of {', '.join(SOURCES)}, or a mix NAME:WEIGHT,NAME:WEIGHT (default: full)",
    )
    p.add_argument(
        "--size",
        nargs=2,
        type=int,
        default=[128, 128],
        metavar=("H", "W"),
        help="image height and width in pixels (default: 128 128)",
    )
    p.add_argument(
        "--summary",
        type=int,
        default=6,
        metavar="K",
        help="draw the first K samples into DIR/summary.png (0: no sheet; default 6)",
    )
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty folder")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ubernet.data.synth.classes import CLASSES
    from ubernet.data.synth.dataset import make_dataset
    from ubernet.data.synth.summary import write_summary
    from ubernet.data.synth.writer import write_samples

    out: Path = args.out
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.summary < 0:
        raise ConfigError(f"--summary must be >= 0, got {args.summary}")
    if out.exists() and not out.is_dir():
        raise UbernetError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UbernetError(f"--out {out} is not empty; choose a new folder or pass --overwrite")
    dataset = make_dataset(args.source, args.n, args.seed, tuple(args.size))
    kept = []

    def stream() -> Iterator:
        for i in tqdm(range(len(dataset)), desc="synth", unit="sample", disable=None):
            s = dataset[i]
            if i < args.summary:
                kept.append(s)
            yield s

    entries = write_samples(out, stream(), CLASSES)
    if kept:
        write_summary(out / "summary.png", kept, CLASSES)
    sources = sorted({e["source"] for e in entries})
    print(
        f"wrote {len(entries)} samples ({', '.join(sources)}) to {out}"
        + (f"; contact sheet {out / 'summary.png'}" if kept else "")
    )
    return 0
