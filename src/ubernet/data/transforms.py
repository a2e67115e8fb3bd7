"""Training-time augmentation that acts on *field kinds*, never on tasks: flip, rescale, crop/pad.

Every target field of a :class:`~ubernet.data.sample.Sample` has a kind that says how it moves with the image;
a transform knows the kinds, so a new task reuses them by declaring its fields' kinds (:func:`register_field_kind`).

===============  ==========================  ==========  ====================================  =====================
kind             array                       pad/fill    rescale                               horizontal flip
===============  ==========================  ==========  ====================================  =====================
``image``        uint8 ``H×W×3``             0           bilinear (PIL, anti-aliased down)     mirror
``label``        uint8 ``H×W`` (255 ignore)  255         nearest                               mirror
``edge``         uint8 ``H×W`` 0/1/255       255         footprint max, 1 > 255 > 0 (below)    mirror
``edge_stack``   bool ``K×H×W``              False       footprint any (below)                 mirror
``vector``       float32 ``H×W×3``           0 (invalid) nearest                               mirror, x negated
``scalar``       float32 ``H×W`` (0 invalid) 0           nearest                               mirror
``boxes``        float32 ``N×4`` x1 y1 x2 y2 (dropped)   ×(W'/W, H'/H)                         x -> W - x (swapped)
``box_attr``     ``N`` (per box)             (dropped)   unchanged                             unchanged
===============  ==========================  ==========  ====================================  =====================

Thin boundary maps (``edge``/``edge_stack``) cannot be resampled with nearest: downscaling by 0.75 drops every
fourth row and column, and a 1-pixel boundary running along one of them disappears, so the network would be
taught "no boundary" exactly on a boundary. They are resampled by *footprint pooling* instead: each source pixel
belongs to the output pixel whose interval contains its centre (a partition of the source when downscaling), and
the output takes the maximum over its footprint — positive if any source pixel is, else ignore if any is, else
negative. Downscaling therefore keeps every positive (lines stay connected and 1 pixel wide); upscaling, where a
footprint may be empty, falls back to the nearest source pixel (lines get at most ``ceil(s)`` pixels wide, well
within the annotators' own few-pixel spread). The ignore band around minority boundaries grows the same way.

Boxes use continuous coordinates with exclusive ``x2`` (see the sample format), so a flip maps ``(x1, x2)`` to
``(W - x2, W - x1)`` and a rescale multiplies by the exact size ratio. A crop clips boxes to the window and drops
those left with no area, together with their per-box attributes (``labels``, ``difficult``).

All randomness comes from the ``numpy.random.Generator`` passed in, drawn in a fixed order, so an augmentation
is a pure function of (sample, generator state). :class:`AugmentedDataset` derives that generator from the draw
(seed, source, item, how many times the union sampler has drawn that item), which keeps training resumable bit for
bit.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from ubernet.data.sample import IGNORE, Sample
from ubernet.errors import ConfigError

KINDS: tuple[str, ...] = ("image", "label", "edge", "edge_stack", "vector", "scalar", "boxes", "box_attr")

#: target field -> kind (see the module docstring); optional tasks add theirs with :func:`register_field_kind`.
FIELD_KINDS: dict[str, str] = {
    "boundaries": "edge",
    "boundaries_annotators": "edge_stack",
    "semantic_boundaries": "edge_stack",
    "saliency": "label",
    "semseg": "label",
    "parts": "label",  # PASCAL person parts have no left/right classes, so a flip needs no label swap
    "normals": "vector",
    "depth": "scalar",
    "boxes": "boxes",
    "labels": "box_attr",
    "difficult": "box_attr",
}

_FILL: dict[str, Any] = {"image": 0, "label": IGNORE, "edge": IGNORE, "edge_stack": False, "vector": 0.0,
                         "scalar": 0.0}
# rank used by footprint pooling of ``edge`` maps: positive beats ignore beats negative
_EDGE_RANK = np.zeros(256, np.uint8)
_EDGE_RANK[IGNORE], _EDGE_RANK[1] = 1, 2
_EDGE_VALUE = np.array([0, IGNORE, 1], np.uint8)


def register_field_kind(field: str, kind: str) -> None:
    """Declare how a (new) target field moves with the image; ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"field {field!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if FIELD_KINDS.get(field, kind) != kind:
        raise ValueError(f"field {field!r} already has kind {FIELD_KINDS[field]!r}, not {kind!r}")
    FIELD_KINDS[field] = kind


