"""Scene layout: which objects, how big, where, in which depth order, and what they are made of.

One object per image is the designated salient object (the "hero"): it is the largest (in the style's
``hero_scale`` range), its centre lies well inside the image and it is usually in front. The others are
smaller, may be truncated by the image border and may occlude each other or the hero. Whether the hero really
is salient is decided after rendering (see :mod:`.render`), by the visible-area rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ubernet.data.synth.background import Region
from ubernet.data.synth.classes import CLASSES, PERSON
from ubernet.data.synth.person import HEAD, LOWER_ARM, LOWER_LEG, TORSO, UPPER_ARM, UPPER_LEG, build_person
from ubernet.data.synth.shapes import AREA_FACTOR, Solid, build_rigid, rigid_classes
from ubernet.data.synth.sources import Style
from ubernet.data.synth.textures import Palette, Texture, near_colour, sample_colour, sample_texture

_SKIN = Palette(hue=(0.02, 0.11), sat=(0.2, 0.6), val=(0.3, 0.95))
# a solid never reaches further than this many times its size from its centre (cone apex: 1.28 s)
_BOUND = 1.3


@dataclass
class PlacedObject:
    """An object of the scene before rendering.

    Attributes:
        cls: class id (index into :data:`CLASSES`).
        size: size parameter ``s`` in pixels (bounding radius; half the height for a person).
        solid: the geometry, placed in the world.
        materials: part id -> texture; rigid objects use key 0 only, persons keys 1..6.
        hero: the designated salient object.
        required: one of the persons the style guarantees (``min_persons``); kept visible and in front.
    """

    cls: int
    size: float
    solid: Solid
    materials: dict[int, Texture]
    hero: bool
    required: bool = False


def _class_list(rng: np.random.Generator, style: Style, n: int) -> list[int]:
    rigid = [CLASSES.index(c) for c in rigid_classes()]
    cls = [PERSON if rng.random() < style.person_prob else rigid[int(rng.integers(len(rigid)))] for _ in range(n)]
    missing = style.min_persons - cls.count(PERSON)
    if missing > 0:
        # the hero (index 0) is the person most of the time: parts-like images show people large
        slots = [0] if rng.random() < 0.7 else []
        others = [i for i in rng.permutation(n).tolist() if i not in slots]
        for i in (slots + others)[:missing]:
            cls[i] = PERSON
    return cls


def _materials(
    rng: np.random.Generator, style: Style, cls: int, base: np.ndarray, period: tuple[float, float]
) -> dict[int, Texture]:
    def tex(c1: np.ndarray) -> Texture:
        return sample_texture(
            rng, c1, kinds=style.obj_textures, palette=style.obj_palette, contrast=style.contrast, period_px=period
        )

    if cls != PERSON:
        return {0: tex(base)}
    skin = sample_texture(
        rng, sample_colour(rng, _SKIN), kinds={"plain": 1}, palette=_SKIN, contrast=(0, 0), period_px=period
    )
    shirt = tex(base)
    trousers = tex(sample_colour(rng, style.obj_palette))
    sleeves = shirt if rng.random() < 0.5 else skin
    return {HEAD: skin, TORSO: shirt, UPPER_ARM: shirt, LOWER_ARM: sleeves, UPPER_LEG: trousers, LOWER_LEG: trousers}


def sample_objects(
    rng: np.random.Generator,
    style: Style,
    size: tuple[int, int],
    region_map: np.ndarray,
    regions: list[Region],
) -> list[PlacedObject]:
    """Objects of one image, listed from back to front (index 0 is the farthest)."""
    h, w = size
    m = float(min(h, w))
    n = int(rng.integers(style.n_objects[0], style.n_objects[1] + 1))
    classes = _class_list(rng, style, n)
    names = [CLASSES[c] for c in classes]
    sizes = [rng.uniform(*style.hero_scale) * m]
    if classes[0] == PERSON:
        sizes[0] *= 1.2  # a person is thin: give it more height to stay the largest
    hero_area = AREA_FACTOR[names[0]] * sizes[0] ** 2
    for name in names[1:]:
        s = rng.uniform(*style.other_scale) * m * (1.5 if name == "person" else 1.0)
        # keep the others' expected area under 60 % of the hero's, so the hero is usually salient
        cap = math.sqrt(0.6 * hero_area / AREA_FACTOR[name])
        sizes.append(max(min(s, cap), 0.03 * m, 3.0))
    mg = style.hero_margin
    centres = [np.array([rng.uniform(mg, 1 - mg) * w, rng.uniform(mg, 1 - mg) * h])]
    required = {i for i in range(n) if classes[i] == PERSON}
    required = set(sorted(required)[: style.min_persons])
    for i in range(1, n):
        lo, hi = (0.2, 0.8) if i in required else (-0.1, 1.1)  # guaranteed persons stay inside the image
        centres.append(np.array([rng.uniform(lo, hi) * w, rng.uniform(lo, hi) * h]))
    order = [int(i) for i in rng.permutation(n)]  # back to front
    if rng.random() < style.hero_front_prob:
        order.remove(0)
        order.append(0)
    for i in sorted(required):  # guaranteed persons in front of everything: never hidden
        order.remove(i)
        order.append(i)
    period = (style.period_px[0] * m / 128, style.period_px[1] * m / 128)
    objects: list[PlacedObject] = []
    colours: list[np.ndarray] = []
    z = 0.0
    for rank, i in enumerate(order):
        # depth gaps larger than the objects' extents: solids never interpenetrate
        if rank:
            z += _BOUND * (sizes[order[rank - 1]] + sizes[i]) + 1.0
        centre = np.array([centres[i][0], centres[i][1], z])
        if classes[i] == PERSON:
            solid = build_person(rng, centre, sizes[i])
        else:
            solid = build_rigid(names[i], rng, centre, sizes[i])
        if rng.random() < style.similar_prob:
            # camouflage: close to the region under the object's centre, or to another object
            cx = min(max(int(centres[i][0]), 0), w - 1)
            cy = min(max(int(centres[i][1]), 0), h - 1)
            ref = colours[-1] if colours and rng.random() < 0.3 else regions[region_map[cy, cx] - 1].texture.c1
            base = near_colour(rng, ref)
        else:
            base = sample_colour(rng, style.obj_palette)
        colours.append(base)
        objects.append(
            PlacedObject(
                classes[i],
                sizes[i],
                solid,
                _materials(rng, style, classes[i], base, period),
                hero=(i == 0),
                required=i in required,
            )
        )
    return objects
