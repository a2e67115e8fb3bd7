"""Pictures of a run: the all-task panel (like the paper's Figure 1) and training/validation curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ubernet.models.ubernet import UberNet
from ubernet.viz import grid, title

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def panel(model: UberNet, images: Sequence[np.ndarray], predictions: Sequence[dict[str, Any]]) -> np.ndarray:
    """One row per image: the input, then every task's drawn output, each titled with the task name."""
    rows = []
    for img, pred in zip(images, predictions):
        row = [title(np.ascontiguousarray(img), "input")]
        for name in model.tasks:
            if name in pred:
                row.append(title(model.tasks[name].draw(pred[name], img), name.replace("_", " ")))
        rows.append(row)
    return grid(rows)


def line_plot(series: dict[str, list[tuple[float, float]]], *, width: int = 420, height: int = 260,
              title_text: str = "", log_y: bool = False, y_range: tuple[float, float] | None = None,
              markers: bool = False) -> np.ndarray:
    """A small line plot (no matplotlib): one coloured line per series, axes with min/max labels, legend.

    ``y_range`` fixes the y axis (linear plots; e.g. ``(0, 1)`` for scores) instead of the data's extent;
    ``markers`` draws a dot at every point (for sparse series such as periodic evaluations).
    """
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 48, width - 110, 18, height - 24
    pts = [(x, y) for s in series.values() for x, y in s if np.isfinite(y) and (y > 0 or not log_y)]
    d.text((left, 2), title_text, fill=(0, 0, 0))
    d.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if not pts:
        return np.asarray(img)
    fy = (lambda v: np.log10(v)) if log_y else (lambda v: v)
    xs = [p[0] for p in pts]
    ys = [fy(p[1]) for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y_range is not None and not log_y:
        y0, y1 = min(y_range[0], y0), max(y_range[1], y1)
    if y1 <= y0:
        y1 = y0 + 1
    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (fy(y) - y0) / (y1 - y0) * (bottom - top))
    for k, (name, s) in enumerate(series.items()):
        c = COLOURS[k % len(COLOURS)]
        line = [to_px(x, y) for x, y in s if np.isfinite(y) and (y > 0 or not log_y)]
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for px, py in line if (markers or len(line) == 1) else ():
            d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=c)
        d.text((right + 6, top + 12 * k), name[:16], fill=c)
    fmt = (lambda v: f"{10 ** v:.3g}") if log_y else (lambda v: f"{v:.3g}")
    d.text((2, top), fmt(y1), fill=(0, 0, 0))
    d.text((2, bottom - 10), fmt(y0), fill=(0, 0, 0))
    d.text((left, bottom + 4), f"{x0:.0f}", fill=(0, 0, 0))
    d.text((right - 30, bottom + 4), f"{x1:.0f}", fill=(0, 0, 0))
    return np.asarray(img)


def curves(losses: dict[str, list[tuple[int, float]]], evals: list[tuple[int, dict[str, dict[str, float]]]],
           model: UberNet) -> np.ndarray:
    """Training losses (log scale) and, per task, the headline validation metric over steps.

    Headline metrics that are scores in [0, 1] (ODS, max F, mIoU, mAP) share one plot on a fixed 0..1 axis;
    the others (normals' mean angle in degrees) get their own, so neither squashes the other.
    """
    loss_series = {k.split("/", 1)[1]: v for k, v in losses.items() if k.startswith("loss/")}
    plots = [line_plot(loss_series, title_text="training loss (running mean, log)", log_y=True)]
    metric_series: dict[str, list[tuple[float, float]]] = {}
    for step, res in evals:
        for task, vals in res.items():
            keys = model.tasks[task].summary_keys() if task in model.tasks else ()
            if keys and keys[0] in vals:
                metric_series.setdefault(f"{task[:10]} {keys[0]}", []).append((step, vals[keys[0]]))
    scores = {k: v for k, v in metric_series.items() if all(0.0 <= y <= 1.0 for _, y in v)}
    others = {k: v for k, v in metric_series.items() if k not in scores}
    plots.append(line_plot(scores, title_text="validation scores (headline per task)", y_range=(0.0, 1.0),
                           markers=True))
    if others:
        plots.append(line_plot(others, title_text="validation, other units", markers=True))
    return grid([plots])


def save_png(array: np.ndarray, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
