"""Rendering: cast every object, composite by depth, enforce the saliency rule, shade.

Compositing is a z-buffer over each object's own pixel window. After compositing, objects with fewer than
``min_pixels`` visible pixels are removed (a 1-pixel object would make a degenerate box), and the **saliency
rule** is enforced: the largest visible object must have at least 1.5× the visible area of the second largest
(``2 * a1 >= 3 * a2`` on pixel counts). While it does not hold, one of the two largest objects is removed (a
person the style guarantees is kept before the designated salient object, which is kept before the others)
and the scene re-composited (cheap: each object's cast is cached), so every emitted image satisfies it and
the salient object is decidable from the image alone.

Shading is Lambertian with ambient: ``image = albedo * (ambient + (1 - ambient) * max(0, n · l))`` per
pixel, then optional pixel noise and a 3×3 blur (image only; the ground truth is untouched).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ubernet.data.synth import geometry as g
from ubernet.data.synth.background import Region
from ubernet.data.synth.layout import PlacedObject
from ubernet.data.synth.textures import Texture

_MIN_NZ = 1e-3  # grazing silhouette pixels: keep n_z strictly positive (changes a normal by < 0.06 deg)


@dataclass
class Layer:
    """One object's cast, clipped to the image.

    Attributes:
        obj: the placed object.
        window: ``(x0, y0, x1, y1)`` of the clipped pixel window (may be empty).
        z, nx, ny, nz: float64 arrays over the window (``z = -inf`` where the object is absent).
        part: uint8 part ids over the window (persons), else ``None``.
        full_area: pixels covered by the object when rendered alone on an unbounded canvas.
        inside_area: pixels covered by the object when rendered alone in the image (< full_area: truncated).
    """

    obj: PlacedObject
    window: tuple[int, int, int, int]
    z: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    part: np.ndarray | None
    full_area: int
    inside_area: int


@dataclass
class Scene:
    """A rendered image with exact per-pixel geometry.

    Attributes:
        image: uint8 ``H×W×3``.
        instance_ids: int32 ``H×W``; ``k`` in ``1..N`` = the visible object ``layers[k-1]``, 0 = background.
        region_ids: int32 ``H×W``; background region ``1..R`` where ``instance_ids == 0``, else 0.
        normals: float32 ``H×W×3`` unit normals (x right, y down, z towards the camera; ``n_z > 0``).
        parts: uint8 ``H×W`` person part ids (0 elsewhere).
        layers: the visible objects, back to front.
        salient: instance id of the salient object.
        light: float ``3`` unit light direction; ``ambient``: the ambient term.
    """

    image: np.ndarray
    instance_ids: np.ndarray
    region_ids: np.ndarray
    normals: np.ndarray
    parts: np.ndarray
    layers: list[Layer]
    salient: int
    light: np.ndarray
    ambient: float


def render_object(obj: PlacedObject, size: tuple[int, int]) -> Layer:
    """Cast ``obj`` over its full window (to count its unoccluded area) and clip the result to the image."""
    h, w = size
    x0, y0, x1, y1 = obj.solid.primitive.bbox()
    xs, ys = g.pixel_centres(x0, y0, x1, y1)
    hit = obj.solid.primitive.cast(xs, ys)
    full_area = int(np.isfinite(hit.z).sum())
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    cx1, cy1 = max(cx1, cx0), max(cy1, cy0)
    sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    part = None
    if obj.solid.part_ids is not None and hit.part is not None:
        part = obj.solid.part_ids[hit.part[sub]]
    z = hit.z[sub]
    return Layer(
        obj, (cx0, cy0, cx1, cy1), z, hit.nx[sub], hit.ny[sub], hit.nz[sub], part, full_area, int(np.isfinite(z).sum())
    )


def composite(layers: list[Layer], size: tuple[int, int]) -> np.ndarray:
    """int32 ``H×W`` map: ``k`` where ``layers[k-1]`` is the front-most object, 0 where there is none."""
    ids = np.zeros(size, dtype=np.int32)
    zbuf = np.full(size, -np.inf)
    for k, layer in enumerate(layers, start=1):
        x0, y0, x1, y1 = layer.window
        if x1 <= x0 or y1 <= y0:
            continue
        win = (slice(y0, y1), slice(x0, x1))
        front = layer.z > zbuf[win]
        np.copyto(zbuf[win], layer.z, where=front)
        ids[win][front] = k
    return ids


def resolve_visibility(layers: list[Layer], size: tuple[int, int], min_pixels: int) -> tuple[list[Layer], np.ndarray]:
    """Drop hidden/tiny objects and enforce the saliency rule; returns the kept layers and their id map."""
    layers = list(layers)
    while True:
        ids = composite(layers, size)
        area = np.bincount(ids.ravel(), minlength=len(layers) + 1)[1:]
        tiny = [k for k in range(len(layers)) if area[k] < min_pixels]
        if tiny:
            layers = [lay for k, lay in enumerate(layers) if k not in tiny]
            continue
        if len(layers) <= 1:
            return layers, ids
        first, second = (int(k) for k in np.argsort(-area, kind="stable")[:2])
        if 2 * int(area[first]) >= 3 * int(area[second]):
            return layers, ids
        # remove the less important of the two: guaranteed persons > the hero > the others
        rank = [2 * lay.obj.required + lay.obj.hero for lay in (layers[first], layers[second])]
        layers.pop(first if rank[1] > rank[0] else second)


def light_direction(rng: np.random.Generator, elev_deg: tuple[float, float], from_above: bool) -> np.ndarray:
    """Unit vector towards the light: ``elev`` from the viewing axis, azimuth random (upper half if asked)."""
    theta = math.radians(rng.uniform(*elev_deg))
    phi = rng.uniform(-math.pi + 0.4, -0.4) if from_above else rng.uniform(0, 2 * math.pi)  # y down: up is -y
    return np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])


def _albedo(layers: list[Layer], ids: np.ndarray, region_map: np.ndarray, regions: list[Region]) -> np.ndarray:
    """float32 ``H×W×3`` albedo.

    Every pixel gets a material (its texture) and a mixing weight; textures are evaluated densely (whole
    image per region, whole window per object, in float32: vectorised sin is far cheaper than gathering
    pixels) and copied under masks; the colours are looked up once at the end.
    """
    h, w = ids.shape
    textures: list[Texture] = [r.texture for r in regions]
    material = np.where(ids == 0, region_map - 1, 0).astype(np.int32)
    weight = np.zeros((h, w), dtype=np.float32)
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    bg = ids == 0
    for r, region in enumerate(regions, start=1):
        if region.texture.kind == "plain":
            continue
        a = region.to_plane.astype(np.float32)
        uv = (a[0, 0] * xs + a[0, 1] * ys, a[1, 0] * xs + a[1, 1] * ys)
        np.copyto(weight, region.texture.weight(uv), where=bg & (region_map == r))
    for k, layer in enumerate(layers, start=1):
        x0, y0, x1, y1 = layer.window
        mine = ids[y0:y1, x0:x1] == k
        solid = layer.obj.solid
        c = solid.centre
        # the visible surface point in the object's frame: textures stick to the surface
        u = (np.arange(x0, x1, dtype=np.float32) + np.float32(0.5 - c[0]))[None, :]
        v = (np.arange(y0, y1, dtype=np.float32) + np.float32(0.5 - c[1]))[:, None]
        dz = np.where(mine, layer.z - c[2], 0.0).astype(np.float32)
        rot = solid.rot.astype(np.float32)
        local = tuple(rot[0, j] * u + rot[1, j] * v + rot[2, j] * dz for j in range(3))
        done: dict[int, int] = {}
        for part, tex in layer.obj.materials.items():
            sel = mine if layer.part is None else mine & (layer.part == part)
            if not sel.any():
                continue
            if id(tex) not in done:  # parts often share a material (shirt, trousers)
                done[id(tex)] = len(textures)
                textures.append(tex)
                if tex.kind != "plain":
                    np.copyto(weight[y0:y1, x0:x1], tex.weight(local), where=mine)
            np.copyto(material[y0:y1, x0:x1], done[id(tex)], where=sel)
    c1 = np.array([t.c1 for t in textures], dtype=np.float32)
    dc = np.array([t.c2 for t in textures], dtype=np.float32) - c1
    return np.take(c1, material, axis=0) + weight[..., None] * np.take(dc, material, axis=0)


def _geometry(
    layers: list[Layer], ids: np.ndarray, region_map: np.ndarray, regions: list[Region]
) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``H×W×3`` normals (plane normal of the region / surface normal of the visible object, with
    ``n_z >= 1e-3``) and uint8 ``H×W`` part ids."""
    lut = np.array([regions[0].normal] + [r.normal for r in regions], dtype=np.float32)
    normals = np.take(lut, np.where(ids == 0, region_map, 0), axis=0)  # take: 3x faster than lut[...]
    parts = np.zeros(ids.shape, dtype=np.uint8)
    for k, layer in enumerate(layers, start=1):
        x0, y0, x1, y1 = layer.window
        mine = ids[y0:y1, x0:x1] == k
        win = normals[y0:y1, x0:x1]
        for j, comp in enumerate((layer.nx, layer.ny, layer.nz)):
            np.copyto(win[..., j], comp, where=mine, casting="same_kind")
        if layer.part is not None:
            np.copyto(parts[y0:y1, x0:x1], layer.part, where=mine)
    grazing = normals[..., 2] < _MIN_NZ
    if grazing.any():
        normals[..., 2][grazing] = _MIN_NZ
        normals[grazing] /= np.linalg.norm(normals[grazing], axis=-1, keepdims=True)
    return normals, parts


