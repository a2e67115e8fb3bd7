"""Drawing helpers shared by the task files: palettes, maps to RGB, boxes with labels, panels.

Every function returns uint8 ``H×W×3`` RGB arrays so pictures compose with plain numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved ids), ``uint8 [n, 3]``; id 0 is black, 255 is ignore."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


_PALETTE = palette()


def labels_to_rgb(labels: np.ndarray) -> np.ndarray:
    """Class-id map ``H×W`` (0..255) to RGB with the VOC palette (255 = ignore drawn white)."""
    rgb = _PALETTE[np.asarray(labels, dtype=np.uint8)]
    rgb[np.asarray(labels) == 255] = 255
    return rgb


def gray_to_rgb(values: np.ndarray, *, invert: bool = False) -> np.ndarray:
    """Map ``H×W`` values in [0, 1] to gray RGB; ``invert`` draws high values dark (boundaries on white)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    if invert:
        v = 1.0 - v
    g = (v * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Unit normals ``H×W×3`` in [-1, 1] to RGB as ``(n + 1) / 2``; zero (invalid) vectors drawn black."""
    n = np.asarray(normals, dtype=np.float32)
    rgb = ((n + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(n != 0, axis=-1)] = 0
    return rgb


def multilabel_to_rgb(maps: np.ndarray) -> np.ndarray:
    """Per-class maps ``C×H×W`` in [0, 1] to one picture on white: each pixel takes the colour of its
    strongest class, blended by that class's value (class ``c`` uses palette colour ``c + 1``)."""
    m = np.asarray(maps, dtype=np.float32)
    if m.shape[0] == 0:
        return np.full((*m.shape[1:], 3), 255, np.uint8)
    best = m.argmax(0)
    strength = np.clip(m.max(0), 0.0, 1.0)[..., None]
    colour = _PALETTE[(best + 1) % 256].astype(np.float32)
    return (255.0 * (1.0 - strength) + colour * strength + 0.5).astype(np.uint8)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    scores: Sequence[float] | None = None,
) -> np.ndarray:
    """Draw ``boxes`` (``N×4`` x1, y1, x2, y2 continuous, x2 exclusive) with class names (and scores)."""
    pil = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(pil)
    for k, box in enumerate(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)):
        lab = int(labels[k])
        colour = tuple(int(c) for c in _PALETTE[lab % 256]) if lab % 256 else (255, 255, 0)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=1)
        name = str(class_names[lab]) if 0 <= lab < len(class_names) else str(lab)
        text = name if scores is None else f"{name} {float(scores[k]):.2f}"
        tx, ty = x1 + 1, max(0.0, y1 - 10)
        draw.rectangle([tx - 1, ty, tx + 6 * len(text), ty + 10], fill=(0, 0, 0))
        draw.text((tx, ty), text, fill=colour)
    return np.asarray(pil)


def title(img: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """Put ``text`` in a white band above ``img``."""
    band = Image.new("RGB", (img.shape[1], height), (255, 255, 255))
    ImageDraw.Draw(band).text((2, 1), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(band), img], axis=0)


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Tile equally sized RGB tiles row by row on a white canvas with ``pad`` pixels between them."""
    h = max(t.shape[0] for r in rows for t in r)
    w = max(t.shape[1] for r in rows for t in r)
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + t.shape[0], x : x + t.shape[1]] = t
    return canvas
