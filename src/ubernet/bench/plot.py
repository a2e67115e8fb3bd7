"""A tiny line plot drawn with PIL (axes, ticks, legend), so benchmarks need no plotting library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

#: Distinguishable line colours (Tableau 10).
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127)]


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 10))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.3g}"


def line_plot(
    series: dict[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    xticks: Sequence[float] | None = None,
    y_from_zero: bool = True,
    size: tuple[int, int] = (720, 480),
) -> Path:
    """Draw one polyline with markers per series (``name -> [(x, y), ...]``) and save a PNG at ``path``.

    ``title`` may have several lines (``\n``); points with ``y`` None are skipped.
    """
    w, h = size
    lines = title.split("\n") if title else []
    left, right, top, bottom = 78, 20, 24 + 14 * len(lines) if lines else 16, 56
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    points = [p for pts in series.values() for p in pts if p[1] is not None]
    if not points:
        raise ValueError("nothing to plot: every series is empty")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    xt = list(xticks) if xticks is not None else nice_ticks(min(xs), max(xs))
    yt = nice_ticks(0.0 if y_from_zero else min(ys), max(ys))
    x0, x1 = min(xt[0], min(xs)), max(xt[-1], max(xs))
    y0, y1 = yt[0], yt[-1]
    pw, ph = w - left - right, h - top - bottom

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / ((x1 - x0) or 1) * pw, top + ph - (y - y0) / ((y1 - y0) or 1) * ph)

    # grid, ticks and labels
    for v in yt:
        _, py = to_px(x0, v)
        d.line([(left, py), (left + pw, py)], fill=(230, 230, 230))
        label = _fmt(v)
        d.text((left - 6 - d.textlength(label, font=font), py - 6), label, fill="black", font=font)
    for v in xt:
        px, _ = to_px(v, y0)
        d.line([(px, top + ph), (px, top + ph + 4)], fill="black")
        label = _fmt(v)
        d.text((px - d.textlength(label, font=font) / 2, top + ph + 7), label, fill="black", font=font)
    d.rectangle([left, top, left + pw, top + ph], outline="black")
    for k, line in enumerate(lines):
        d.text(((w - d.textlength(line, font=font)) / 2, 10 + 14 * k), line, fill="black", font=font)
    if xlabel:
        d.text((left + (pw - d.textlength(xlabel, font=font)) / 2, h - 22), xlabel, fill="black", font=font)
    if ylabel:
        # PIL has no rotated text: draw the label horizontally on its own image and rotate that.
        tw = int(d.textlength(ylabel, font=font)) + 4
        lab = Image.new("RGB", (tw, 14), "white")
        ImageDraw.Draw(lab).text((2, 1), ylabel, fill="black", font=font)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (8, top + (ph - lab.size[1]) // 2))

    # series and legend
    for k, (name, pts) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        px = [to_px(x, y) for x, y in pts if y is not None]
        if len(px) > 1:
            d.line(px, fill=color, width=2)
        for cx, cy in px:
            d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=color)
        ly = top + 8 + 16 * k
        d.line([(left + 10, ly + 6), (left + 30, ly + 6)], fill=color, width=2)
        d.text((left + 36, ly), name, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def plot_memory(result: dict, path: str | Path) -> Path:
    """Peak memory (MiB) against the number of tasks T for each backward mode of a memory benchmark result,
    with the build-only baseline."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in result["results"]:
        if r.get("ok") and r.get("peak_mib") is not None:
            series.setdefault(r["mode"], []).append((r["tasks"], r["peak_mib"]))
    base = [(b["tasks"], b["peak_mib"]) for b in result.get("baseline", []) if b.get("ok")]
    if base:
        series["model only (baseline)"] = base
    for pts in series.values():
        pts.sort()
    ts = sorted({t for pts in series.values() for t, _ in pts})
    real = result.get("real_tasks", [])
    tasks = (f"T copies of {real[0]}" if len(real) == 1 else
             f"tasks in order {', '.join(real)}, then copies of the dense ones")
    title = (f"UberNet training peak memory (VmHWM), {result.get('trunk', '')} {result['size']}x{result['size']}, "
             f"pyramid scales {', '.join(f'{s:g}' for s in result.get('scales', []))}\n{tasks}")
    return line_plot(series, path, title=title, xlabel="number of tasks T", ylabel="peak memory (MiB)",
                     xticks=ts)