def _blur3(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication."""
    p = np.pad(img, ((1, 1), (0, 0), (0, 0)), mode="edge")
    q, h = np.float32(0.25), np.float32(0.5)
    img = q * p[:-2] + h * p[1:-1] + q * p[2:]
    p = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return q * p[:, :-2] + h * p[:, 1:-1] + q * p[:, 2:]


def render_scene(
    rng: np.random.Generator,
    objects: list[PlacedObject],
    region_map: np.ndarray,
    regions: list[Region],
    *,
    light: np.ndarray,
    ambient: float,
    noise_std: float,
    blur: bool,
    min_pixels: int,
) -> Scene:
    """Render objects (back to front) over the background into a :class:`Scene`."""
    size = region_map.shape
    layers = [render_object(o, size) for o in objects]
    layers, ids = resolve_visibility(layers, size, min_pixels)
    area = np.bincount(ids.ravel(), minlength=len(layers) + 1)[1:]
    salient = int(np.argmax(area)) + 1 if len(layers) else 0
    normals, parts = _geometry(layers, ids, region_map, regions)
    # diffuse weight 1 - ambient: a surface facing the light gets exactly its albedo, nothing saturates
    shade = np.float32(ambient) + np.float32(1.0 - ambient) * np.maximum(normals @ light.astype(np.float32), 0)
    img = _albedo(layers, ids, region_map, regions) * shade[..., None]
    if noise_std > 0:
        # uniform noise of standard deviation noise_std: 5x cheaper to draw than Gaussian, looks the same
        noise = rng.random(img.shape, dtype=np.float32) - np.float32(0.5)
        img += np.float32(noise_std * math.sqrt(12.0)) * noise
    if blur:
        img = _blur3(img)
    image = (np.clip(img, 0.0, 1.0) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    return Scene(
        image, ids, np.where(ids == 0, region_map, 0).astype(np.int32), normals, parts, layers, salient, light, ambient
    )
