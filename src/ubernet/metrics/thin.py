"""Morphological thinning identical to MATLAB ``bwmorph(bw, 'thin', Inf)``.

MATLAB documents its algorithm as the two-subiteration parallel thinning of Guo and Hall (1989), in the form
given by Lam, Lee and Suen, "Thinning methodologies - a comprehensive survey", TPAMI 1992, p. 879. With the
8 neighbours of a pixel ``p`` numbered counter-clockwise from east (row index grows downwards, so "north" is the
row above)::

    x4 x3 x2
    x5  p x1
    x6 x7 x8

a pixel is deleted in a subiteration when all three conditions hold (``x9 = x1``):

* G1: ``X_H(p) = 1`` with ``X_H(p) = sum_{i=1..4} b_i``, ``b_i = 1`` iff ``x_{2i-1} = 0`` and
  (``x_{2i} = 1`` or ``x_{2i+1} = 1``) (the crossing number: exactly one 8-connected run of neighbours);
* G2: ``2 <= min(n1(p), n2(p)) <= 3`` with ``n1 = sum_k x_{2k-1} | x_{2k}``, ``n2 = sum_k x_{2k} | x_{2k+1}``;
* G3 (first subiteration): ``(x2 | x3 | ~x8) & x1 = 0``; G3' (second): ``(x6 | x7 | ~x4) & x5 = 0``.

The decision is made for all pixels from the image at the start of the subiteration (parallel), pixels outside
the image count as 0, and the two subiterations alternate until a whole iteration changes nothing.

Both lookup tables below are derived from these definitions (256 entries indexed by the 8-bit neighbour code,
bit ``k-1`` = ``x_k``). Only pixels whose neighbourhood changed since their last test are tested again, so the
cost is proportional to the number of boundary pixels, not to the image area times the number of iterations.
"""

from __future__ import annotations

import numpy as np

__all__ = ["thin", "thin_luts"]


def thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """The deletion tables of the two subiterations: bool ``(256,)`` each, indexed by the neighbour code."""
    codes = np.arange(256)
    x = [None] + [((codes >> (k - 1)) & 1).astype(bool) for k in range(1, 9)] + [None]
    x[9] = x[1]  # x9 = x1 closes the ring
    xh = np.zeros(256, int)
    n1 = np.zeros(256, int)
    n2 = np.zeros(256, int)
    for i in range(1, 5):
        xh += (~x[2 * i - 1]) & (x[2 * i] | x[2 * i + 1])
        n1 += x[2 * i - 1] | x[2 * i]
        n2 += x[2 * i] | x[2 * i + 1]
    g1 = xh == 1
    m = np.minimum(n1, n2)
    g2 = (m >= 2) & (m <= 3)
    g3 = ~((x[2] | x[3] | ~x[8]) & x[1])
    g3p = ~((x[6] | x[7] | ~x[4]) & x[5])
    return g1 & g2 & g3, g1 & g2 & g3p


_LUT1, _LUT2 = thin_luts()


def thin(bw: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Thin a binary image to one-pixel-wide strokes, as MATLAB ``bwmorph(bw, 'thin', n)``.

    Args:
        bw: ``H×W`` array, non-zero = foreground.
        max_iter: number of full iterations (both subiterations) as MATLAB's ``n``; ``None`` = until nothing
            changes (``Inf``).

    Returns:
        bool ``H×W``: the thinned image (a subset of ``bw``).
    """
    bw = np.asarray(bw)
    if bw.ndim != 2:
        raise ValueError(f"thin expects a 2-D image, got shape {bw.shape}")
    h, w = bw.shape
    wp = w + 2
    pad = np.zeros((h + 2, wp), np.uint8)
    pad[1:-1, 1:-1] = bw != 0
    flat = pad.ravel()
    # flat-index offsets of x1..x8 in the padded image (the zero frame makes every gather valid)
    offs = np.array([1, -wp + 1, -wp, -wp - 1, -1, wp - 1, wp, wp + 1], np.int64)
    weights = (1 << np.arange(8)).astype(np.uint8)
    # a pixel whose 4-neighbours are all set has X_H = 0 and cannot go until one of them does
    core = pad[1:-1, 1:-1].astype(bool)
    edge4 = core & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]).astype(bool)
    rr, cc = np.nonzero(edge4)
    start = (rr + 1) * wp + (cc + 1)
    dirty = [start, start]
    mark = np.zeros(flat.size, bool)
    sub = 0
    iters = 0
    while len(dirty[0]) or len(dirty[1]):
        if max_iter is not None and iters >= max_iter:
            break
        cand = dirty[sub]
        dirty[sub] = cand[:0]
        if len(cand):
            # de-duplicate without sorting: mark, collect, unmark
            mark[cand] = True
            # flatnonzero over the whole (small) mask beats a hash-based unique unless cand is tiny
            cand = np.flatnonzero(mark) if len(cand) > flat.size // 256 else np.unique(cand)
            mark[cand] = False
            cand = cand[flat[cand] != 0]
            if len(cand):
                nb = flat[cand[:, None] + offs]
                code = (nb * weights).sum(axis=1, dtype=np.int64)
                gone = cand[(_LUT1 if sub == 0 else _LUT2)[code]]
                if len(gone):
                    flat[gone] = 0
                    around = (gone[:, None] + offs).ravel()
                    around = around[flat[around] != 0]
                    dirty[0] = np.concatenate([dirty[0], around])
                    dirty[1] = np.concatenate([dirty[1], around])
        sub ^= 1
        if sub == 0:
            iters += 1
    return pad[1:-1, 1:-1].astype(bool)
