"""Ground truth derived from the id maps of a rendered scene: boundaries, semantic boundaries, boxes.

**Segments.** Every pixel belongs to exactly one segment: a visible object instance, or (where no object is
visible) a background region. :func:`segment_map` encodes instance ``k`` as ``k`` and region ``r`` as ``-r``.
All parts of one person are one instance.

**Boundary rule.** Pixel ``(i, j)`` is a boundary pixel iff its segment differs from that of its right
neighbour ``(i, j+1)`` or of its lower neighbour ``(i+1, j)`` (neighbours outside the image do not count).
So every change of segment between 4-neighbours marks exactly one pixel, the left/upper one of the pair:
boundaries are 1 pixel thick and lie on one side of each outline. Texture and shading edges are never
boundaries.

**Semantic boundary rule.** For each pair of 4-neighbours ``p`` (left/upper) and ``q`` (right/lower) in
different segments, ``p`` is marked in the channel of ``p``'s class and in the channel of ``q``'s class (if
either is an object). Channel ``c`` holds class ``c + 1``; the background has no channel. Hence semantic
boundaries ⊆ boundaries, and the outline of two touching objects of different classes is in both channels.
"""

from __future__ import annotations

import numpy as np


def segment_map(instance_ids: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """int32 ``H×W``: instance id ``k > 0`` where an object is visible, ``-region`` elsewhere."""
    return np.where(instance_ids > 0, instance_ids, -region_ids).astype(np.int32)


def boundary_map(segments: np.ndarray) -> np.ndarray:
    """bool ``H×W`` boundary pixels of an integer segment map, by the boundary rule above."""
    right = segments[:, :-1] != segments[:, 1:]
    down = segments[:-1, :] != segments[1:, :]
    b = np.zeros(segments.shape, dtype=bool)
    b[:, :-1] |= right
    b[:-1, :] |= down
    return b


def semantic_boundary_map(segments: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """bool ``(num_classes - 1)×H×W`` per-class boundaries, by the semantic boundary rule above.

    Args:
        segments: int ``H×W`` segment map.
        classes: int ``H×W`` class id of each pixel's segment (0 = background), ``< num_classes``.
        num_classes: number of classes including the background.
    """
    h, w = segments.shape
    out = np.zeros((num_classes, h, w), dtype=bool)  # channel 0 (background) is dropped at the end
    i, j = np.nonzero(segments[:, :-1] != segments[:, 1:])
    out[classes[i, j], i, j] = True
    out[classes[i, j + 1], i, j] = True
    i, j = np.nonzero(segments[:-1, :] != segments[1:, :])
    out[classes[i, j], i, j] = True
    out[classes[i + 1, j], i, j] = True
    return out[1:]


def instance_boxes(instance_ids: np.ndarray, n: int) -> np.ndarray:
    """float32 ``n×4`` tight boxes ``x1, y1, x2, y2`` (0-based, ``x2``/``y2`` exclusive) of instances
    ``1..n``; an instance with no pixel gets an all-zero row."""
    boxes = np.zeros((n, 4), dtype=np.float32)
    ys, xs = np.nonzero(instance_ids)
    if not len(ys):
        return boxes
    k = instance_ids[ys, xs] - 1
    big = np.iinfo(np.int64).max
    lo_x, lo_y = np.full(n, big), np.full(n, big)
    hi_x, hi_y = np.full(n, -1), np.full(n, -1)
    np.minimum.at(lo_x, k, xs)
    np.minimum.at(lo_y, k, ys)
    np.maximum.at(hi_x, k, xs)
    np.maximum.at(hi_y, k, ys)
    seen = hi_x >= 0
    boxes[seen] = np.stack([lo_x, lo_y, hi_x + 1, hi_y + 1], axis=1)[seen]
    return boxes
