"""The articulated person: head, torso and upper/lower arms and legs as ellipsoids, in varied poses.

The figure is built in its own frame in units of its height (pelvis at the origin, ``x`` right, ``y`` down,
``z`` towards the camera), then scaled, rotated in the image plane and placed. Each body segment is one
ellipsoid whose long axis joins its two joints (a little longer than the bone, so joints stay closed), so the
visible part id of a pixel is simply which ellipsoid is in front there. Part ids follow
:data:`ubernet.data.sample.PART_NAMES`: 1 head, 2 torso, 3 upper arms, 4 lower arms, 5 upper legs,
6 lower legs.
"""

from __future__ import annotations

import math

import numpy as np

from ubernet.data.synth import geometry as g
from ubernet.data.synth.shapes import Solid
from ubernet.data.synth.textures import pick

HEAD, TORSO, UPPER_ARM, LOWER_ARM, UPPER_LEG, LOWER_LEG = 1, 2, 3, 4, 5, 6

#: pose family -> sampling weight
POSES: dict[str, float] = {
    "standing": 0.25,
    "walking": 0.25,
    "arms_raised": 0.12,
    "waving": 0.12,
    "arms_out": 0.1,
    "sitting": 0.16,
}

# bone lengths and radii, in units of the figure's height
_UPPER_ARM, _LOWER_ARM, _UPPER_LEG, _LOWER_LEG = 0.16, 0.16, 0.24, 0.23
_R_ARM, _R_FOREARM, _R_THIGH, _R_SHIN = 0.034, 0.029, 0.048, 0.038


def _dir(angle: float) -> np.ndarray:
    """Unit image-plane direction at ``angle`` from straight down, positive towards +x."""
    return np.array([math.sin(angle), math.cos(angle)])


def _frame(axis: np.ndarray) -> np.ndarray:
    """A rotation whose third column is ``axis`` (unit); plain float arithmetic, called ~10 times a figure."""
    ax, ay, az = (float(v) for v in axis)
    n = math.sqrt(ax * ax + ay * ay + az * az)
    ax, ay, az = ax / n, ay / n, az / n
    # first column: helper × axis, with helper = z (or x when the axis is close to z)
    if abs(az) < 0.9:
        xx, xy, xz = -ay, ax, 0.0
    else:
        xx, xy, xz = 0.0, -az, ay
    m = math.sqrt(xx * xx + xy * xy + xz * xz)
    xx, xy, xz = xx / m, xy / m, xz / m
    yx, yy, yz = ay * xz - az * xy, az * xx - ax * xz, ax * xy - ay * xx  # axis × first
    return np.array([[xx, yx, ax], [xy, yy, ay], [xz, yz, az]])


def sample_angles(rng: np.random.Generator, pose: str) -> dict[str, float]:
    """Joint angles (radians) for ``pose``: per side (``r`` = image right, ``l`` = image left) the upper
    arm/leg angle from straight down (positive = towards that side / the facing direction in profile) and the
    elbow/knee bend added to it; plus ``lean`` of the torso and whether the figure is seen in ``profile``."""
    u = rng.uniform
    a: dict[str, float] = {"lean": u(-0.12, 0.12), "profile": 0.0}
    for side in "rl":
        a[f"arm_{side}"], a[f"elbow_{side}"] = u(0.05, 0.3), u(-0.1, 0.35)
        a[f"leg_{side}"], a[f"knee_{side}"] = u(0.03, 0.14), u(-0.05, 0.08)
    if pose == "walking":
        a["profile"] = 1.0
        swing = u(0.25, 0.55)
        a["leg_r"], a["leg_l"] = swing, -swing * u(0.7, 1.0)
        a["knee_r"], a["knee_l"] = u(-0.1, 0.05), -u(0.2, 0.7)
        a["arm_r"], a["arm_l"] = -swing * u(0.6, 1.0), swing * u(0.6, 1.0)
        a["elbow_r"], a["elbow_l"] = u(0.2, 0.8), u(0.2, 0.8)
    elif pose == "arms_raised":
        a["arm_r"], a["arm_l"] = u(2.3, 2.9), u(2.3, 2.9)
    elif pose == "waving":
        a["arm_r"], a["elbow_r"] = u(1.9, 2.7), u(0.2, 0.9)
    elif pose == "arms_out":
        a["arm_r"], a["arm_l"] = u(1.2, 1.8), u(1.2, 1.8)
        a["elbow_r"], a["elbow_l"] = u(-0.3, 0.3), u(-0.3, 0.3)
    elif pose == "sitting":
        a["profile"] = 1.0
        a["leg_r"], a["leg_l"] = u(1.3, 1.7), u(1.2, 1.7)
        a["knee_r"], a["knee_l"] = -u(1.3, 1.7), -u(1.2, 1.7)
        a["arm_r"], a["arm_l"] = u(0.3, 0.9), u(0.2, 0.8)
        a["elbow_r"], a["elbow_l"] = u(0.3, 1.0), u(0.3, 1.0)
    for k in a:
        if k != "profile":
            a[k] += u(-0.08, 0.08)  # no two figures share a pose exactly
    return a


