"""Plain-text tables for the terminal."""

from __future__ import annotations

from typing import Any


def print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    """``task  key=value ...`` rows, aligned."""
    width = max((len(t) for t in metrics), default=4)
    for task, vals in metrics.items():
        cells = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
        print(f"{task:<{width}}  {cells}")
