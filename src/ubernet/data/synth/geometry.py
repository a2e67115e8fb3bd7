"""Analytic ray casting of the solid primitives the synthetic objects are made of.

Camera convention (the sample contract's): world = camera frame, ``x`` right (pixel columns), ``y`` down (pixel
rows), ``z`` towards the camera. Projection is orthographic along ``z``: the pixel in row ``i``, column ``j``
sees the ray through its centre ``(x, y) = (j + 0.5, i + 0.5)``, and the visible point of a solid is the point
of the solid on that ray with the **largest** ``z``.

Every primitive is placed in absolute world/pixel coordinates and implements

* ``bbox() -> (x0, y0, x1, y1)``: integer pixel window (``x1``/``y1`` exclusive) containing every pixel whose
  centre can see the solid (conservative, one pixel of margin);
* ``cast(xs, ys) -> Hit``: for pixel centres ``xs`` (shape ``1×w``) and ``ys`` (shape ``h×1``), the visible
  depth ``z`` (``h×w`` float64, ``-inf`` where the ray misses) and the outward unit normal (three ``h×w``
  arrays; meaningless where the ray misses).

Solids are convex pieces described by constraints on the ray parameter ``t = z`` (each constraint keeps an
interval of ``t``; the solid is their intersection, the visible point is its upper end), unions of pieces (the
front-most piece wins) and one difference (a tube: cylinder minus a coaxial hole). No per-pixel Python loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

NEG_INF = -np.inf
_EPS_AXIS = 1e-4  # axis components this close to 0 or ±1 are nudged so no quadratic degenerates


@dataclass
class Hit:
    """Result of casting rays through a pixel window.

    Attributes:
        z: float64 ``h×w`` depth of the visible point (towards the camera is larger), ``-inf`` = miss.
        nx, ny, nz: float64 ``h×w`` components of the outward unit normal at that point.
        part: int ``h×w`` index of the union member that is visible (0 for single solids).
    """

    z: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    part: np.ndarray | None = None


class Primitive(Protocol):
    """What every solid implements (see the module docstring)."""

    def bbox(self) -> tuple[int, int, int, int]: ...

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit: ...


def pixel_centres(x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the window ``[x0, x1) × [y0, y1)``: ``xs`` (1×w) and ``ys`` (h×1)."""
    xs = (np.arange(x0, x1, dtype=np.float64) + 0.5)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float64) + 0.5)[:, None]
    return xs, ys


