"""The synthetic "datasets": each source exposes only some tasks and has its own style.

They mimic the union of datasets of the paper (BSDS, NYU, MSRA, VOC, PASCAL-Part, SBD); ``full`` labels all
seven tasks and draws each image in the style of one of the others (for evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ubernet.data.sample import PAPER_TASKS
from ubernet.data.synth.textures import Palette
from ubernet.errors import ConfigError


@dataclass(frozen=True)
class Style:
    """How a source's images look. Sizes are fractions of ``min(H, W)``; periods are pixels at 128 px.

    Attributes:
        name: the style's name (that of the source it was made for).
        n_objects: inclusive range of objects placed (before fully hidden ones are dropped).
        person_prob: probability that an object is a person (else a rigid class, uniformly).
        min_persons: persons guaranteed per image (``parts-like``: 1).
        hero_scale: size range of the designated salient object ("hero").
        other_scale: size range of the others (further capped so the hero usually stays the largest).
        hero_margin: the hero's centre lies in ``[m, 1 - m]`` of the image along each axis.
        hero_front_prob: probability that the hero is the front-most object.
        layout: background layout, ``"voronoi"`` or ``"room"``.
        n_regions: inclusive range of background regions (1–4).
        tilt_deg: range of background plane tilts from the viewing axis, degrees.
        bg_palette, obj_palette: colour ranges of regions and objects.
        bg_textures, obj_textures: texture kind -> weight.
        contrast: brightness change range between a texture's two colours.
        period_px: texture period range (pixels at 128 px; scaled with the image).
        light_elev_deg: angle between the light and the viewing axis, degrees.
        light_from_above: light comes from the upper half of the image (indoor ceiling light).
        ambient: range of the ambient term.
        noise_std: range of the standard deviation of the (uniform) pixel noise, 0–1 intensity units.
        blur_prob: probability of a mild 3×3 blur of the image.
        similar_prob: probability that an object (or region) takes a colour close to its surroundings.
    """

    name: str = "default"
    n_objects: tuple[int, int] = (1, 8)
    person_prob: float = 0.2
    min_persons: int = 0
    hero_scale: tuple[float, float] = (0.2, 0.34)
    other_scale: tuple[float, float] = (0.07, 0.2)
    hero_margin: float = 0.2
    hero_front_prob: float = 0.7
    layout: str = "voronoi"
    n_regions: tuple[int, int] = (1, 4)
    tilt_deg: tuple[float, float] = (0.0, 60.0)
    bg_palette: Palette = field(default_factory=Palette)
    obj_palette: Palette = field(default_factory=Palette)
    bg_textures: dict[str, float] = field(
        default_factory=lambda: {"plain": 1, "stripes": 1, "checker": 1, "blobs": 1, "noise": 1, "wood": 1}
    )
    obj_textures: dict[str, float] = field(
        default_factory=lambda: {"plain": 1, "stripes": 1, "checker": 1, "blobs": 1, "noise": 1, "wood": 0.5}
    )
    contrast: tuple[float, float] = (0.15, 0.5)
    period_px: tuple[float, float] = (4.0, 20.0)
    light_elev_deg: tuple[float, float] = (15.0, 60.0)
    light_from_above: bool = False
    ambient: tuple[float, float] = (0.2, 0.4)
    noise_std: tuple[float, float] = (0.0, 0.02)
    blur_prob: float = 0.2
    similar_prob: float = 0.15


@dataclass(frozen=True)
class SourceSpec:
    """A synthetic source: the tasks it labels and the style(s) of its images.

    Attributes:
        name: registry key, e.g. ``"voc-like"``.
        tasks: task keys it labels (a subset of :data:`ubernet.data.sample.PAPER_TASKS`).
        mimics: the real dataset it stands in for.
        styles: one style, or several drawn uniformly per image (``full``).
    """

    name: str
    tasks: tuple[str, ...]
    mimics: str
    styles: tuple[Style, ...]


_NATURAL = Palette(hue=(0.0, 1.0), sat=(0.15, 0.7), val=(0.25, 0.9))
_INDOOR = Palette(hue=(0.02, 0.16), sat=(0.05, 0.45), val=(0.35, 0.92))
_MUTED = Palette(hue=(0.0, 1.0), sat=(0.05, 0.35), val=(0.3, 0.8))
_VIVID = Palette(hue=(0.0, 1.0), sat=(0.5, 1.0), val=(0.5, 1.0))
_BRIGHT = Palette(hue=(0.0, 1.0), sat=(0.2, 0.95), val=(0.3, 1.0))

BSDS = Style(
    name="bsds-like",
    n_objects=(2, 6),
    person_prob=0.15,
    n_regions=(2, 4),
    tilt_deg=(0, 50),
    bg_palette=_NATURAL,
    obj_palette=_NATURAL,
    contrast=(0.25, 0.6),
    period_px=(3.0, 14.0),
    noise_std=(0.005, 0.03),
    blur_prob=0.3,
    similar_prob=0.3,
    bg_textures={"plain": 0.3, "stripes": 1, "checker": 0.6, "blobs": 1.5, "noise": 1.5, "wood": 1},
)
NYU = Style(
    name="nyu-like",
    n_objects=(2, 6),
    person_prob=0.1,
    hero_scale=(0.18, 0.3),
    layout="room",
    n_regions=(2, 4),
    tilt_deg=(50, 80),
    bg_palette=_INDOOR,
    obj_palette=_MUTED,
    contrast=(0.1, 0.35),
    period_px=(5.0, 24.0),
    light_elev_deg=(10, 45),
    light_from_above=True,
    ambient=(0.3, 0.5),
    noise_std=(0.005, 0.02),
    blur_prob=0.2,
    similar_prob=0.25,
    bg_textures={"plain": 1.5, "stripes": 0.5, "checker": 1, "blobs": 0.2, "noise": 0.5, "wood": 1.5},
)
MSRA = Style(
    name="msra-like",
    n_objects=(1, 3),
    person_prob=0.15,
    hero_scale=(0.3, 0.42),
    other_scale=(0.05, 0.12),
    hero_margin=0.35,
    hero_front_prob=1.0,
    n_regions=(1, 2),
    tilt_deg=(0, 30),
    bg_palette=_MUTED,
    obj_palette=_VIVID,
    contrast=(0.1, 0.3),
    noise_std=(0.0, 0.01),
    blur_prob=0.1,
    similar_prob=0.05,
    bg_textures={"plain": 2, "stripes": 0.5, "checker": 0.3, "blobs": 0.5, "noise": 1.5, "wood": 0.5},
)
VOC = Style(
    name="voc-like",
    n_objects=(1, 8),
    person_prob=0.25,
    n_regions=(1, 4),
    tilt_deg=(0, 60),
    bg_palette=_NATURAL,
    obj_palette=_BRIGHT,
)
PARTS = Style(
    name="parts-like",
    n_objects=(1, 4),
    person_prob=0.45,
    min_persons=1,
    hero_scale=(0.3, 0.42),
    n_regions=(1, 3),
    tilt_deg=(0, 45),
    bg_palette=_NATURAL,
    obj_palette=_BRIGHT,
)
SBD = Style(
    name="sbd-like",
    n_objects=(2, 8),
    person_prob=0.2,
    hero_scale=(0.18, 0.3),
    hero_front_prob=0.5,
    n_regions=(1, 4),
    tilt_deg=(0, 60),
    bg_palette=_NATURAL,
    obj_palette=_VIVID,
    light_elev_deg=(30, 70),
    ambient=(0.1, 0.25),
    noise_std=(0.0, 0.015),
    similar_prob=0.2,
)


def _spec(name: str, tasks: tuple[str, ...], mimics: str, *styles: Style) -> SourceSpec:
    return SourceSpec(name, tasks, mimics, styles)


#: Registry of the synthetic sources (name -> spec).
SOURCES: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        _spec("bsds-like", ("boundaries",), "BSDS500", BSDS),
        _spec("nyu-like", ("normals",), "NYUD-v2", NYU),
        _spec("msra-like", ("saliency",), "MSRA-10K", MSRA),
        _spec("voc-like", ("detection", "semseg"), "PASCAL VOC", VOC),
        _spec("parts-like", ("parts",), "PASCAL-Part", PARTS),
        _spec("sbd-like", ("semantic_boundaries",), "SBD", SBD),
        _spec("full", PAPER_TASKS, "all seven tasks (evaluation)", BSDS, NYU, MSRA, VOC, PARTS, SBD),
    )
}


def get_source(name: str) -> SourceSpec:
    """The spec of source ``name``; raises :class:`ConfigError` listing the valid names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown synthetic source {name!r}; valid: {', '.join(SOURCES)}") from None
