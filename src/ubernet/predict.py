"""Prediction on arbitrary images: any size, grayscale / RGBA / 16-bit inputs, clear errors for bad files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.api import size_divisor
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.evaluation import predict_samples
from ubernet.models.ubernet import UberNet

#: below this, the trunk's coarsest taps have no spatial extent worth predicting from
MIN_SIDE = 16


def as_rgb_image(image: np.ndarray, *, where: str = "image") -> np.ndarray:
    """Any ``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4`` array (uint8, uint16, float in [0, 1]) -> uint8 RGB."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DataError(f"{where}: expected H×W, H×W×3 or H×W×4 pixels, got shape {a.shape}")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        raise DataError(f"{where}: image is {a.shape[1]}×{a.shape[0]} pixels; the smallest accepted side is "
                        f"{MIN_SIDE}")
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:  # composite on white: transparent pixels are background, not black objects
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def predict_array(model: UberNet, image: np.ndarray, tasks: Sequence[str] | None = None, *,
                  bf16: bool = False, scales: Sequence[float] | None = None, flip: bool = False) -> dict[str, Any]:
    """``{task: prediction}`` for one image array (see :func:`as_rgb_image` for what is accepted); ``scales``
    and ``flip``: multi-scale and flip testing (:mod:`ubernet.multiscale`)."""
    rgb = as_rgb_image(image)
    return predict_samples(model, [Sample(image=rgb)], tasks, bf16=bf16, size_divisor=size_divisor(model),
                           scales=scales, flip=flip)[0]


def predict_image(model: UberNet, path: str | Path, tasks: Sequence[str] | None = None, *,
                  bf16: bool = False, scales: Sequence[float] | None = None,
                  flip: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an image file (errors name the file) and predict; returns (RGB image, predictions)."""
    from ubernet.io.images import read_image

    rgb = as_rgb_image(read_image(path), where=str(path))
    return rgb, predict_samples(model, [Sample(image=rgb)], tasks, bf16=bf16, size_divisor=size_divisor(model),
                                scales=scales, flip=flip)[0]
