"""Non-maximum suppression of soft boundary maps, as the Structured Edge / HED evaluation pipelines do.

The BSDS benchmark itself applies no NMS; methods thin their soft maps before scoring. The usual recipe (Dollár
and Zitnick's Structured Edge toolbox, reused by HED, RCF and most successors):

1. orientation from second derivatives of the map smoothed by a triangle filter of radius 4:
   ``Ox, Oy = gradient(convTri(E, 4))``, ``Oxx = d/dx Ox``, ``Oxy = d/dx Oy``, ``Oyy = d/dy Oy``,
   ``O = mod(atan(Oyy · sign(-Oxy) / (Oxx + 1e-5)), pi)`` (the normal to the edge; one deliberate difference:
   ``sign(0)`` counts as +1 so exactly horizontal edges, where ``Oxy = 0``, get a vertical normal);
2. a pixel is zeroed when ``1.01 · E`` is below the bilinearly interpolated map at distance ``d = ±1..±r``
   along that normal (coordinates clamped to ``[0, size - 1.001]``);
3. a border of ``s = 5`` pixels is faded linearly: row/column ``i < s`` from each side is multiplied by ``i / s``.

``gradient`` is MATLAB's (central differences, one-sided at the border, as :func:`numpy.gradient`), ``convTri``
the separable triangle kernel ``[1 .. r+1 .. 1] / (r+1)²`` with symmetric (edge-repeating) padding.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["conv_tri", "edge_nms", "edge_orientation"]


def conv_tri(img: np.ndarray, r: int) -> np.ndarray:
    """Triangle-filter smoothing of radius ``r`` (Piotr's toolbox ``convTri`` for integer ``r >= 1``)."""
    img = np.asarray(img, np.float64)
    if r <= 0:
        return img.copy()
    f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float64) / (r + 1) ** 2
    pad = np.pad(img, r, mode="symmetric")
    out = ndimage.correlate1d(pad, f, axis=0, mode="nearest")
    out = ndimage.correlate1d(out, f, axis=1, mode="nearest")
    return out[r:-r, r:-r]


def edge_orientation(prob: np.ndarray, *, smooth: int = 4) -> np.ndarray:
    """Normal direction in ``[0, pi)`` of each pixel (x = column to the right, y = row downwards)."""
    e = conv_tri(prob, smooth)
    oy, ox = np.gradient(e)
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    # sign(0) is taken as +1: with the toolbox's sign(0) = 0 an exactly axis-aligned horizontal edge (Oxy = 0,
    # common in synthetic images) would get a horizontal normal and survive NMS unthinned
    sgn = np.where(oxy > 0, -1.0, 1.0)
    return np.mod(np.arctan(oyy * sgn / (oxx + 1e-5)), np.pi)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    dx, dy = x - x0, y - y0
    return (
        img[y0, x0] * (1 - dx) * (1 - dy)
        + img[y0, x0 + 1] * dx * (1 - dy)
        + img[y0 + 1, x0] * (1 - dx) * dy
        + img[y0 + 1, x0 + 1] * dx * dy
    )


def edge_nms(
    prob: np.ndarray,
    *,
    radius: int = 1,
    border: int = 5,
    margin: float = 1.01,
    smooth: int = 4,
    orientation: np.ndarray | None = None,
) -> np.ndarray:
    """Suppress non-maxima across the edge.

    Args:
        prob: float ``H×W`` boundary probabilities (any non-negative scale; [0, 1] usually).
        radius: compare with neighbours at ``±1..±radius`` pixels along the normal.
        border: width of the linearly faded border (0 = none).
        margin: a pixel survives when ``margin · value >= `` every compared neighbour.
        smooth: triangle radius of the smoothing used for the orientation.
        orientation: optional precomputed normal angles ``H×W`` (radians); default from :func:`edge_orientation`.

    Returns:
        float64 ``H×W``: ``prob`` where it is a (non-strict) maximum across the edge, 0 elsewhere, border faded.
    """
    e = np.asarray(prob, np.float64)
    if e.ndim != 2:
        raise ValueError(f"edge_nms expects an H×W map, got shape {e.shape}")
    h, w = e.shape
    o = edge_orientation(e, smooth=smooth) if orientation is None else np.asarray(orientation, np.float64)
    out = e.copy()
    ys, xs = np.nonzero(e)
    if len(ys):
        co, si = np.cos(o[ys, xs]), np.sin(o[ys, xs])
        v = e[ys, xs] * margin
        keep = np.ones(len(ys), bool)
        for d in range(-radius, radius + 1):
            if d:
                keep &= ~(v < _bilinear(e, xs + d * co, ys + d * si))
        out[ys[~keep], xs[~keep]] = 0.0
    s = min(int(border), w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float64) / s
        out[:, :s] *= ramp[None, :]
        out[:, w - s :] *= ramp[None, ::-1]
        out[:s, :] *= ramp[:, None]
        out[h - s :, :] *= ramp[::-1, None]
    return out
