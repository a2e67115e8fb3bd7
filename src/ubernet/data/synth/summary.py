"""A contact sheet that draws every task's ground truth for a few samples, so a person can see the world.

One row per sample, one column per view: image (with the source name), boundaries (dark on white), normals
as RGB ``(n + 1) / 2``, saliency (white = salient), semseg and parts in fixed palettes, semantic boundaries
coloured by class, boxes with class names (``*`` = difficult). Tasks a sample is not labelled for are grey.
A legend of class and part colours closes the sheet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ubernet.data.sample import PART_NAMES, Sample

COLUMNS: tuple[str, ...] = ("image", "boundaries", "normals", "saliency", "semseg", "parts", "sem. bound.", "boxes")

# hand-picked, mutually distinct colours; index 0 = background
_CLASS_COLOURS = np.array(
    [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (250, 190, 190),
        (0, 128, 128),
        (170, 110, 40),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (255, 215, 180),
        (0, 0, 128),
        (128, 128, 128),
        (210, 245, 60),
        (220, 190, 255),
        (255, 250, 200),
    ],
    dtype=np.uint8,
)
_PART_COLOURS = np.array(
    [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180)],
    dtype=np.uint8,
)
_GREY = (190, 190, 190)
_HEADER = 14


def class_colours(n: int) -> np.ndarray:
    """uint8 ``n×3`` colours for class ids ``0..n-1`` (repeating after 21)."""
    return _CLASS_COLOURS[np.arange(n) % len(_CLASS_COLOURS)]


def _palette_image(ids: np.ndarray, colours: np.ndarray) -> np.ndarray:
    lut = np.full((256, 3), 255, dtype=np.uint8)  # ignore (255) and unknown ids: white
    lut[: len(colours)] = colours
    return lut[ids]


def _gray(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2)


def _tiles(sample: Sample, class_names: Sequence[str], font: ImageFont.ImageFont) -> list[Image.Image | None]:
    t = sample.targets
    h, w = sample.size
    colours = class_colours(len(class_names))
    img = Image.fromarray(sample.image)
    style = sample.meta.get("style", sample.source)
    label = sample.source if style in ("", sample.source) else f"{sample.source} ({style})"
    ImageDraw.Draw(img).text((2, h - 12), label, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    tiles: list[Image.Image | None] = [img]
    tiles.append(
        Image.fromarray(_gray(np.where(t["boundaries"] == 1, 40, 255).astype(np.uint8))) if "boundaries" in t else None
    )
    tiles.append(
        Image.fromarray(((t["normals"] + 1) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)) if "normals" in t else None
    )
    tiles.append(
        Image.fromarray(_gray(np.where(t["saliency"] == 1, 255, 0).astype(np.uint8))) if "saliency" in t else None
    )
    tiles.append(Image.fromarray(_palette_image(t["semseg"], colours)) if "semseg" in t else None)
    tiles.append(Image.fromarray(_palette_image(t["parts"], _PART_COLOURS)) if "parts" in t else None)
    if "semantic_boundaries" in t:
        sb = np.full((h, w, 3), 255, dtype=np.uint8)
        for c, channel in enumerate(t["semantic_boundaries"]):
            sb[channel] = colours[c + 1]
        tiles.append(Image.fromarray(sb))
    else:
        tiles.append(None)
    if "boxes" in t:
        im = Image.fromarray(sample.image)
        draw = ImageDraw.Draw(im)
        for box, lab, dif in zip(t["boxes"], t["labels"], t["difficult"]):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            col = tuple(int(v) for v in colours[int(lab)])
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=col, width=1)
            name = class_names[int(lab)] + ("*" if dif else "")
            draw.text((x1 + 1, max(y1 - 11, 0)), name, fill=col, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
        tiles.append(im)
    else:
        tiles.append(None)
    return tiles


def _legend(width: int, class_names: Sequence[str], font: ImageFont.ImageFont) -> Image.Image:
    items = [(n, class_colours(len(class_names))[i]) for i, n in enumerate(class_names) if i > 0]
    items += [(f"{n} (part)", _PART_COLOURS[i]) for i, n in enumerate(PART_NAMES) if i > 0]
    rows, x, y = [], 4, 0
    for name, col in items:
        step = 14 + int(font.getlength(name)) + 10
        if x + step > width and x > 4:
            x, y = 4, y + 14
        rows.append((x, y, name, col))
        x += step
    legend = Image.new("RGB", (width, y + 16), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    for x, y, name, col in rows:
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(v) for v in col), outline=(0, 0, 0))
        draw.text((x + 14, y + 1), name, fill=(0, 0, 0), font=font)
    return legend


def write_summary(path: str | Path, samples: Sequence[Sample], class_names: Sequence[str]) -> Path:
    """Draw ``samples`` (one row each; all of the first sample's size or resized to it) into ``path``
    (format from the suffix: ``.png``, ``.jpg``); returns the path."""
    if not samples:
        raise ValueError("write_summary needs at least one sample")
    font = ImageFont.load_default()
    h, w = samples[0].size
    cols = len(COLUMNS)
    sheet = Image.new("RGB", (cols * (w + 2), _HEADER + len(samples) * (h + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(COLUMNS):
        draw.text((j * (w + 2) + 2, 1), name, fill=(0, 0, 0), font=font)
    for i, s in enumerate(samples):
        for j, tile in enumerate(_tiles(s, class_names, font)):
            x, y = j * (w + 2), _HEADER + i * (h + 2)
            if tile is None:
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=_GREY)
                draw.text((x + 4, y + h // 2 - 6), "not labelled", fill=(90, 90, 90), font=font)
                continue
            if tile.size != (w, h):
                tile = tile.resize((w, h), Image.NEAREST)
            sheet.paste(tile, (x, y))
    legend = _legend(sheet.width, class_names, font)
    full = Image.new("RGB", (sheet.width, sheet.height + legend.height), (255, 255, 255))
    full.paste(sheet, (0, 0))
    full.paste(legend, (0, sheet.height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full.save(path)
    return path
