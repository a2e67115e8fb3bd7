"""Anchor boxes (Ren et al., Faster R-CNN 2015, Sec. 3.1.1): ``len(sizes) x len(aspect_ratios)`` reference boxes
centred on every cell of a feature map.

Conventions (see also ``docs/detection.md``):

* an anchor of size ``s`` and aspect ratio ``r = h / w`` has area ``s²``: ``w = s / sqrt(r)``, ``h = s·sqrt(r)``;
  no rounding (boxes are continuous, 0-based, ``x2``/``y2`` exclusive);
* the anchors of feature cell (row ``i``, column ``j``) at stride ``t`` are centred on the image point
  ``((j + offset)·t, (i + offset)·t)``; the default ``offset = 0.5`` puts them on the centre of the ``t x t``
  pixel block the cell summarises, which is also the point that ``roi_align(aligned=True)`` maps to that cell;
* order: cell-major, then size-major within a cell — anchor ``a = size_index · len(aspect_ratios) + ratio_index``
  of cell ``(i, j)`` is row ``(i·w + j)·A + a``, matching the ``[A, h, w]`` channel layout of the RPN head after
  ``permute(0, 2, 3, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class AnchorGenerator:
    """Generates the anchors of a single feature map.

    Args:
        sizes: anchor side lengths in input pixels (sqrt of the area). Faster R-CNN: (128, 256, 512) for ~600 px
            images; the 128 px synthetic world uses e.g. (16, 32, 64).
        aspect_ratios: height / width ratios. Faster R-CNN: (0.5, 1, 2).
        stride: input pixels per feature cell.
        offset: anchor centre within a cell, in cells (0.5 = cell centre, 0 = top-left corner as torchvision).
    """

    def __init__(
        self,
        sizes: Sequence[float] = (128.0, 256.0, 512.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        stride: float = 16.0,
        offset: float = 0.5,
    ) -> None:
        if not sizes or not aspect_ratios:
            raise ValueError("AnchorGenerator needs at least one size and one aspect ratio")
        if any(s <= 0 for s in sizes) or any(r <= 0 for r in aspect_ratios) or stride <= 0:
            raise ValueError(
                f"anchor sizes, aspect ratios and stride must be > 0, got {sizes}, {aspect_ratios}, {stride}"
            )
        self.sizes = tuple(float(s) for s in sizes)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.stride = float(stride)
        self.offset = float(offset)

    @property
    def num_anchors(self) -> int:
        """Anchors per feature cell, ``A``."""
        return len(self.sizes) * len(self.aspect_ratios)

    def cell_anchors(self, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
        """``Tensor[A, 4]`` anchors centred on (0, 0), size-major."""
        rows = []
        for s in self.sizes:
            for r in self.aspect_ratios:
                w, h = s / math.sqrt(r), s * math.sqrt(r)
                rows.append((-w / 2, -h / 2, w / 2, h / 2))
        return torch.tensor(rows, dtype=dtype, device=device)

    def grid_anchors(
        self, feature_size: tuple[int, int], dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> Tensor:
        """All anchors of an ``(h, w)`` feature map: ``Tensor[h·w·A, 4]`` in input-image (x1, y1, x2, y2)."""
        h, w = int(feature_size[0]), int(feature_size[1])
        ys = (torch.arange(h, dtype=dtype, device=device) + self.offset) * self.stride
        xs = (torch.arange(w, dtype=dtype, device=device) + self.offset) * self.stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
        return (centres + self.cell_anchors(dtype, device)[None]).reshape(-1, 4)

    def __call__(self, features: Tensor) -> Tensor:
        """Anchors for ``features (Tensor[B, C, h, w])``, shared by the batch: ``Tensor[h·w·A, 4]``."""
        return self.grid_anchors(tuple(features.shape[-2:]), features.dtype, features.device)

    def __repr__(self) -> str:
        return (
            f"AnchorGenerator(sizes={self.sizes}, aspect_ratios={self.aspect_ratios}, stride={self.stride}, "
            f"offset={self.offset})"
        )
