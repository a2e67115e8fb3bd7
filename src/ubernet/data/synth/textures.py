"""Colours and procedural textures (albedo) of objects and background regions.

A texture is a function of a 3-D point in the surface's own frame (object frame, or plane coordinates for a
background region), in pixels, so it sticks to the surface and is foreshortened with it — a cue for normals.
Every texture mixes two colours ``c1`` and ``c2`` with a weight ``m`` in ``[0, 1]`` built from a few plane
waves. Texture edges are never boundaries: boundaries come from region/instance ids only.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

#: texture kinds; each style gives sampling weights over them
KINDS: tuple[str, ...] = ("plain", "stripes", "checker", "blobs", "noise", "wood")


@dataclass(frozen=True)
class Palette:
    """HSV ranges colours are drawn from (each value in ``[0, 1]``; hue may wrap, e.g. ``(0.9, 1.1)``)."""

    hue: tuple[float, float] = (0.0, 1.0)
    sat: tuple[float, float] = (0.2, 0.9)
    val: tuple[float, float] = (0.3, 0.95)


def sample_colour(rng: np.random.Generator, palette: Palette) -> np.ndarray:
    """An RGB colour (float64 ``3``, values in ``[0, 1]``) drawn from ``palette``."""
    h = rng.uniform(*palette.hue) % 1.0
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(*palette.sat), rng.uniform(*palette.val)))


def near_colour(rng: np.random.Generator, colour: np.ndarray, spread: float = 0.06) -> np.ndarray:
    """A colour close to ``colour`` (each channel moved by at most ``spread``): hard cases for boundaries."""
    return np.minimum(np.maximum(colour + rng.uniform(-spread, spread, size=3), 0.0), 1.0)


@dataclass
class Texture:
    """A two-colour procedural texture.

    Attributes:
        kind: one of :data:`KINDS`.
        c1, c2: RGB colours (float ``3``, in ``[0, 1]``).
        freq: spatial frequency of the main wave, cycles per pixel.
        dirs: float ``3×3``, unit wave directions (rows) in the surface frame.
        phases: float ``3`` wave phases (radians).
        duty: threshold in ``(-1, 1)`` for the hard-edged kinds (stripe width ratio).
    """

    kind: str
    c1: np.ndarray
    c2: np.ndarray
    freq: float
    dirs: np.ndarray
    phases: np.ndarray
    duty: float = 0.0

    def weight(self, p: tuple[np.ndarray, ...]) -> np.ndarray:
        """Mixing weight ``m`` in ``[0, 1]`` at points with surface-frame coordinates ``p = (p0, p1[, p2])``
        (float32 arrays of one shape, pixels); returns float32 of that shape."""
        w = np.float32(2 * math.pi * self.freq)
        d, ph = self.dirs.astype(np.float32), self.phases.astype(np.float32)

        def wave(k: int, f: float) -> np.ndarray:
            s = d[k, 0] * p[0] + d[k, 1] * p[1]
            if len(p) > 2:
                s = s + d[k, 2] * p[2]
            return np.sin(np.float32(f) * w * s + ph[k])

        if self.kind == "plain":
            return np.zeros(np.broadcast_shapes(*(a.shape for a in p)), dtype=np.float32)
        if self.kind == "stripes":
            return (wave(0, 1.0) > self.duty).astype(np.float32)
        if self.kind == "checker":
            return ((wave(0, 1.0) * wave(1, 1.0)) > 0).astype(np.float32)
        if self.kind == "wood":  # wavy smooth stripes
            s = d[0, 0] * p[0] + d[0, 1] * p[1] + (d[0, 2] * p[2] if len(p) > 2 else 0)
            return np.float32(0.5) + np.float32(0.5) * np.sin(w * s + ph[0] + np.float32(1.5) * wave(1, 0.9))
        s = (wave(0, 1.0) + wave(1, 0.73) + wave(2, 1.37)) * np.float32(1 / 3)
        if self.kind == "blobs":
            return (s > self.duty / 3).astype(np.float32)
        return np.float32(0.5) + np.float32(0.5) * s  # noise: smooth

    def albedo(self, p: tuple[np.ndarray, ...]) -> np.ndarray:
        """RGB albedo (float32 ``...×3``, in ``[0, 1]``) at points ``p`` (see :meth:`weight`)."""
        m = self.weight(p)
        c1 = self.c1.astype(np.float32)
        return c1 + m[..., None] * (self.c2.astype(np.float32) - c1)


def pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """A key of ``weights`` drawn with probability proportional to its weight (one uniform draw)."""
    r = rng.random() * sum(weights.values())
    for key, w in weights.items():
        r -= w
        if r < 0:
            return key
    return next(k for k, w in reversed(weights.items()) if w > 0)  # r hit the total exactly


def _unit_vectors(rng: np.random.Generator, n: int, planar: bool) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    if planar:
        v[:, 2] = 0.0
    return v / np.sqrt((v * v).sum(axis=1, keepdims=True))


def sample_texture(
    rng: np.random.Generator,
    c1: np.ndarray,
    *,
    kinds: dict[str, float],
    palette: Palette,
    contrast: tuple[float, float],
    period_px: tuple[float, float],
    planar: bool = False,
) -> Texture:
    """A texture on base colour ``c1``.

    Args:
        kinds: kind -> weight.
        palette: where a contrasting second colour is drawn from (one time in three).
        contrast: range of the brightness change of the second colour otherwise.
        period_px: range of the main wave's period in pixels.
        planar: waves in the frame's x-y plane only (background planes, whose frame has z along the normal).
    """
    kind = pick(rng, kinds)
    if rng.random() < 1 / 3:
        c2 = sample_colour(rng, palette)
    else:
        k = rng.uniform(*contrast) * (1 if rng.random() < 0.5 else -1)
        c2 = np.minimum(np.maximum(c1 * (1 + k) + (0.15 * k if k > 0 else 0.0), 0.0), 1.0)
    dirs = _unit_vectors(rng, 3, planar)
    if kind == "checker":  # second direction orthogonal to the first
        d = dirs[1] - (dirs[1] @ dirs[0]) * dirs[0]
        if float(d @ d) < 1e-12:
            d = np.array([-dirs[0, 1], dirs[0, 0], 0.0])
        dirs[1] = d / math.sqrt(float(d @ d))
    period = math.exp(rng.uniform(math.log(period_px[0]), math.log(period_px[1])))
    return Texture(
        kind,
        np.asarray(c1, float),
        c2,
        1.0 / period,
        dirs,
        rng.uniform(0, 2 * math.pi, 3),
        float(rng.uniform(-0.4, 0.4)),
    )