def field_kind(field: str, *, where: str = "") -> str:
    """The kind of target field ``field``; a clear error for a field no transform knows."""
    if field not in FIELD_KINDS:
        loc = f"{where}: " if where else ""
        raise ValueError(f"{loc}target field {field!r} has no declared kind, so it cannot be augmented; declare it "
                         f"with ubernet.data.transforms.register_field_kind({field!r}, KIND), KIND in {KINDS}")
    return FIELD_KINDS[field]


def _where(sample: Sample) -> str:
    return str(sample.meta.get("image_path") or sample.id or "sample")


# --- index maps ------------------------------------------------------------------------------------------------
def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` output pixels the source pixel containing its centre (pixel-area convention)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def footprints(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` (end exclusive) of the source pixels whose centres fall in each output pixel.

    The intervals partition ``0..n_in`` (consecutive outputs share their boundary value); an empty footprint
    (upscaling) is replaced by the nearest source pixel.
    """
    s = n_out / n_in
    b = np.clip(np.ceil(np.arange(n_out + 1) / s - 0.5).astype(np.int64), 0, n_in)
    start, end = b[:-1].copy(), b[1:].copy()
    empty = end <= start
    near = nearest_index(n_in, n_out)
    start[empty], end[empty] = near[empty], near[empty] + 1
    return start, end


def _pool_axis(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Maximum over each output pixel's footprint along ``axis``."""
    start, end = footprints(a.shape[axis], n_out)
    out = None
    for k in range(int((end - start).max())):
        part = np.take(a, np.minimum(start + k, end - 1), axis=axis)
        out = part if out is None else np.maximum(out, part)
    return out  # type: ignore[return-value]


def _pool2d(a: np.ndarray, hw: tuple[int, int], h_axis: int) -> np.ndarray:
    return _pool_axis(_pool_axis(a, h_axis, hw[0]), h_axis + 1, hw[1])


# --- per-kind primitives ---------------------------------------------------------------------------------------
def _flip(kind: str, a: np.ndarray, width: int) -> np.ndarray:
    if kind == "box_attr":
        return a
    if kind == "boxes":
        out = a.copy()
        out[:, 0], out[:, 2] = width - a[:, 2], width - a[:, 0]
        return out
    out = np.ascontiguousarray(a[..., ::-1] if kind == "edge_stack" else a[:, ::-1])
    if kind == "vector":
        out[..., 0] = -out[..., 0]  # x points right: a mirrored surface faces the other way
        out[..., 0][out[..., 0] == 0] = 0.0  # no -0.0 for invalid (all-zero) pixels
    return out


