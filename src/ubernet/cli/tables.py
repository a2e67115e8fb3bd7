"""Plain-text tables for the terminal, and argument types shared by the commands."""

from __future__ import annotations

import argparse
from typing import Any


def print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    """``task  key=value ...`` rows, aligned."""
    width = max((len(t) for t in metrics), default=4)
    for task, vals in metrics.items():
        cells = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
        print(f"{task:<{width}}  {cells}")


def scales_arg(text: str) -> tuple[float, ...]:
    """argparse type of ``--scales``: comma-separated test scales, e.g. ``0.5,1,1.5``."""
    import argparse

    from ubernet.config import check_scales
    from ubernet.errors import ConfigError

    try:
        return check_scales([float(x) for x in text.split(",") if x.strip()])
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated scales in [0.1, 4], e.g. 0.5,1,1.5; "
                                         f"got {text!r}") from None


def add_weights_arg(p: argparse.ArgumentParser) -> None:
    """``--weights auto|ema|raw``: which of a checkpoint's weights to load (:func:`ubernet.run.load_model`)."""
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="the run's weight average (train.ema) or its last trained weights; auto (default): the "
                   "average when the run kept one")