def pixel_window(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[int, int, int, int]:
    """Integer window of the pixels whose centres lie in ``[xmin, xmax] × [ymin, ymax]``, one pixel wider."""
    return (math.floor(xmin - 0.5), math.floor(ymin - 0.5), math.ceil(xmax - 0.5) + 1, math.ceil(ymax - 0.5) + 1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3-D rotation (local -> world), float64 ``3×3``, from a random unit quaternion."""
    q = rng.normal(size=4)
    w, x, y, z = q / math.sqrt(float(q @ q))
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def tilted_rotation(rng: np.random.Generator, max_tilt: float) -> np.ndarray:
    """A random rotation whose local z axis makes an angle of at most ``max_tilt`` radians with the viewing
    axis (uniform over that spherical cap), with a uniformly random spin about it; for flat objects (star,
    ring) that would too often be seen edge-on under a uniform rotation."""
    spin = rotation_z(rng.uniform(0.0, 2 * math.pi))
    tilt = math.acos(rng.uniform(math.cos(max_tilt), 1.0))
    axis_angle = rng.uniform(0.0, 2 * math.pi)
    k = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])  # tilt about an in-plane axis
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    tilt_rot = np.eye(3) + math.sin(tilt) * kx + (1 - math.cos(tilt)) * (kx @ kx)  # Rodrigues
    return tilt_rot @ spin


def rotation_z(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians in the image plane (about the viewing axis)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _safe_axis(e: np.ndarray) -> np.ndarray:
    """Unit axis with ``|e_z|`` kept away from 0 and 1, so slab and quadric terms never divide by zero."""
    e = np.asarray(e, dtype=np.float64)
    e = e / math.sqrt(float(e @ e))
    if abs(e[2]) < _EPS_AXIS:
        e = e + np.array([0.0, 0.0, _EPS_AXIS if e[2] >= 0 else -_EPS_AXIS])
    if abs(e[2]) > 1 - _EPS_AXIS:
        e = e + np.array([_EPS_AXIS, 0.0, 0.0])
    return e / math.sqrt(float(e @ e))


def _normalise(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inv = 1.0 / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
    return nx * inv, ny * inv, nz * inv


class Sphere:
    """Sphere of radius ``r`` centred at ``c`` (world)."""

    def __init__(self, c: Sequence[float], r: float) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        self.r = float(r)

    def bbox(self) -> tuple[int, int, int, int]:
        cx, cy, _ = self.c
        return pixel_window(cx - self.r, cy - self.r, cx + self.r, cy + self.r)

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        u, v = xs - self.c[0], ys - self.c[1]
        h2 = self.r * self.r - u * u - v * v
        w = np.sqrt(np.maximum(h2, 0.0))
        z = np.where(h2 >= 0, self.c[2] + w, NEG_INF)
        inv = 1.0 / self.r
        return Hit(z, np.broadcast_to(u * inv, z.shape), np.broadcast_to(v * inv, z.shape), w * inv)


class Ellipsoid:
    """Ellipsoid ``(X - c)ᵀ M (X - c) <= 1`` with ``M = R diag(1/radii²) Rᵀ`` (``R``: local -> world)."""

    def __init__(self, c: Sequence[float], rot: np.ndarray, radii: Sequence[float]) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        rad = np.asarray(radii, dtype=np.float64)
        self.m = rot @ np.diag(1.0 / rad**2) @ rot.T
        # projected half extents: sqrt of the diagonal of M^-1 = R diag(radii²) Rᵀ
        self.half = np.sqrt(((rot * rad) ** 2).sum(axis=1))

    def bbox(self) -> tuple[int, int, int, int]:
        (cx, cy, _), (hx, hy, _) = self.c, self.half
        return pixel_window(cx - hx, cy - hy, cx + hx, cy + hy)

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        m = self.m
        u, v = xs - self.c[0], ys - self.c[1]
        b = m[0, 2] * u + m[1, 2] * v
        c = m[0, 0] * u * u + 2.0 * m[0, 1] * u * v + m[1, 1] * v * v - 1.0
        disc = b * b - m[2, 2] * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t = (sq - b) / m[2, 2]
        z = np.where(disc >= 0, self.c[2] + t, NEG_INF)
        # gradient M (X - c); its z component equals sq >= 0 at the front root
        nx, ny, nz = _normalise(m[0, 0] * u + m[0, 1] * v + m[0, 2] * t, m[1, 0] * u + m[1, 1] * v + m[1, 2] * t, sq)
        return Hit(z, nx, ny, nz)


class ConvexPolyhedron:
    """Intersection of half-spaces ``n_k · (X - c) <= d_k`` (world normals), with its vertices for the bbox."""

    def __init__(self, c: Sequence[float], normals: np.ndarray, offsets: np.ndarray, vertices: np.ndarray) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        n = np.asarray(normals, dtype=np.float64).copy()
        # a face seen exactly edge-on would divide by zero; tilting it by 1e-9 changes no pixel
        n[np.abs(n[:, 2]) < 1e-9, 2] = 1e-9
        d = np.asarray(offsets, dtype=np.float64)
        front = n[:, 2] > 0
        self.nf, self.df = n[front], d[front]
        self.nb, self.db = n[~front], d[~front]
        self.vertices = np.asarray(vertices, dtype=np.float64)

    def bbox(self) -> tuple[int, int, int, int]:
        lo = self.c[:2] + self.vertices[:, :2].min(axis=0)
        hi = self.c[:2] + self.vertices[:, :2].max(axis=0)
        return pixel_window(lo[0], lo[1], hi[0], hi[1])

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        u, v = xs - self.c[0], ys - self.c[1]
        nf = self.nf[:, :, None, None]
        # front faces (n_z > 0) bound t from above, back faces from below
        tf = (self.df[:, None, None] - nf[:, 0] * u - nf[:, 1] * v) / nf[:, 2]
        k = tf.argmin(axis=0)
        t_hi = np.take_along_axis(tf, k[None], axis=0)[0]
        if len(self.nb):
            nb = self.nb[:, :, None, None]
            t_lo = ((self.db[:, None, None] - nb[:, 0] * u - nb[:, 1] * v) / nb[:, 2]).max(axis=0)
            hit = t_lo <= t_hi
        else:
            hit = np.ones(t_hi.shape, dtype=bool)
        z = np.where(hit, self.c[2] + t_hi, NEG_INF)
        n = self.nf[k]
        return Hit(z, n[..., 0], n[..., 1], n[..., 2])


def prism(c: Sequence[float], rot: np.ndarray, polygon: np.ndarray, half_depth: float) -> ConvexPolyhedron:
    """Convex polygon (``P×2``, local x-y, any orientation) extruded along local z over ``±half_depth``."""
    poly = np.asarray(polygon, dtype=np.float64)
    centroid = poly.mean(axis=0)
    normals, offsets = [], []
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        n = np.array([q[1] - p[1], p[0] - q[0]])
        n /= math.sqrt(float(n @ n))
        if n @ (p - centroid) < 0:
            n = -n
        normals.append([n[0], n[1], 0.0])
        offsets.append(n @ p)
    normals += [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
    offsets += [half_depth, half_depth]
    verts = np.concatenate([np.c_[poly, np.full(len(poly), s * half_depth)] for s in (-1.0, 1.0)])
    return ConvexPolyhedron(c, np.asarray(normals) @ rot.T, np.asarray(offsets), verts @ rot.T)


def _slab(s0: np.ndarray, e2: float, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """``t`` interval where ``lo <= s0 + e2 t <= hi`` (``e2 != 0``)."""
    a, b = (lo - s0) / e2, (hi - s0) / e2
    return (a, b) if e2 > 0 else (b, a)


class Cylinder:
    """Solid cylinder: axis ``e`` (unit, world) through ``c``, radius ``r``, axial half-length ``half``.

    With ``hole > 0`` it is a tube: the coaxial infinite cylinder of radius ``hole`` is removed (the "ring").
    """

    def __init__(self, c: Sequence[float], axis: Sequence[float], r: float, half: float, hole: float = 0.0) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        self.e = _safe_axis(np.asarray(axis))
        self.r, self.half, self.hole = float(r), float(half), float(hole)

    def bbox(self) -> tuple[int, int, int, int]:
        e = self.e
        hx = self.half * abs(e[0]) + self.r * math.sqrt(max(0.0, 1 - e[0] ** 2))
        hy = self.half * abs(e[1]) + self.r * math.sqrt(max(0.0, 1 - e[1] ** 2))
        return pixel_window(self.c[0] - hx, self.c[1] - hy, self.c[0] + hx, self.c[1] + hy)

    def _quadric(
        self, u: np.ndarray, v: np.ndarray, s0: np.ndarray, r: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # |P|² - (P·e)² - r² along the ray P = (u, v, t): A t² + 2 B t + C
        e2 = self.e[2]
        a = 1.0 - e2 * e2
        b = -s0 * e2
        disc = b * b - a * (u * u + v * v - s0 * s0 - r * r)
        sq = np.sqrt(np.maximum(disc, 0.0))
        return disc >= 0, (-b - sq) / a, (-b + sq) / a

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        e = self.e
        u, v = xs - self.c[0], ys - self.c[1]
        s0 = e[0] * u + e[1] * v
        ok, c_lo, c_hi = self._quadric(u, v, s0, self.r)
        s_lo, s_hi = _slab(s0, e[2], -self.half, self.half)
        t = np.minimum(c_hi, s_hi)
        on_side = c_hi < s_hi
        hit = ok & (np.maximum(c_lo, s_lo) <= t)
        inner = None
        if self.hole > 0:
            ok_i, i_lo, i_hi = self._quadric(u, v, s0, self.hole)
            in_hole = ok_i & (i_lo <= t) & (t <= i_hi)
            # inside the hole at the outer front: the visible point is where the ray leaves the hole, if that
            # is still inside the solid's interval
            inner = in_hole & (i_lo >= np.maximum(c_lo, s_lo))
            hit = hit & (~in_hole | inner)
            t = np.where(inner, i_lo, t)
        z = np.where(hit, self.c[2] + t, NEG_INF)
        s = s0 + e[2] * t
        px, py, pz = u - s * e[0], v - s * e[1], t - s * e[2]  # radial vector from the axis
        sign = 1.0 if e[2] > 0 else -1.0
        nx = np.where(on_side, px / self.r, sign * e[0])
        ny = np.where(on_side, py / self.r, sign * e[1])
        nz = np.where(on_side, pz / self.r, sign * e[2])
        if inner is not None:
            nx = np.where(inner, -px / self.hole, nx)
            ny = np.where(inner, -py / self.hole, ny)
            nz = np.where(inner, -pz / self.hole, nz)
        return Hit(z, *_normalise(nx, ny, nz))


class Cone:
    """Solid cone: axis ``e`` through ``c``; base disc of radius ``r`` at axial ``-below``, apex at ``+above``."""

    def __init__(self, c: Sequence[float], axis: Sequence[float], r: float, below: float, above: float) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        self.r, self.below, self.above = float(r), float(below), float(above)
        self.k2 = (self.r / (self.below + self.above)) ** 2
        e = _safe_axis(np.asarray(axis))
        if abs(1.0 - e[2] ** 2 * (1.0 + self.k2)) < 1e-6:  # ray parallel to the surface: nudge
            e = _safe_axis(e + np.array([1e-3, 0.0, 0.0]))
        self.e = e

    def bbox(self) -> tuple[int, int, int, int]:
        e = self.e
        base, apex = -self.below * e, self.above * e
        rx, ry = self.r * math.sqrt(max(0.0, 1 - e[0] ** 2)), self.r * math.sqrt(max(0.0, 1 - e[1] ** 2))
        x0, x1 = min(base[0] - rx, apex[0]), max(base[0] + rx, apex[0])
        y0, y1 = min(base[1] - ry, apex[1]), max(base[1] + ry, apex[1])
        return pixel_window(self.c[0] + x0, self.c[1] + y0, self.c[0] + x1, self.c[1] + y1)

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        e, k2, ha = self.e, self.k2, self.above
        u, v = xs - self.c[0], ys - self.c[1]
        s0 = e[0] * u + e[1] * v
        # |P_perp|² - k² (ha - s)² along the ray: A t² + 2 B t + C
        a = 1.0 - e[2] ** 2 * (1.0 + k2)
        b = e[2] * (k2 * (ha - s0) - s0)
        disc = b * b - a * (u * u + v * v - s0 * s0 - k2 * (ha - s0) ** 2)
        sq = np.sqrt(np.maximum(disc, 0.0))
        r1, r2 = (-b - sq) / a, (-b + sq) / a
        if a < 0:
            r1, r2 = r2, r1
        s_lo, s_hi = _slab(s0, e[2], -self.below, ha)
        ok = disc >= 0
        if a > 0:  # the ray meets the double cone in one bounded interval [r1, r2]
            t = np.minimum(r2, s_hi)
            on_side = r2 < s_hi
            hit = ok & (np.maximum(r1, s_lo) <= t)
        else:  # inside = (-inf, r1] ∪ [r2, inf); within the slab only one piece can be non-empty (convexity)
            upper = ~ok | (np.maximum(r2, s_lo) <= s_hi)
            t = np.where(upper, s_hi, np.minimum(r1, s_hi))
            on_side = ~upper & (r1 < s_hi)
            hit = upper | (s_lo <= t)
        z = np.where(hit, self.c[2] + t, NEG_INF)
        s = s0 + e[2] * t
        w = k2 * (ha - s)  # gradient = P_perp + k² (ha - s) e
        sign = 1.0 if e[2] > 0 else -1.0
        nx = np.where(on_side, u - s * e[0] + w * e[0], sign * e[0])
        ny = np.where(on_side, v - s * e[1] + w * e[1], sign * e[1])
        nz = np.where(on_side, t - s * e[2] + w * e[2], sign * e[2])
        return Hit(z, *_normalise(nx, ny, nz))


class Union:
    """Union of solids: each pixel shows the front-most member; ``Hit.part`` says which (index in ``members``)."""

    def __init__(self, members: Sequence[Primitive]) -> None:
        self.members = list(members)
        boxes = np.array([m.bbox() for m in self.members])
        self._box = (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))

    def bbox(self) -> tuple[int, int, int, int]:
        return self._box

    def cast(self, xs: np.ndarray, ys: np.ndarray) -> Hit:
        h, w = ys.shape[0], xs.shape[1]
        wx0, wy0 = math.floor(xs[0, 0]), math.floor(ys[0, 0])
        z = np.full((h, w), NEG_INF)
        nx, ny, nz = np.zeros((h, w)), np.zeros((h, w)), np.ones((h, w))
        part = np.zeros((h, w), dtype=np.int16)
        for k, m in enumerate(self.members):
            # cast each member only over its own window (clipped to ours): limbs are small
            bx0, by0, bx1, by1 = m.bbox()
            x0, y0 = max(bx0 - wx0, 0), max(by0 - wy0, 0)
            x1, y1 = min(bx1 - wx0, w), min(by1 - wy0, h)
            if x1 <= x0 or y1 <= y0:
                continue
            hit = m.cast(xs[:, x0:x1], ys[y0:y1])
            win = (slice(y0, y1), slice(x0, x1))
            better = hit.z > z[win]
            z[win] = np.where(better, hit.z, z[win])
            nx[win] = np.where(better, hit.nx, nx[win])
            ny[win] = np.where(better, hit.ny, ny[win])
            nz[win] = np.where(better, hit.nz, nz[win])
            part[win] = np.where(better, k, part[win])
        return Hit(z, nx, ny, nz, part)