def _resize(kind: str, a: np.ndarray, src_hw: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if kind == "box_attr":
        return a
    if kind == "boxes":
        f = np.array([w / src_hw[1], h / src_hw[0]] * 2, np.float32)
        return (a * f).astype(np.float32)
    if kind == "image":
        return np.array(Image.fromarray(a).resize((w, h), Image.BILINEAR))  # a writable copy
    if kind == "edge":
        return _EDGE_VALUE[_pool2d(_EDGE_RANK[a], hw, 0)]
    if kind == "edge_stack":
        return _pool2d(a, hw, 1)
    # label, vector, scalar: nearest keeps ids, unit vectors and the invalid value exact
    return a[nearest_index(src_hw[0], h)][:, nearest_index(src_hw[1], w)]


def _window(kind: str, a: np.ndarray, top: int, left: int, hw: tuple[int, int]) -> np.ndarray:
    """The ``hw`` window at (top, left) of a dense field; parts outside the source take the kind's fill."""
    h, w = hw
    chw = kind == "edge_stack"
    src_h, src_w = (a.shape[1], a.shape[2]) if chw else (a.shape[0], a.shape[1])
    shape = (a.shape[0], h, w) if chw else (h, w, *a.shape[2:])
    out = np.full(shape, _FILL[kind], dtype=a.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, src_h), min(left + w, src_w)
    if y1 > y0 and x1 > x0:
        if chw:
            out[:, y0 - top : y1 - top, x0 - left : x1 - left] = a[:, y0:y1, x0:x1]
        else:
            out[y0 - top : y1 - top, x0 - left : x1 - left] = a[y0:y1, x0:x1]
    return out


# --- sample-level transforms -----------------------------------------------------------------------------------
def _kinds(sample: Sample) -> dict[str, str]:
    where = _where(sample)
    kinds = {name: field_kind(name, where=where) for name in sample.targets}
    if any(k == "box_attr" for k in kinds.values()) and "boxes" not in kinds.values():
        raise ValueError(f"{where}: per-box fields {[n for n, k in kinds.items() if k == 'box_attr']} without boxes")
    return kinds


def hflip(sample: Sample) -> Sample:
    """The sample mirrored left-right (every field by its kind)."""
    width = sample.size[1]
    targets = {n: _flip(k, sample.targets[n], width) for n, k in _kinds(sample).items()}
    return replace(sample, image=_flip("image", sample.image, width), targets=targets, meta=dict(sample.meta))


def rescale(sample: Sample, hw: tuple[int, int]) -> Sample:
    """The sample resampled to ``hw = (H', W')`` (every field by its kind)."""
    src = sample.size
    if tuple(hw) == src:
        return sample
    if hw[0] < 1 or hw[1] < 1:
        raise ValueError(f"{_where(sample)}: cannot rescale to {hw}")
    targets = {n: _resize(k, sample.targets[n], src, hw) for n, k in _kinds(sample).items()}
    return replace(sample, image=_resize("image", sample.image, src, hw), targets=targets, meta=dict(sample.meta))


def crop(sample: Sample, top: int, left: int, hw: tuple[int, int]) -> Sample:
    """The ``hw`` window whose top-left corner is (top, left); where it leaves the image, fields are padded with
    their kind's fill (image 0, labels/edges 255 = ignore, vectors/scalars 0 = invalid). Boxes are shifted,
    clipped to the window and dropped (with their per-box attributes) when nothing of them is left."""
    kinds = _kinds(sample)
    targets: dict[str, np.ndarray] = {}
    keep = None
    for n, k in kinds.items():
        if k == "boxes":
            b = sample.targets[n] - np.array([left, top, left, top], np.float32)
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, hw[1])
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, hw[0])
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            targets[n] = b[keep].astype(np.float32)
        elif k != "box_attr":
            targets[n] = _window(k, sample.targets[n], top, left, hw)
    for n, k in kinds.items():
        if k == "box_attr":
            targets[n] = sample.targets[n][keep]
    return replace(sample, image=_window("image", sample.image, top, left, hw), targets=targets,
                   meta=dict(sample.meta))


@dataclass(frozen=True)
class Augment:
    """A random flip / rescale / crop, applied in that order; the draws from the generator are, in order: flip
    (one ``random()``), scale (one ``uniform``), crop offsets (one ``integers`` per axis that is larger than the
    crop).

    Attributes:
        flip: mirror left-right with probability 1/2.
        scale: ``(lo, hi)``: rescale by a factor drawn uniformly from it (output size rounded to pixels).
        crop: ``(H, W)``: a window of this size at a random position; a side shorter than the window is padded
            at the bottom/right with each field's fill (``pad=True``) or left as it is (``pad=False``: the
            window is then at most ``H×W``; batches are padded later anyway).
    """

    flip: bool = False
    scale: tuple[float, float] | None = None
    crop: tuple[int, int] | None = None
    pad: bool = True

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None, key: str = "augment") -> Augment:
        """Parse ``{flip: true, scale: [0.75, 1.25], crop: [320, 320], pad: true}``; ConfigError naming ``key``."""
        data = dict(data or {})
        valid = ("flip", "scale", "crop", "pad")
        unknown = [k for k in data if k not in valid]
        if unknown:
            raise ConfigError(f"unknown key {key}.{unknown[0]}; valid keys of {key}: {', '.join(valid)}")
        for name in ("flip", "pad"):
            if name in data and not isinstance(data[name], bool):
                raise ConfigError(f"{key}.{name}: expected true or false, got {data[name]!r}")
        scale = data.get("scale")
        if scale is not None:
            if (not isinstance(scale, (list, tuple)) or len(scale) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
                    or not 0 < scale[0] <= scale[1] or not math.isfinite(scale[1])):
                raise ConfigError(f"{key}.scale must be [lo, hi] with 0 < lo <= hi, got {scale!r}")
            scale = (float(scale[0]), float(scale[1]))
        size = data.get("crop")
        if size is not None:
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
                raise ConfigError(f"{key}.crop must be [H, W] (positive integers), got {size!r}")
            size = (int(size[0]), int(size[1]))
        return cls(flip=bool(data.get("flip", False)), scale=scale, crop=size, pad=bool(data.get("pad", True)))

    @property
    def active(self) -> bool:
        return self.flip or self.scale is not None or self.crop is not None

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.flip and rng.random() < 0.5:
            sample = hflip(sample)
        if self.scale is not None:
            s = float(rng.uniform(self.scale[0], self.scale[1]))
            h, w = sample.size
            sample = rescale(sample, (max(1, round(h * s)), max(1, round(w * s))))
        if self.crop is not None:
            h, w = sample.size
            ch, cw = self.crop
            top = int(rng.integers(0, h - ch + 1)) if h > ch else 0
            left = int(rng.integers(0, w - cw + 1)) if w > cw else 0
            size = (ch, cw) if self.pad else (min(ch, h), min(cw, w))
            sample = crop(sample, top, left, size)
        return sample