def build_person(rng: np.random.Generator, centre: np.ndarray, size: float, pose: str | None = None) -> Solid:
    """A person whose height is about ``2 * size`` pixels, pelvis near ``centre``, in a random ``pose``.

    Returns a :class:`Solid` whose primitive is a :class:`~.geometry.Union` of 10 ellipsoids and whose
    ``part_ids`` map each ellipsoid to its part id.
    """
    if pose is None:
        pose = pick(rng, POSES)
    ang = sample_angles(rng, pose)
    profile = ang["profile"] > 0
    facing = 1.0 if rng.random() < 0.5 else -1.0  # mirror: which way a profile figure faces
    height = 2.0 * float(size)
    spin = float(rng.uniform(-0.12, 0.12))  # whole-figure rotation in the image plane
    rot = g.rotation_z(spin)
    centre = np.asarray(centre, dtype=np.float64)
    # pelvis sits a little below the figure's middle, so ``centre`` is near the middle of the body
    pelvis = centre + height * (rot @ np.array([0.0, 0.04, 0.0]))

    def world(p: np.ndarray) -> np.ndarray:
        return pelvis + height * (rot @ p)

    lean = ang["lean"] * facing
    up = np.array([math.sin(lean), -math.cos(lean)])  # torso axis, pointing to the neck
    side = np.array([-up[1], up[0]])  # towards image right
    half_w = 0.065 if profile else 0.1
    neck = 0.31 * up
    members: list[g.Primitive] = []
    part_ids: list[int] = []

    def add(e: g.Primitive, pid: int) -> None:
        members.append(e)
        part_ids.append(pid)

    torso_c = 0.5 * neck
    add(
        g.Ellipsoid(
            world(np.array([*torso_c, 0.0])),
            rot @ _frame(np.array([*up, 0.0])),
            height * np.array([half_w, 0.07, 0.185]),
        ),
        TORSO,
    )
    head_c = neck + 0.085 * up
    head_rot = rot @ g.rotation_z(rng.uniform(-0.2, 0.2) - lean)
    add(g.Ellipsoid(world(np.array([*head_c, 0.0])), head_rot, height * np.array([0.06, 0.074, 0.064])), HEAD)

    def limb(
        start: np.ndarray,
        z0: float,
        a1: float,
        a2: float,
        lengths: tuple[float, float],
        radii: tuple[float, float],
        pids: tuple[int, int],
    ) -> None:
        p0 = np.array([*start, z0])
        dz1, dz2 = rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06)  # bones leave the image plane a bit
        for ang_, ln, r, pid, dz in (
            (a1, lengths[0], radii[0], pids[0], dz1),
            (a1 + a2, lengths[1], radii[1], pids[1], dz2),
        ):
            d = np.array([*(_dir(ang_) * math.sqrt(max(1e-6, 1 - dz * dz))), dz])
            p1 = p0 + ln * d
            mid = 0.5 * (p0 + p1)
            add(g.Ellipsoid(world(mid), rot @ _frame(d), height * np.array([r, r, 0.5 * ln + 0.7 * r])), pid)
            p0 = p1

    for s_name, sgn in (("r", 1.0), ("l", -1.0)):
        if profile:
            # side view: limbs swing about the facing direction; one side is nearer the camera
            dirn, z_off = facing, (0.075 if s_name == "r" else -0.075)
            arm_a = dirn * ang[f"arm_{s_name}"]
            leg_a = dirn * ang[f"leg_{s_name}"]
            elbow, knee = dirn * ang[f"elbow_{s_name}"], dirn * ang[f"knee_{s_name}"]
            shoulder, hip = neck - 0.03 * up, np.zeros(2)
        else:
            z_off = 0.03 + 0.01 * sgn  # arms slightly in front of the torso, right side nearest
            arm_a, leg_a = sgn * ang[f"arm_{s_name}"], sgn * ang[f"leg_{s_name}"]
            elbow, knee = sgn * ang[f"elbow_{s_name}"], sgn * ang[f"knee_{s_name}"]
            shoulder, hip = neck - 0.035 * up + sgn * 0.105 * side, sgn * 0.055 * side
        limb(
            shoulder, z_off, arm_a + lean, elbow, (_UPPER_ARM, _LOWER_ARM), (_R_ARM, _R_FOREARM), (UPPER_ARM, LOWER_ARM)
        )
        limb(
            hip,
            z_off * (0.5 if profile else 0.0),
            leg_a,
            knee,
            (_UPPER_LEG, _LOWER_LEG),
            (_R_THIGH, _R_SHIN),
            (UPPER_LEG, LOWER_LEG),
        )
    return Solid(g.Union(members), pelvis, rot, np.asarray(part_ids, dtype=np.uint8))
