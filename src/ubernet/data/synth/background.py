"""Background: 1–4 planar regions, each with its own tilt (so normals vary), colour and texture.

Two layouts: ``"voronoi"`` (the cells of 1–4 random seeds: straight outlines at random angles) and ``"room"``
(an indoor box seen from inside: back wall, floor, side walls and ceiling separated by the seams that run from
the back wall's corners, with strongly tilted floor and walls). Region outlines are boundaries; texture edges
inside a region are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ubernet.data.synth.textures import Palette, Texture, near_colour, sample_colour, sample_texture


@dataclass
class Region:
    """One planar background region.

    Attributes:
        normal: float ``3`` unit normal (camera convention, ``n_z > 0``).
        to_plane: float ``2×2``; texture coordinates of pixel ``(x, y)`` are ``to_plane @ (x, y)``, the
            in-plane coordinates of the plane point seen at that pixel (orthographic, so foreshortened by
            ``n_z`` along the tilt).
        texture: the region's albedo.
    """

    normal: np.ndarray
    to_plane: np.ndarray
    texture: Texture


def tilted_normal(theta: float, phi: float) -> np.ndarray:
    """Unit normal tilted by ``theta`` from the viewing axis towards image direction ``phi`` (radians)."""
    return np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])


def plane_map(n: np.ndarray) -> np.ndarray:
    """``2×2`` map from pixel ``(x, y)`` to orthonormal in-plane coordinates of the plane with normal ``n``.

    The plane point seen at ``(x, y)`` is ``P = (x, y, -(n_x x + n_y y) / n_z)``; its coordinates along two
    orthonormal in-plane axes ``e1, e2`` are linear in ``(x, y)``.
    """
    nx, ny, nz = (float(v) for v in n)
    # e1 = helper × n with helper = y (or x when n is close to y); e2 = n × e1
    e1 = np.array([nz, 0.0, -nx]) if abs(ny) < 0.9 else np.array([0.0, -nz, ny])
    e1 /= math.sqrt(float(e1 @ e1))
    e2 = np.array([ny * e1[2] - nz * e1[1], nz * e1[0] - nx * e1[2], nx * e1[1] - ny * e1[0]])
    dz = np.array([-n[0] / n[2], -n[1] / n[2]])  # dP_z / d(x, y)
    return np.array([[e[0] + e[2] * dz[0], e[1] + e[2] * dz[1]] for e in (e1, e2)])


def _voronoi(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    ys, xs = (np.arange(h) + 0.5)[:, None], (np.arange(w) + 0.5)[None, :]
    seeds = rng.uniform([0, 0], [w, h], size=(k, 2))
    lab = np.zeros((h, w), dtype=np.int64)
    best = None
    for i, (sx, sy) in enumerate(seeds):  # running argmin: far cheaper than argmin over a stacked axis
        d = (xs - sx) ** 2 + (ys - sy) ** 2
        if best is None:
            best = d
        else:
            closer = d < best
            lab[closer] = i
            best = np.minimum(best, d)
    return lab


def _room(rng: np.random.Generator, h: int, w: int, max_regions: int) -> tuple[np.ndarray, list[str]]:
    ys, xs = (np.arange(h) + 0.5)[:, None], (np.arange(w) + 0.5)[None, :]
    xl, xr = rng.uniform(-0.3, 0.35) * w, rng.uniform(0.65, 1.3) * w
    yc, yf = rng.uniform(-0.5, 0.25) * h, rng.uniform(0.45, 0.85) * h
    names = ["back", "left", "right", "ceiling", "floor"]
    # how far outside the back wall, across each of its sides; the seams between walls are where two of
    # these are equal, i.e. the lines from the back wall's corners
    score = [
        np.zeros((1, 1)),
        (xl - xs) * rng.uniform(0.8, 1.25),
        (xs - xr) * rng.uniform(0.8, 1.25),
        (yc - ys) * rng.uniform(0.8, 1.25),
        (ys - yf) * rng.uniform(0.8, 1.25),
    ]
    alive = list(range(5))
    while True:
        stack = np.stack([np.broadcast_to(score[i], (h, w)) for i in alive])
        lab = np.asarray(alive)[stack.argmax(axis=0)]
        present = np.flatnonzero(np.bincount(lab.ravel(), minlength=5))
        if len(present) <= max_regions:
            return lab, names
        # too many regions: drop the ceiling first, then the smaller side wall
        drop = 3 if 3 in alive else min((1, 2), key=lambda i: int((lab == i).sum()))
        alive.remove(drop)


def sample_background(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    layout: str,
    n_regions: tuple[int, int],
    tilt_deg: tuple[float, float],
    palette: Palette,
    textures: dict[str, float],
    contrast: tuple[float, float],
    period_px: tuple[float, float],
    similar_prob: float,
) -> tuple[np.ndarray, list[Region]]:
    """Regions of one image.

    Returns:
        ``region_map`` int32 ``H×W`` with values ``1..R`` (every id present), and the ``R`` regions.
    """
    h, w = size
    t0, t1 = math.radians(tilt_deg[0]), math.radians(tilt_deg[1])
    if layout == "room":
        lab, names = _room(rng, h, w, n_regions[1])
        normals = {
            "back": tilted_normal(rng.uniform(0, 0.2), rng.uniform(0, 2 * math.pi)),
            "left": tilted_normal(rng.uniform(t0, t1), 0.0),  # faces image right
            "right": tilted_normal(rng.uniform(t0, t1), math.pi),
            "ceiling": tilted_normal(rng.uniform(t0, t1), math.pi / 2),  # faces down (+y)
            "floor": tilted_normal(rng.uniform(t0, t1), -math.pi / 2),  # faces up (-y)
        }
        present = [int(i) for i in np.flatnonzero(np.bincount(lab.ravel()))]
        region_normals = [normals[names[i]] for i in present]
    else:
        k = int(rng.integers(n_regions[0], n_regions[1] + 1))
        lab = _voronoi(rng, h, w, k)
        present = [int(i) for i in np.flatnonzero(np.bincount(lab.ravel()))]
        region_normals = [tilted_normal(rng.uniform(t0, t1), rng.uniform(0, 2 * math.pi)) for _ in present]
    lut = np.zeros(int(lab.max()) + 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    region_map = np.take(lut, lab)
    regions: list[Region] = []
    for n in region_normals:
        if regions and rng.random() < similar_prob:  # neighbouring regions of nearly the same colour
            c1 = near_colour(rng, regions[-1].texture.c1)
        else:
            c1 = sample_colour(rng, palette)
        tex = sample_texture(
            rng, c1, kinds=textures, palette=palette, contrast=contrast, period_px=period_px, planar=True
        )
        regions.append(Region(n, plane_map(n), tex))
    return region_map, regions
