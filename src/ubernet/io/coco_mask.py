"""COCO instance masks without pycocotools: polygon rasterisation and RLE decoding (from the COCO format
definition).

A COCO mask is ``H×W``. Polygons are lists ``[x0, y0, x1, y1, ...]`` in continuous pixel coordinates (pixel
``(r, c)`` covers ``[c, c+1) × [r, r+1)``); a pixel is inside when its *centre* ``(c + 0.5, r + 0.5)`` is inside
the polygon (even-odd rule), so a square from (2, 2) to (6, 6) covers the 4×4 pixels 2..5 and its pixel count
equals its area. RLE counts alternate runs of 0s and 1s (starting with 0s) over the mask flattened in
column-major (Fortran) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def decode_rle_string(s: str) -> list[int]:
    """Decode COCO's compressed RLE counts string into run lengths.

    Each count is stored in 5-bit groups, least significant first, one character per group (``chr(48 + g)``);
    bit 0x20 of a group says more groups follow, bit 0x10 of the last group is the sign. From the fourth
    count on, the stored value is the difference to the count two places before.
    """
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("RLE string ends inside a count")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode ``{"size": [H, W], "counts": list[int] | str}`` into a bool ``H×W`` mask.

    Raises:
        ValueError: counts that are negative or do not add up to ``H·W``.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = decode_rle_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs):
        raise ValueError("RLE has a negative run length")
    if sum(runs) != h * w:
        raise ValueError(f"RLE runs add up to {sum(runs)}, expected {h}×{w} = {h * w}")
    values = np.zeros(len(runs), np.bool_)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T.copy()


def polygons_to_mask(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """Rasterise COCO polygons (each ``[x0, y0, x1, y1, ...]``) into a bool ``H×W`` mask (union of polygons,
    each filled by the even-odd rule at pixel centres)."""
    mask = np.zeros((h, w), np.bool_)
    yc = np.arange(h, dtype=np.float64) + 0.5
    for poly in polygons:
        pts = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # (rows, edges): does the horizontal line through the row centre cross the edge? (half-open in y)
        cross = (y0[None, :] <= yc[:, None]) != (y1[None, :] <= yc[:, None])
        rows, edges = np.nonzero(cross)
        t = (yc[rows] - y0[edges]) / (y1[edges] - y0[edges])
        xi = x0[edges] + t * (x1[edges] - x0[edges])
        # a crossing at xi toggles every pixel whose centre c + 0.5 lies right of it: c >= floor(xi - 0.5) + 1
        start = np.clip(np.floor(xi - 0.5).astype(np.int64) + 1, 0, w)
        toggles = np.zeros((h, w + 1), np.int32)
        np.add.at(toggles, (rows, start), 1)
        mask |= (np.cumsum(toggles, axis=1)[:, :w] % 2).astype(np.bool_)
    return mask


def segmentation_to_mask(segm: Any, h: int, w: int) -> np.ndarray:
    """A COCO ``segmentation`` entry (polygon list, uncompressed or compressed RLE) as a bool ``H×W`` mask.

    Raises:
        ValueError: an RLE of another size than ``H×W`` or an unrecognised entry.
    """
    if isinstance(segm, list):
        return polygons_to_mask(segm, h, w)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if [int(v) for v in segm["size"]] != [h, w]:
            raise ValueError(f"RLE mask is {segm['size'][0]}×{segm['size'][1]}, image is {h}×{w}")
        return rle_to_mask(segm)
    raise ValueError(f"unrecognised segmentation entry of type {type(segm).__name__}")