# --- the dataset wrapper ---------------------------------------------------------------------------------------
class AugmentedDataset:
    """A source whose samples are augmented on access, deterministically per draw.

    The generator of a draw is seeded with ``(seed, crc32(name), item index, draw count of that item)``. The
    union sampler walks each source through per-epoch permutations without replacement, so an item's draw count
    *is* the epoch of the walk in which it was drawn — a function of the sampler's checkpointed state (its
    per-source cursor) alone. So a resumed run augments every later draw exactly as the uninterrupted run, the
    augmentation of one source does not depend on how often other sources are drawn, and every epoch shows a
    new variant of each image. ``name`` (the source's name) keeps equal-seeded sources decorrelated.

    Call :meth:`bind` with the sampler (``bind_augmentations`` does it for every source) before training; an
    unbound wrapper (e.g. a script indexing it directly) counts draws itself, which is reproducible within one
    process but not across a resume.

    Args:
        dataset: anything indexable yielding :class:`Sample` s.
        augment: the transform.
        seed: the run's seed.
        name: the source's name in the union.
    """

    def __init__(self, dataset: Any, augment: Augment, *, seed: int, name: str) -> None:
        self.dataset, self.augment = dataset, augment
        self.seed, self.name = int(seed), str(name)
        self._key = zlib.crc32(self.name.encode())
        self._sampler: Any = None
        self._source = -1
        self._local: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def bind(self, sampler: Any, source_index: int) -> None:
        """Take draw counts from ``sampler`` (a :class:`~ubernet.data.union.UnionSampler`) for its source
        ``source_index``, which must be this dataset."""
        if sampler.entries[source_index].dataset is not self:
            raise ValueError(f"source {source_index} of the sampler is not the augmented source {self.name!r}")
        self._sampler, self._source = sampler, int(source_index)

    def draw_count(self, item: int) -> int:
        """How many times ``item`` was drawn before its latest draw (0 for the first epoch)."""
        if self._sampler is None:
            k = self._local.get(item, 0)
            self._local[item] = k + 1
            return k
        n = len(self.dataset)
        cursor = int(self._sampler.cursors[self._source])  # draws of this source so far, the latest included
        if cursor == 0:
            return 0
        epoch, pos = divmod(cursor - 1, n)
        # Usually the item is the latest draw (cursor - 1). A distributed round advances the sampler by all its
        # draws before loading them, so look the item up in the current epoch's permutation: drawn already in
        # this epoch, or (just before an epoch boundary) in the previous one. The sampler caches permutations.
        perm = self._sampler._permutation(self._source, epoch)
        return epoch if int(np.flatnonzero(perm == item)[0]) <= pos else max(epoch - 1, 0)

    def __getitem__(self, item: int) -> Sample:
        sample = self.dataset[item]
        rng = np.random.default_rng([self.seed, self._key, int(item), self.draw_count(int(item))])
        return self.augment(sample, rng)


def bind_augmentations(sampler: Any) -> None:
    """Bind every :class:`AugmentedDataset` among ``sampler.entries`` to the sampler (see the class)."""
    for k, entry in enumerate(sampler.entries):
        if isinstance(entry.dataset, AugmentedDataset):
            entry.dataset.bind(sampler, k)
