"""``generate(seed, source=..., size=...)``: one synthetic sample, a pure function of its arguments."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ubernet.data.sample import Sample
from ubernet.data.synth.background import sample_background
from ubernet.data.synth.classes import CLASSES, NUM_CLASSES, PERSON
from ubernet.data.synth.labels import boundary_map, instance_boxes, segment_map, semantic_boundary_map
from ubernet.data.synth.layout import sample_objects
from ubernet.data.synth.render import Scene, light_direction, render_scene
from ubernet.data.synth.sources import Style, get_source
from ubernet.errors import ConfigError

MIN_SIZE = 32  # smaller images cannot hold a recognisable person or several objects
MAX_SIZE = 4096
#: an object is "difficult" (VOC flag) when less than this fraction of it is visible
DIFFICULT_BELOW = 0.3
_ATTEMPTS = 20


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` as ints; raises :class:`ConfigError` unless both are in ``[MIN_SIZE, MAX_SIZE]``."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be two integers (H, W), got {size!r}") from None
    if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
        raise ConfigError(f"size {h}×{w} is out of range: H and W must be between {MIN_SIZE} and {MAX_SIZE} px")
    return h, w


def rng_for(seed: int, source: str) -> np.random.Generator:
    """The generator of sample ``(seed, source)``: independent streams for different seeds or sources."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    # crc32, not hash(): Python's string hash changes between processes
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(source.encode())]))


def render(seed: int, source: str, size: tuple[int, int]) -> tuple[Scene, Style]:
    """Sample and render the scene of ``(seed, source)`` (no task targets yet)."""
    spec = get_source(source)
    size = check_size(size)
    rng = rng_for(seed, source)
    style = spec.styles[int(rng.integers(len(spec.styles)))] if len(spec.styles) > 1 else spec.styles[0]
    h, w = size
    scale = min(h, w) / 128
    region_map, regions = sample_background(
        rng,
        size,
        layout=style.layout,
        n_regions=style.n_regions,
        tilt_deg=style.tilt_deg,
        palette=style.bg_palette,
        textures=style.bg_textures,
        contrast=style.contrast,
        period_px=(style.period_px[0] * scale, style.period_px[1] * scale),
        similar_prob=style.similar_prob,
    )
    for _attempt in range(_ATTEMPTS):
        objects = sample_objects(rng, style, size, region_map, regions)
        light = light_direction(rng, style.light_elev_deg, style.light_from_above)
        scene = render_scene(
            rng,
            objects,
            region_map,
            regions,
            light=light,
            ambient=float(rng.uniform(*style.ambient)),
            noise_std=float(rng.uniform(*style.noise_std)),
            blur=bool(rng.random() < style.blur_prob),
            min_pixels=max(4, round(h * w / 2000)),
        )
        # a guaranteed person can only vanish in corner cases (tiny images); redraw the objects then
        if sum(layer.obj.cls == PERSON for layer in scene.layers) >= style.min_persons:
            break
    else:
        raise RuntimeError(f"{source} seed {seed}: no layout with {style.min_persons} person(s) in {_ATTEMPTS} tries")
    return scene, style


def _instances(scene: Scene, boxes: np.ndarray) -> list[dict[str, Any]]:
    area = np.bincount(scene.instance_ids.ravel(), minlength=len(scene.layers) + 1)[1:]
    out = []
    for k, layer in enumerate(scene.layers, start=1):
        frac = float(area[k - 1]) / layer.full_area
        out.append(
            {
                "id": k,
                "class": int(layer.obj.cls),
                "class_name": CLASSES[layer.obj.cls],
                "visible_pixels": int(area[k - 1]),
                "full_pixels": int(layer.full_area),
                "visible_fraction": frac,
                "box": [float(v) for v in boxes[k - 1]],
                "difficult": frac < DIFFICULT_BELOW,
                "truncated": layer.inside_area < layer.full_area,
                "salient": k == scene.salient,
                "hero": bool(layer.obj.hero),
                "centre": [float(v) for v in layer.obj.solid.centre],
                "size": float(layer.obj.size),
            }
        )
    return out


def generate(seed: int, *, source: str = "full", size: tuple[int, int] = (128, 128)) -> Sample:
    """One synthetic sample labelled for exactly the tasks of ``source``.

    Args:
        seed: non-negative integer; the output is a pure function of ``(seed, source, size)``.
        source: a key of :data:`SOURCES` (``ConfigError`` listing them otherwise).
        size: ``(H, W)``, each at least 32 px.

    Returns:
        A :class:`Sample` with ``id = f"{source}-{seed:08d}"``, the uint8 ``H×W×3`` image, the target fields of
        the source's tasks (conventions in :mod:`ubernet.data.sample`) and ``meta``: ``instance_ids`` (int32
        ``H×W``, 0 = background, ``k`` = ``meta["instances"][k-1]``), ``region_ids`` (int32 ``H×W``, background
        region ids, 0 on objects), ``instances`` (per visible object: ``class``, ``class_name``,
        ``visible_pixels``, ``full_pixels``, ``visible_fraction``, ``box``, ``difficult``, ``truncated``,
        ``salient``, ``hero``, ``centre`` (x, y, z of the object's frame; a person's pelvis), ``size`` (px)),
        ``salient_id``, ``style``, ``light``, ``ambient``, ``class_names``.
    """
    spec = get_source(source)
    scene, style = render(seed, source, size)
    ids = scene.instance_ids
    tasks = set(spec.tasks)
    n = len(scene.layers)
    class_of = np.array([0] + [layer.obj.cls for layer in scene.layers], dtype=np.uint8)
    classes = np.take(class_of, ids)
    boxes = instance_boxes(ids, n)
    instances = _instances(scene, boxes)
    targets: dict[str, np.ndarray] = {}
    if tasks & {"boundaries", "semantic_boundaries"}:
        seg = segment_map(ids, scene.region_ids)
        if "boundaries" in tasks:
            targets["boundaries"] = boundary_map(seg).astype(np.uint8)
        if "semantic_boundaries" in tasks:
            targets["semantic_boundaries"] = semantic_boundary_map(seg, classes, NUM_CLASSES)
    if "normals" in tasks:
        targets["normals"] = scene.normals
    if "saliency" in tasks:
        targets["saliency"] = (ids == scene.salient).astype(np.uint8)
    if "semseg" in tasks:
        targets["semseg"] = classes
    if "parts" in tasks:
        targets["parts"] = scene.parts
    if "detection" in tasks:
        targets["boxes"] = boxes
        targets["labels"] = class_of[1:].astype(np.int64)
        targets["difficult"] = np.array([i["difficult"] for i in instances], dtype=bool)
    meta = {
        "instance_ids": ids,
        "region_ids": scene.region_ids,
        "instances": instances,
        "salient_id": scene.salient,
        "style": style.name,
        "light": [float(v) for v in scene.light],
        "ambient": scene.ambient,
        "class_names": CLASSES,
    }
    sample = Sample(image=scene.image, targets=targets, id=f"{source}-{seed:08d}", source=source, meta=meta)
    return sample.restrict(spec.tasks)
