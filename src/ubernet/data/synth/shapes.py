"""The rigid object classes: each is a solid built from the primitives of :mod:`.geometry`.

A class is defined by its **shape** only; size is the parameter ``s`` (pixels, roughly the radius of the
object's bounding sphere), orientation is a uniformly random 3-D rotation, and a few shape proportions vary
within narrow ranges so that e.g. a cylinder stays recognisably a cylinder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ubernet.data.synth import geometry as g
from ubernet.data.synth.classes import CLASSES


@dataclass
class Solid:
    """A placed object ready to be cast.

    Attributes:
        primitive: anything with ``bbox()`` and ``cast(xs, ys)`` (see :mod:`.geometry`).
        centre: world ``(x, y, z)`` of the object's frame origin (pixels; z towards the camera).
        rot: ``3×3`` local -> world rotation of the object's frame (textures are drawn in this frame, so they
            stick to the surface).
        part_ids: for unions whose members are labelled (the person), member index -> part id (1..6).
    """

    primitive: g.Primitive
    centre: np.ndarray
    rot: np.ndarray
    part_ids: np.ndarray | None = None


def _sphere(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    return g.Sphere(c, s)


def _cube(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    a = 0.6 * s
    local = np.concatenate([np.eye(3), -np.eye(3)])
    corners = a * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return g.ConvexPolyhedron(c, local @ rot.T, np.full(6, a), corners @ rot.T)


def _cylinder(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    return g.Cylinder(c, rot[:, 2], r=s * rng.uniform(0.45, 0.6), half=s * rng.uniform(0.55, 0.8))


def _cone(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    height = s * rng.uniform(1.4, 1.7)
    # frame origin at the centroid, a quarter of the height above the base
    return g.Cone(c, rot[:, 2], r=s * rng.uniform(0.5, 0.65), below=height / 4, above=3 * height / 4)


def _pyramid(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    a, height = s * rng.uniform(0.55, 0.7), s * rng.uniform(1.25, 1.55)
    below, above = height / 4, 3 * height / 4
    normals, offsets = [[0.0, 0.0, -1.0]], [below]
    for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1)):
        # side plane through the apex (0, 0, above) and the base edge at distance a: normal ∝ (H d, a)
        n = np.array([height * dx, height * dy, a])
        norm = math.sqrt(float(n @ n))
        normals.append(n / norm)
        offsets.append(a * above / norm)
    verts = np.array([[0, 0, above]] + [[x * a, y * a, -below] for x in (-1, 1) for y in (-1, 1)], dtype=float)
    return g.ConvexPolyhedron(c, np.asarray(normals) @ rot.T, np.asarray(offsets), verts @ rot.T)


def _star(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    points = 5
    r_in, depth = s * rng.uniform(0.38, 0.5), s * rng.uniform(0.18, 0.3)
    ang = np.arange(points) * 2 * math.pi / points
    outer = s * np.c_[np.cos(ang), np.sin(ang)]
    inner = r_in * np.c_[np.cos(ang + math.pi / points), np.sin(ang + math.pi / points)]
    # a star is not convex: the union of its inner pentagon and one triangle per point
    pieces = [g.prism(c, rot, inner, depth)]
    for k in range(points):
        pieces.append(g.prism(c, rot, np.array([inner[k - 1], outer[k], inner[k]]), depth))
    return g.Union(pieces)


def _capsule(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    r = s * rng.uniform(0.32, 0.42)
    half = s - r
    e = rot[:, 2]
    return g.Union([g.Cylinder(c, e, r, half), g.Sphere(c + half * e, r), g.Sphere(c - half * e, r)])


def _ring(rng: np.random.Generator, c: np.ndarray, s: float, rot: np.ndarray) -> g.Primitive:
    r = s * rng.uniform(0.8, 0.92)
    return g.Cylinder(c, rot[:, 2], r=r, half=s * rng.uniform(0.15, 0.3), hole=r * rng.uniform(0.5, 0.62))


_BUILDERS: dict[str, Callable[[np.random.Generator, np.ndarray, float, np.ndarray], g.Primitive]] = {
    "sphere": _sphere,
    "cube": _cube,
    "cylinder": _cylinder,
    "cone": _cone,
    "pyramid": _pyramid,
    "star": _star,
    "capsule": _capsule,
    "ring": _ring,
}

#: flat classes whose face is kept within this angle (radians) of the camera, so they rarely appear edge-on
_MAX_TILT: dict[str, float] = {"star": 1.0, "ring": 1.2}

#: Rough projected area of each class divided by ``s²`` (averaged over orientations); the scene sampler uses
#: it to size the other objects so that the designated salient object usually stays the largest.
AREA_FACTOR: dict[str, float] = {
    "sphere": math.pi,
    "cube": 1.9,
    "cylinder": 1.7,
    "cone": 1.3,
    "pyramid": 1.3,
    "star": 1.2,
    "capsule": 1.6,
    "ring": 1.4,
    "person": 0.45,
}


def rigid_classes() -> tuple[str, ...]:
    """Names of the object classes built here (every class but background and person)."""
    return tuple(c for c in CLASSES[1:] if c in _BUILDERS)


def build_rigid(name: str, rng: np.random.Generator, centre: np.ndarray, size: float) -> Solid:
    """A ``name`` object of size ``size`` (px) at ``centre`` with a uniformly random orientation."""
    rot = g.tilted_rotation(rng, _MAX_TILT[name]) if name in _MAX_TILT else g.random_rotation(rng)
    c = np.asarray(centre, dtype=np.float64)
    return Solid(_BUILDERS[name](rng, c, float(size), rot), c, rot)
