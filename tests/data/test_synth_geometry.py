"""Ray casting of the synthetic world's primitives against values derived by hand from the geometry.

Camera: x right, y down, z towards the camera; orthographic; pixel (row i, col j) sees the ray through
(j + 0.5, i + 0.5). A solid's visible point is its largest z on that ray.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ubernet.data.synth import geometry as g
from ubernet.data.synth.person import POSES, build_person
from ubernet.data.synth.shapes import build_rigid, rigid_classes

S2 = math.sqrt(2.0)


def cast_at(prim, col: int, row: int) -> tuple[float, np.ndarray]:
    """Visible depth and normal at one pixel."""
    xs, ys = g.pixel_centres(col, row, col + 1, row + 1)
    h = prim.cast(xs, ys)
    return float(h.z[0, 0]), np.array([h.nx[0, 0], h.ny[0, 0], h.nz[0, 0]])


def test_sphere_depth_and_normal():
    s = g.Sphere((20.5, 20.5, 5.0), 10.0)
    z, n = cast_at(s, 20, 20)  # centre pixel: front pole
    assert z == pytest.approx(15.0) and n == pytest.approx([0, 0, 1])
    z, n = cast_at(s, 26, 20)  # 6 px right: z = 5 + sqrt(100 - 36) = 13, n = (6, 0, 8) / 10
    assert z == pytest.approx(13.0) and n == pytest.approx([0.6, 0, 0.8])
    z, n = cast_at(s, 20, 12)  # 8 px up: n = (0, -8, 6) / 10
    assert z == pytest.approx(11.0) and n == pytest.approx([0, -0.8, 0.6])
    assert cast_at(s, 31, 20)[0] == -np.inf  # 11 px away: miss


def test_ellipsoid_axis_aligned():
    e = g.Ellipsoid((10.5, 10.5, 0.0), np.eye(3), (10.0, 5.0, 4.0))
    z, n = cast_at(e, 16, 10)  # u = 6: z = 4 sqrt(1 - 0.36) = 3.2; gradient (6/100, 0, 3.2/16)
    assert z == pytest.approx(3.2)
    grad = np.array([0.06, 0.0, 0.2])
    assert n == pytest.approx(grad / np.linalg.norm(grad))
    assert cast_at(e, 10, 16)[0] == -np.inf  # v = 6 > b = 5


def test_cube_face_on_and_rotated():
    a = 5.0
    normals = np.concatenate([np.eye(3), -np.eye(3)])
    box = g.ConvexPolyhedron(
        (10.5, 10.5, 0.0),
        normals,
        np.full(6, a),
        a * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float),
    )
    z, n = cast_at(box, 14, 7)  # inside the front face
    assert z == pytest.approx(5.0) and n == pytest.approx([0, 0, 1])
    assert cast_at(box, 16, 10)[0] == -np.inf  # u = 5.5 > a
    # rotated 45 degrees about y: front faces have normals (±1, 0, 1)/sqrt2 and meet in an edge at z = a sqrt2
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    box = g.ConvexPolyhedron((10.5, 10.5, 0.0), normals @ rot.T, np.full(6, a), np.zeros((1, 3)))
    z, n = cast_at(box, 13, 10)  # u = 3 on the face n = (1, 0, 1)/sqrt2:  (u + t)/sqrt2 = a
    assert z == pytest.approx(a * S2 - 3) and n == pytest.approx([1 / S2, 0, 1 / S2])
    z, n = cast_at(box, 7, 10)  # u = -3 on the mirror face
    assert z == pytest.approx(a * S2 - 3) and n == pytest.approx([-1 / S2, 0, 1 / S2])
    assert cast_at(box, 18, 10)[0] == -np.inf  # u = 8 > a sqrt2


def test_cylinder_side_and_cap():
    cyl = g.Cylinder((10.5, 10.5, 0.0), (1.0, 0.0, 0.0), r=4.0, half=10.0)  # lying along x
    z, n = cast_at(cyl, 12, 12)  # v = 2: z = sqrt(16 - 4), n = (0, 2, z) / 4
    assert z == pytest.approx(math.sqrt(12), abs=1e-3)
    assert n == pytest.approx([0, 0.5, math.sqrt(12) / 4], abs=1e-3)
    assert cast_at(cyl, 21, 10)[0] == -np.inf  # u = 11 > half
    cyl = g.Cylinder((10.5, 10.5, 0.0), (0.0, 0.0, 1.0), r=4.0, half=3.0)  # facing the camera: a disc
    z, n = cast_at(cyl, 12, 12)
    assert z == pytest.approx(3.0, abs=1e-3) and n == pytest.approx([0, 0, 1], abs=1e-3)
    assert cast_at(cyl, 14, 14)[0] == -np.inf  # distance 3.5 * sqrt2 > 4


def test_ring_hole_and_inner_wall():
    ring = g.Cylinder((10.5, 10.5, 0.0), (0.0, 0.0, 1.0), r=8.0, half=2.0, hole=4.0)  # washer facing us
    z, n = cast_at(ring, 16, 10)  # radius 6: on the annulus
    assert z == pytest.approx(2.0, abs=1e-3) and n == pytest.approx([0, 0, 1], abs=1e-3)
    assert cast_at(ring, 12, 10)[0] == -np.inf  # radius 2: seen through the hole
    assert cast_at(ring, 19, 10)[0] == -np.inf  # radius 9: outside
    # axis tilted 45 degrees towards +y, half-length 1: through the centre the ray only crosses the hole
    e = (0.0, 1 / S2, 1 / S2)
    ring = g.Cylinder((10.5, 10.0, 0.0), e, r=8.0, half=1.0, hole=4.0)
    assert cast_at(ring, 10, 10)[0] == -np.inf
    # at v = 3.5 the ray leaves the hole through the inner wall at t = 3.5 - 4 sqrt2 (solve |P_perp|² = 16),
    # inside the slab [-3.5 - sqrt2, -3.5 + sqrt2]; there P_perp = (0, 2 sqrt2, -2 sqrt2), normal = -P_perp/4
    z, n = cast_at(ring, 10, 13)
    assert z == pytest.approx(3.5 - 4 * S2, abs=1e-9)
    assert n == pytest.approx([0, -1 / S2, 1 / S2], abs=1e-9)


def test_cone_apex_towards_camera_sideways_and_base():
    # radius 6 at the base (axial -2), apex at +6: the radius at axial s is 0.75 (6 - s)
    cone = g.Cone((10.5, 10.5, 0.0), (0.0, 0.0, 1.0), r=6.0, below=2.0, above=6.0)
    z, n = cast_at(cone, 13, 10)  # distance 3 -> s = 2; gradient P_perp + k²(6 - s) e = (3, 0, 2.25)
    assert z == pytest.approx(2.0, abs=1e-3) and n == pytest.approx([0.8, 0, 0.6], abs=1e-3)
    assert cast_at(cone, 17, 10)[0] == -np.inf  # distance 7 > 6
    cone = g.Cone((10.5, 10.5, 0.0), (1.0, 0.0, 0.0), r=6.0, below=2.0, above=6.0)  # lying along x
    z, n = cast_at(cone, 12, 10)  # u = 2 -> surface radius 3; gradient (0, 0, 3) + 0.5625 * 4 * (1, 0, 0)
    assert z == pytest.approx(3.0, abs=1e-3) and n == pytest.approx([0.6, 0, 0.8], abs=1e-3)
    assert cast_at(cone, 7, 10)[0] == -np.inf  # u = -3 is behind the base
    cone = g.Cone((10.5, 10.5, 0.0), (0.0, 0.0, -1.0), r=6.0, below=2.0, above=6.0)  # apex away: base disc
    z, n = cast_at(cone, 14, 10)
    assert z == pytest.approx(2.0, abs=1e-3) and n == pytest.approx([0, 0, 1], abs=1e-3)


def test_union_shows_front_member_and_its_index():
    u = g.Union([g.Sphere((10.5, 10.5, 0.0), 5.0), g.Sphere((14.5, 10.5, 2.0), 3.0)])
    xs, ys = g.pixel_centres(*u.bbox())
    hit = u.cast(xs, ys)
    x0, y0 = u.bbox()[:2]
    assert hit.part[10 - y0, 14 - x0] == 1  # the nearer sphere's front (z = 5) beats the big one (z = 3.9)
    assert hit.z[10 - y0, 14 - x0] == pytest.approx(5.0)
    assert hit.part[10 - y0, 8 - x0] == 0 and hit.z[10 - y0, 8 - x0] == pytest.approx(math.sqrt(21))


@pytest.mark.parametrize("name", [*rigid_classes(), "person"])
def test_solids_unit_normals_facing_camera_inside_bbox(name):
    rng = np.random.default_rng(7)
    for _ in range(6):
        c = np.array([40.0, 40.0, 3.0]) + rng.uniform(-0.5, 0.5, 3)
        solid = build_person(rng, c, 25) if name == "person" else build_rigid(name, rng, c, 20)
        x0, y0, x1, y1 = solid.primitive.bbox()
        xs, ys = g.pixel_centres(x0 - 8, y0 - 8, x1 + 8, y1 + 8)  # a margin: nothing may be hit there
        hit = solid.primitive.cast(xs, ys)
        m = np.isfinite(hit.z)
        assert m.sum() > 50
        inside = np.zeros_like(m)
        inside[8:-8, 8:-8] = True
        assert not (m & ~inside).any(), "the bbox must contain every pixel the solid covers"
        n = np.stack([hit.nx, hit.ny, hit.nz], -1)[m]
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
        assert (n[:, 2] >= -1e-9).all()


def test_person_has_every_part_in_a_frontal_pose():
    rng = np.random.default_rng(3)
    for pose in ("standing", "arms_out"):
        solid = build_person(rng, np.array([60.0, 60.0, 0.0]), 50, pose=pose)
        hit = solid.primitive.cast(*g.pixel_centres(*solid.primitive.bbox()))
        parts = solid.part_ids[hit.part][np.isfinite(hit.z)]
        assert set(parts.tolist()) == {1, 2, 3, 4, 5, 6}
        # head on top: its mean row is above the torso's, which is above the lower legs'
        rows = np.nonzero(np.isfinite(hit.z))[0]
        mean = {p: rows[parts == p].mean() for p in (1, 2, 6)}
        assert mean[1] < mean[2] < mean[6]
    assert set(POSES) >= {"standing", "walking", "arms_raised", "sitting"}
